"""scikit-learn's 8×8 handwritten digits (1,797 rows, bundled: no network)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data.schema import XLayout
from pipeline.data.sources import SourcePlan, rows_table
from pipeline.errors import UserError


def read_unit(_unit: None) -> pa.Table:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are 0..16; scale to the 0..255 range of every other image source.
    x = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    ids = np.arange(len(x), dtype=np.int64)
    return rows_table(ids, x, digits.target)


def plan(cfg: DataConfig) -> SourcePlan:
    if importlib.util.find_spec("sklearn") is None:
        raise UserError("digits: the built-in digits need scikit-learn (pip install scikit-learn)")
    return SourcePlan(
        units={"train": [None]},
        read=read_unit,
        layout=XLayout((1, 8, 8), "uint8"),
        has_labels=True,
        description="scikit-learn digits (1797 rows of 8x8)",
        rows={"train": 1797},
    )
