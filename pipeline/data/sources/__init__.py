"""Data sources and the registry that maps a ``--data SRC`` string to one.

Every source is planned on the driver without Ray (cheap validation: files exist, headers,
footers, schemas, columns, shapes) into a ``SourcePlan``: a list of small read units per split
and a picklable ``read(unit) -> pa.Table`` that Ray Data runs on the workers (per-batch checks
such as NaN/Inf and null ids happen there). ``pipeline.data.ingest`` turns plans into Datasets.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.schema import XLayout, encode_x
from pipeline.errors import UserError

SPLITS = ("train", "val", "test")
BUILTINS = {"digits": "digits", "shapes": "shapes", "mnist": "mnist_download"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


@dataclass(frozen=True)
class SourcePlan:
    """A validated source, ready to be read by Ray Data."""

    units: dict[str, list[Any]]
    """Read units per split the source has itself; "train" always (a source without splits
    puts everything there and ingest carves val/test by id hash)."""
    read: Callable[[Any], pa.Table]
    """Picklable: one unit → ingested rows (id, x, [label], extra columns)."""
    layout: XLayout
    has_labels: bool
    description: str
    rows: int | None = None
    """Rows in all units by the source's own metadata (footers, headers), when known without
    reading them: what a complete conversion or encoding must have written, and for an ETA, the
    hot-or-streaming choice and the lineage digest."""


def rows_table(
    ids: np.ndarray | pa.Array,
    x: np.ndarray,
    labels: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
) -> pa.Table:
    """Ingested rows from (N,) ids, (N, *shape) samples and optional (N,) labels."""
    cols: dict[str, Any] = {schema.ID: ids, schema.X: encode_x(x)}
    if labels is not None:
        cols[schema.LABEL] = pa.array(np.asarray(labels, dtype=np.int64))
    cols.update(extra or {})
    return pa.table(cols)


def _local_kind(path: str) -> str:
    """Source module for an existing local path, judged by names and magic bytes."""
    if os.path.isfile(path):
        lower = path.lower()
        if lower.endswith(PARQUET_SUFFIXES):
            return "parquet"
        if lower.endswith(".npy"):
            return "npy"
        with open(path, "rb") as f:
            head = f.read(6)
        if head[:4] == b"PAR1":
            return "parquet"
        if head == b"\x93NUMPY":
            return "npy"
        raise UserError(
            f"{path}: not a recognised data file (expected .parquet or .npy, or a directory of "
            "IDX files, Parquet files or images)"
        )
    names = [n for n in os.listdir(path) if not n.startswith((".", "_"))]
    if not names:
        raise UserError(f"{path}: directory is empty")
    if any(n.startswith(("train-", "t10k-")) and "ubyte" in n for n in names):
        return "idx"
    found: set[str] = set()
    for _root, _dirs, files in os.walk(path):
        for n in files:
            lower = n.lower()
            if lower.endswith(PARQUET_SUFFIXES):
                return "parquet"
            if lower.endswith(IMAGE_SUFFIXES):
                found.add("images")
    if found:
        return "images"
    raise UserError(f"{path}: no IDX, Parquet (.parquet) or image (.png/.jpg) files found")


def source_kind(src: str) -> str:
    """The module in ``pipeline.data.sources`` that reads ``src``."""
    if src in BUILTINS:
        return BUILTINS[src]
    if "://" in src:
        scheme, rest = src.split("://", 1)
        if scheme != "file":
            return "parquet"  # remote filesystems: Parquet only
        src = rest
    if not os.path.exists(src):
        raise UserError(f"{src}: no such file or directory")
    return _local_kind(src)


def plan_source(cfg: DataConfig) -> SourcePlan:
    """Validate ``cfg.source`` on the driver (no Ray) and plan its reading."""
    module = importlib.import_module(f"pipeline.data.sources.{source_kind(cfg.source)}")
    return module.plan(cfg)
