"""Evaluate a registered model on one split: IS-NLL, ELBO terms, active units, anomaly AUROC.

Runs on the driver over a streamed split (test splits are small next to training data). The
split is rebuilt with the training run's ``DataConfig`` when the model stores it and ``--data``
names the same source, so "test" means the rows the model never saw.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.cluster.ray_session import ensure_ray
from pipeline.config.data import DataConfig
from pipeline.data.batches import iter_torch_batches
from pipeline.data.ray_errors import user_errors
from pipeline.errors import UserError
from pipeline.inference.latent_encoder import inference_preprocessor
from pipeline.tracking.registry import LoadedModel, load_vae
from vae_core import metrics, objectives

Progress = Callable[[int, int | None], None]  # (rows done, rows in all or None)

log = logging.getLogger(__name__)

DEFAULT_IW_SAMPLES = 1000
IW_CHUNK = 100


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
    """Running sums over batches (row-weighted), plus what needs every row."""

    rows: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    mus: list[torch.Tensor] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    def add(self, name: str, batch_mean: float, n: int) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + batch_mean * n

    def means(self) -> dict[str, float]:
        return {k: v / self.rows for k, v in self.sums.items()}


def evaluate_model(
    model_uri: str,
    data: str,
    *,
    split: str = "test",
    iw_samples: int = DEFAULT_IW_SAMPLES,
    anomaly_class: int | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    log_to_mlflow: bool = True,
    progress: Progress | None = None,
) -> EvalResult:
    """Metrics of ``model_uri`` on ``split`` of ``data``; logged on the model's MLflow run.

    ``progress(rows_done, rows_total)`` is called after every batch (the total costs a counting
    pass, small beside the importance sampling, so it is taken only when ``progress`` is given).
    """
    if iw_samples < 1:
        raise UserError(f"--iw-samples must be >= 1, got {iw_samples}")
    loaded = load_vae(model_uri)
    cfg = _data_config(loaded, data, limit)
    ds, labelled = _split(cfg, split, loaded)
    if anomaly_class is not None and not labelled:
        raise UserError(f"--anomaly-class needs labels, but {data} has none")
    torch.manual_seed(seed)
    totals = _accumulate(loaded, ds, batch_size, iw_samples, progress)
    if totals.rows == 0:
        raise UserError(f"split {split!r} of {data} has no rows")
    result = EvalResult(loaded.describe(), data, split, totals.rows, iw_samples, _metrics(totals))
    if anomaly_class is not None:
        result.metrics[f"auroc_class_{anomaly_class}"] = _anomaly_auroc(totals, anomaly_class)
    if log_to_mlflow and loaded.run_id:
        _log(loaded.run_id, split, result.metrics)
    return result


def _data_config(loaded: LoadedModel, data: str, limit: int | None) -> DataConfig:
    """The training DataConfig when ``data`` is the training source; defaults otherwise."""
    stored = loaded.data_config
    if stored and stored.get("source") == data:
        cfg = DataConfig.from_dict(stored)
    else:
        cfg = DataConfig(source=data)
    return dataclasses.replace(cfg, limit=limit) if limit is not None else cfg


def _split(cfg: DataConfig, split: str, loaded: LoadedModel):
    from pipeline.data.ingest import open_source

    ensure_ray()
    with user_errors():
        src = open_source(cfg)
    if split not in src.splits:
        raise UserError(f"unknown split {split!r}; choose one of {sorted(src.splits)}")
    expected = tuple(loaded.vae.cfg.input_shape)
    if tuple(src.layout.shape) != expected:
        raise UserError(
            f"model {loaded.uri} expects samples of shape {list(expected)}, "
            f"but {cfg.source} has shape {list(src.layout.shape)}"
        )
    return src.splits[split], src.has_labels


def _accumulate(
    loaded: LoadedModel, ds: Any, batch_size: int, k: int, progress: Progress | None
) -> _Totals:
    vae, pre = loaded.vae, inference_preprocessor(loaded.preprocessor)
    totals = _Totals()
    with torch.inference_mode(), user_errors():
        total = ds.count() if progress is not None else None
        for batch in iter_torch_batches(ds, batch_size, pre):
            n = batch.x.shape[0]
            terms = objectives.elbo(vae, batch.x)
            totals.add("neg_elbo", float(terms.neg_elbo), n)
            totals.add("reconstruction", float(terms.reconstruction), n)
            totals.add("kl", float(terms.kl), n)
            nll = objectives.importance_sampled_nll(vae, batch.x, k=k, chunk_size=IW_CHUNK)
            totals.add("is_nll", float(nll.mean()), n)
            totals.mus.append(vae.encode(batch.x)[0])
            totals.scores.append(objectives.negative_elbo(vae, batch.x).numpy())
            if batch.labels is not None:
                totals.labels.append(batch.labels.numpy())
            totals.rows += n
            if progress is not None:
                progress(totals.rows, total)
    return totals


def _metrics(totals: _Totals) -> dict[str, float]:
    out = totals.means()
    out["elbo"] = -out["neg_elbo"]
    out["active_units"] = float(metrics.active_units(torch.cat(totals.mus)))
    return out


def _anomaly_auroc(totals: _Totals, anomaly_class: int) -> float:
    labels = np.concatenate(totals.labels) if totals.labels else np.empty(0)
    positive = labels == anomaly_class
    if not positive.any() or positive.all():
        raise UserError(
            f"--anomaly-class {anomaly_class}: the split needs rows of that class and of others "
            f"(found {int(positive.sum())} of {len(labels)})"
        )
    return auroc(np.concatenate(totals.scores), positive)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` rows (higher score = positive):
    the Mann-Whitney U statistic from average ranks, so ties count one half."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(scores)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start index of each run of equal values, and the run each sorted element belongs to.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    run = np.cumsum(np.r_[True, sorted_x[1:] != sorted_x[:-1]]) - 1
    ends = np.r_[starts[1:], len(x)]  # exclusive
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = mean_rank[run]
    return ranks


def _log(run_id: str, split: str, values: dict[str, float]) -> None:
    """Metrics on the model's training run, as ``eval_<split>_<name>``."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(f"eval_{split}_{k}", float(v), now, 0) for k, v in values.items()]
    mlflow.MlflowClient().log_batch(run_id, metrics=batch)
