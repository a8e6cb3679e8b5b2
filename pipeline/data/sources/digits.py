"""scikit-learn's 8×8 handwritten digits (1,797 rows, bundled: no network)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data.schema import XLayout
from pipeline.data.sources import SourcePlan, rows_table
from pipeline.errors import UserError


def read_unit(_unit: None) -> pa.Table:
    images, target = _load()
    # Pixels are 0..16; scale to the 0..255 range of every other image source.
    x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    ids = np.arange(len(x), dtype=np.int64)
    return rows_table(ids, x, target)


def _load() -> tuple[np.ndarray, np.ndarray]:
    """``(N, 8, 8)`` pixels 0..16 and ``(N,)`` labels.

    Read straight from the CSV scikit-learn bundles: importing ``sklearn.datasets`` costs 1-2 s
    of CPU in every Ray worker process that reads digits, about as much as the whole read on 2
    cores; ``load_digits`` (which reads the same file) is the fallback.
    """
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if csv.is_file():
        table = np.loadtxt(csv, delimiter=",")  # (N, 65): 64 pixels, then the label
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def plan(cfg: DataConfig) -> SourcePlan:
    if importlib.util.find_spec("sklearn") is None:
        raise UserError("digits: the built-in digits need scikit-learn (pip install scikit-learn)")
    return SourcePlan(
        units={"train": [None]},
        read=read_unit,
        layout=XLayout((1, 8, 8), "uint8"),
        has_labels=True,
        description="scikit-learn digits (1797 rows of 8x8)",
        rows=1797,
    )
