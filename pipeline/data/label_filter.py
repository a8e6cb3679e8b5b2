"""Train on some labels only: ``data.include_labels`` / ``data.exclude_labels``.

The standard anomaly-detection protocol trains on the normal class(es) and scores everything
else. The filter shapes training only: ``encode``, ``evaluate`` and the served model score
every row they are given, so they drop it from the stored config (``without_label_filter``).
The filter runs as one more batch function, which Ray fuses into the read task.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.errors import UserError


@dataclass(frozen=True)
class LabelFilter:
    """Keep rows whose label is in ``include`` (when given) and not in ``exclude``."""

    include: tuple[int, ...] | None
    exclude: tuple[int, ...]

    @classmethod
    def from_config(cls, cfg: DataConfig) -> LabelFilter | None:
        if cfg.include_labels is None and not cfg.exclude_labels:
            return None
        return cls(cfg.include_labels, cfg.exclude_labels)

    def keeps(self, labels: np.ndarray) -> np.ndarray:
        """(N,) labels → (N,) bool mask of the rows to train on."""
        mask = np.ones(len(labels), dtype=bool)
        if self.include is not None:
            mask &= np.isin(labels, self.include)
        return mask & ~np.isin(labels, self.exclude)

    def __call__(self, table: pa.Table) -> pa.Table:
        labels = table.column(schema.LABEL).to_numpy()
        return table.filter(pa.array(self.keeps(labels)))


def without_label_filter(cfg: DataConfig) -> DataConfig:
    """The same data read as every row: what inference uses of a filtered model's config."""
    return dataclasses.replace(cfg, include_labels=None, exclude_labels=())


def apply_label_filter(splits: dict[str, Any], cfg: DataConfig, has_labels: bool) -> dict[str, Any]:
    """Each split filtered, after checking the filter against the labels the data has (one
    pass over the train split's labels)."""
    rule = LabelFilter.from_config(cfg)
    if rule is None:
        return splits
    key = "data.include_labels" if rule.include is not None else "data.exclude_labels"
    if not has_labels:
        raise UserError(f"{key}: {cfg.source} has no labels to filter on")
    present = {int(v) for v in splits["train"].unique(schema.LABEL)}
    named = set(rule.include or ()) | set(rule.exclude)
    unknown = sorted(named - present)
    if unknown:
        raise UserError(f"{key}: label(s) {unknown} not in {cfg.source} (it has {sorted(present)})")
    if not rule.keeps(np.array(sorted(present))).any():
        raise UserError(f"{key}: the filter leaves no training rows in {cfg.source}")
    return {
        name: ds.map_batches(rule, batch_format="pyarrow", batch_size=None)
        for name, ds in splits.items()
    }
