"""MLflow dataset tracking: the run page's "Datasets" lists what a training run learned from.

One MLflow dataset per split (name ``<source name>-<split>``, context training / validation /
testing), all with the source's digest (``pipeline.data.lineage``) and the split's row count
(as the dataset profile and an input tag). No data is uploaded: the source URI is recorded.
"""

from __future__ import annotations

import json
import os
from typing import Any

CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


def _source(uri: str) -> Any:
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if "://" in uri or os.path.exists(uri):
        full = uri if "://" in uri else os.path.abspath(uri)
        try:
            return resolve_dataset_source(full)
        except Exception:  # noqa: BLE001 - MLflow raises its own types per scheme
            pass
    return CodeDatasetSource(tags={"vaepipe.source": uri})


def _dataset(uri: str, name: str, digest: str, rows: int) -> Any:
    from mlflow.data.meta_dataset import MetaDataset

    class SplitDataset(MetaDataset):
        """A MetaDataset whose profile (shown in the MLflow UI) is the split's row count."""

        @property
        def profile(self) -> Any:
            return {"num_rows": rows}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    return SplitDataset(_source(uri), name=name, digest=digest)


def dataset_name(uri: str) -> str:
    base = uri.rstrip("/").rsplit("/", 1)[-1] or uri
    return base.removesuffix(".parquet")


def log_inputs(run_id: str, uri: str, digest: str, rows: dict[str, int]) -> None:
    """Record each split of ``uri`` as an input of ``run_id`` (rows: split → row count)."""
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for split, n in rows.items():
        ds = _dataset(uri, f"{dataset_name(uri)}-{split}", digest, n)
        tags = [
            InputTag("mlflow.data.context", CONTEXTS.get(split, split)),
            InputTag("vaepipe.rows", str(n)),
        ]
        inputs.append(DatasetInput(ds._to_mlflow_entity(), tags))
    MlflowClient().log_inputs(run_id, datasets=inputs)


def logged_rows(run_id: str) -> dict[str, tuple[str, int]]:
    """{dataset name: (digest, rows)} of a run's inputs (tests and ``vaepipe`` readers)."""
    from mlflow import MlflowClient

    out = {}
    for inp in MlflowClient().get_run(run_id).inputs.dataset_inputs:
        profile = json.loads(inp.dataset.profile) if inp.dataset.profile else {}
        out[inp.dataset.name] = (inp.dataset.digest, int(profile.get("num_rows", -1)))
    return out
