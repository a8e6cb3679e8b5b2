"""Evaluate a registered model on one split: IS-NLL, ELBO terms, active units, and on request
anomaly-detection figures (AUROC, AUPRC, ROC image) and disentanglement scores.

The per-row work (k importance samples per row) runs on a pool of Ray actors (``RowScorer``),
streaming, with each row's samples fixed by its id: one process or a cluster give the same
numbers. The ELBO terms are averaged over the same k samples as the IS-NLL. The data is read as
the model was trained (``model_data``): when ``--data`` names the training source, the split is
rebuilt with the training run's ``DataConfig``, so "test" means the rows the model never saw.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipeline.cluster.ray_session import ensure_ray
from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.ray_errors import user_errors
from pipeline.errors import UserError
from pipeline.inference import anomaly, complexity
from pipeline.inference.disentanglement import disentanglement_scores
from pipeline.inference.latent_encoder import ModelPayload, map_on_actors, plan_for_cluster
from pipeline.inference.model_data import check_layout, resolve_model_data
from pipeline.inference.row_scorer import COMPLEXITY, FIGURES, RowScorer
from pipeline.tracking.registry import LoadedModel, load_vae
from vae_core import metrics

Progress = Callable[[int, int | None], None]  # (rows done, rows in all or None)

log = logging.getLogger(__name__)

DEFAULT_IW_SAMPLES = 1000


@dataclass
class EvalResult:
    model: dict[str, Any]
    source: str
    split: str
    rows: int
    iw_samples: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class _Totals:
    """Running sums of the per-row figures, plus what needs every row (mu, scores, labels)."""

    rows: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    mus: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    complexity: list[np.ndarray] = field(default_factory=list)
    kept: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, table: pa.Table, keep: tuple[str, ...]) -> None:
        for name in FIGURES:
            self.sums[name] = self.sums.get(name, 0.0) + float(pc.sum(table.column(name)).as_py())
        mu = table.column(schema.MU).combine_chunks()
        self.mus.append(mu.flatten().to_numpy().reshape(len(mu), -1))
        self.scores.append(table.column("neg_elbo").to_numpy())
        if COMPLEXITY in table.column_names:
            self.complexity.append(table.column(COMPLEXITY).to_numpy())
        if schema.LABEL in table.column_names:
            self.labels.append(table.column(schema.LABEL).to_numpy())
        for name in keep:
            self.kept.setdefault(name, []).append(table.column(name).to_numpy())
        self.rows += table.num_rows

    def means(self) -> dict[str, float]:
        out = {k: v / self.rows for k, v in self.sums.items()}
        if self.complexity:
            out[COMPLEXITY] = float(np.concatenate(self.complexity).mean())
        return out


def evaluate_model(
    model_uri: str,
    data: str,
    *,
    data_overrides: Mapping[str, Any] | None = None,
    split: str = "test",
    iw_samples: int = DEFAULT_IW_SAMPLES,
    anomaly_class: int | None = None,
    normal_labels: tuple[int, ...] | None = None,
    disentanglement: bool = False,
    batch_size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    log_to_mlflow: bool = True,
    progress: Progress | None = None,
) -> EvalResult:
    """Metrics of ``model_uri`` on ``split`` of ``data``; logged on the model's MLflow run.

    Anomaly figures (AUROC, AUPRC, a ROC image) are computed for ``normal_labels`` vs the rest
    — by default the labels a filtered model was trained on — or ``anomaly_class`` vs the rest.
    ``disentanglement`` scores the latent means against the data's factor columns.
    ``progress(rows_done, rows_total)`` is called after every scored batch (the total costs a
    counting pass, small beside the importance sampling, so it is taken only with ``progress``).
    """
    if iw_samples < 1:
        raise UserError(f"--iw-samples must be >= 1, got {iw_samples}")
    loaded = load_vae(model_uri)
    resolved = resolve_model_data(loaded, data, data_overrides)
    cfg = resolved.data if limit is None else dataclasses.replace(resolved.data, limit=limit)
    ds, labelled = _split(cfg, split, loaded)
    anomalies = _anomaly_rule(loaded, normal_labels, anomaly_class, labelled, data)
    keep = _factor_columns(ds, data) if disentanglement else ()
    payload = ModelPayload.from_vae(loaded.vae, resolved.preprocessor, {})
    scorer = {"k": iw_samples, "seed": seed, "keep": keep}
    scorer["complexity"] = anomalies is not None and _binary_model(loaded)
    totals = _accumulate(payload, ds, batch_size, scorer, progress)
    if totals.rows == 0:
        raise UserError(f"split {split!r} of {data} has no rows")
    result = EvalResult(loaded.describe(), data, split, totals.rows, iw_samples, _metrics(totals))
    images: dict[str, bytes] = {}
    if anomalies is not None:
        figures, images = _anomaly_figures(totals, anomalies)
        result.metrics.update(figures)
    if keep:
        result.metrics.update(_disentanglement(totals, keep, seed))
    if log_to_mlflow and loaded.run_id:
        _log(loaded.run_id, split, result.metrics, images)
    return result


def _split(cfg: DataConfig, split: str, loaded: LoadedModel):
    from pipeline.data.ingest import open_source
    from pipeline.data.input_ids import check_distinct_ids
    from pipeline.data.sources import plan_source

    plan = plan_source(cfg)  # the driver's checks of the data: bad input fails before Ray
    check_layout(loaded, plan.layout, cfg.source)
    ensure_ray()
    check_distinct_ids(plan)
    with user_errors():
        src = open_source(cfg, plan=plan)
    if split not in src.splits:
        raise UserError(f"unknown split {split!r}; choose one of {sorted(src.splits)}")
    return src.splits[split], src.has_labels


def _binary_model(loaded: LoadedModel) -> bool:
    """Whether the model reads binarized samples with a Bernoulli likelihood: then its negative
    ELBO is a code length of the input, comparable with the complexity's."""
    binarize = (loaded.preprocessor or {}).get("binarize", "none")
    return loaded.vae.cfg.likelihood == "bernoulli" and binarize != "none"


