"""A ``.npy`` array: (N, *shape) uint8 pixels or real-valued features, ids = row index.

(N, H, W) arrays are read as one-channel images (1, H, W); float arrays become float32.
The file is memory-mapped, so the driver only reads its header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data.schema import XLayout
from pipeline.data.sources import SourcePlan, rows_table
from pipeline.errors import UserError

UNIT_BYTES = 32 << 20


@dataclass(frozen=True)
class NpyUnit:
    path: str
    start: int
    stop: int
    shape: tuple[int, ...]


def _open(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a valid .npy file or truncated ({exc})") from None


def read_unit(unit: NpyUnit) -> pa.Table:
    arr = np.asarray(_open(unit.path)[unit.start : unit.stop])
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            bad = unit.start + int(np.argwhere(~np.isfinite(arr))[0][0])
            raise UserError(f"{unit.path}: NaN or Inf values (row {bad})")
    ids = np.arange(unit.start, unit.stop, dtype=np.int64)
    return rows_table(ids, arr.reshape(len(arr), *unit.shape))


def plan(cfg: DataConfig) -> SourcePlan:
    path = cfg.source.removeprefix("file://")
    arr = _open(path)
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise UserError(f"{path}: dtype {arr.dtype} not supported (expected uint8 or float)")
    if arr.ndim < 2:
        raise UserError(f"{path}: wrong shape {arr.shape} (expected (N, D) or (N, H, W) ...)")
    if arr.shape[0] == 0 or 0 in arr.shape:
        raise UserError(f"{path}: zero rows (shape {arr.shape})")
    shape = (1, *arr.shape[1:]) if arr.ndim == 3 else tuple(arr.shape[1:])
    layout = XLayout(shape, "uint8" if arr.dtype == np.uint8 else "float32")
    n = arr.shape[0]
    step = max(1, UNIT_BYTES // layout.nbytes)
    units = [NpyUnit(path, s, min(s + step, n), shape) for s in range(0, n, step)]
    return SourcePlan(
        units={"train": units},
        read=read_unit,
        layout=layout,
        has_labels=False,
        description=f".npy array {path} ({n} rows of {arr.dtype} {arr.shape[1:]})",
        rows=n,
    )