def _accumulate(
    payload: ModelPayload,
    ds: Any,
    batch_size: int,
    scorer: dict[str, Any],
    progress: Progress | None = None,
) -> _Totals:
    """Score every row on a pool of Ray actors (``RowScorer(payload, **scorer)``), streaming;
    sum on the driver."""
    plan = plan_for_cluster()
    kwargs = {"payload": payload, **scorer}
    keep = scorer.get("keep", ())
    scored = map_on_actors(ds, RowScorer, kwargs, plan, batch_size)
    totals = _Totals()
    with user_errors():
        total = ds.count() if progress is not None else None
        for table in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            totals.add(table, keep)
            if progress is not None:
                progress(totals.rows, total)
    return totals


def _metrics(totals: _Totals) -> dict[str, float]:
    out = totals.means()
    out["elbo"] = -out["neg_elbo"]
    out["active_units"] = float(metrics.active_units(torch.from_numpy(np.concatenate(totals.mus))))
    return out


@dataclass(frozen=True)
class _Anomalies:
    """Which rows are anomalies: label in ``labels``, or (``labels_are_normal``) not in it."""

    labels: frozenset[int]
    labels_are_normal: bool
    name: str  # metric suffix: class_9, normal_3

    def positive(self, labels: np.ndarray) -> np.ndarray:
        inside = np.isin(labels, sorted(self.labels))
        return ~inside if self.labels_are_normal else inside


def _anomaly_rule(
    loaded: LoadedModel,
    normal_labels: tuple[int, ...] | None,
    anomaly_class: int | None,
    labelled: bool,
    data: str,
) -> _Anomalies | None:
    """Explicit flags first, else the labels a filtered model was trained on, else none."""
    stored = (loaded.data_config or {}).get("include_labels")
    if normal_labels is None and anomaly_class is None and not stored:
        return None
    if not labelled:
        raise UserError(f"anomaly figures need labels, but {data} has none")
    if anomaly_class is not None:
        return _Anomalies(frozenset({anomaly_class}), False, f"class_{anomaly_class}")
    normal = frozenset(int(v) for v in (normal_labels or stored))
    return _Anomalies(normal, True, "normal_" + "_".join(str(v) for v in sorted(normal)))


def _anomaly_figures(
    totals: _Totals, rule: _Anomalies
) -> tuple[dict[str, float], dict[str, bytes]]:
    labels = np.concatenate(totals.labels) if totals.labels else np.empty(0, np.int64)
    positive = rule.positive(labels)
    if not positive.any() or positive.all():
        raise UserError(
            f"anomaly figures ({rule.name.replace('_', ' ')}): the split needs normal rows and "
            f"anomalies "
            f"(found {int(positive.sum())} anomalies in {len(labels)} rows)"
        )
    scores = np.concatenate(totals.scores)
    figures = {
        f"auroc_{rule.name}": anomaly.auroc(scores, positive),
        f"auprc_{rule.name}": anomaly.auprc(scores, positive),
    }
    if totals.complexity:  # the input-complexity-corrected score (``complexity``)
        corrected = complexity.corrected_score(scores, np.concatenate(totals.complexity))
        figures[f"auroc_{rule.name}_corrected"] = anomaly.auroc(corrected, positive)
        figures[f"auprc_{rule.name}_corrected"] = anomaly.auprc(corrected, positive)
    return figures, {f"roc_{rule.name}.png": anomaly.roc_png(scores, positive, rule.name)}


def _factor_columns(ds: Any, data: str) -> tuple[str, ...]:
    """Numeric columns beside id, x and label: the ground-truth factors (shapes keeps five)."""
    schema_ = ds.schema()
    skip = {schema.ID, schema.X, schema.LABEL}
    names = tuple(
        n
        for n, t in zip(schema_.names, schema_.types, strict=True)
        if n not in skip
        and isinstance(t, pa.DataType)
        and (pa.types.is_integer(t) or pa.types.is_floating(t))
    )
    if not names:
        raise UserError(f"--disentanglement needs factor columns, but {data} has none")
    return names


def _disentanglement(totals: _Totals, keep: tuple[str, ...], seed: int) -> dict[str, float]:
    codes = np.concatenate(totals.mus)
    factors = np.stack([np.concatenate(totals.kept[n]) for n in keep], axis=1).astype(np.float64)
    try:
        scores = disentanglement_scores(codes, factors, seed=seed)
    except ValueError as exc:
        raise UserError(f"--disentanglement: {exc}") from None
    return scores.as_dict()


def _log(run_id: str, split: str, values: dict[str, float], images: dict[str, bytes]) -> None:
    """Metrics on the model's training run, as ``eval_<split>_<name>``; images as artifacts."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(f"eval_{split}_{k}", float(v), now, 0) for k, v in values.items()]
    client = mlflow.MlflowClient()
    client.log_batch(run_id, metrics=batch)
    for name, png in images.items():
        _log_png(client, run_id, f"eval_{split}_{name}", png)


def _log_png(client: Any, run_id: str, name: str, png: bytes) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(png)
        client.log_artifact(run_id, str(path), artifact_path="evaluation")
