"""Small on-disk datasets for the ingest tests (IDX, Parquet, images, .npy)."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data import schema
from pipeline.data.schema import encode_x


def write_idx(path: Path, arr: np.ndarray, magic: int | None = None, gz: bool = True) -> Path:
    """(N, ...) uint8 → an IDX file (gzipped when ``gz``); ``magic`` overrides the header."""
    magic = (0x0800 | arr.ndim) if magic is None else magic
    raw = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def idx_dir(root: Path, n_train: int = 50, n_test: int = 20, gz: bool = True) -> Path:
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            root / f"{prefix}-images-idx3-ubyte{sfx}",
            rng.integers(0, 256, (n, 6, 5), np.uint8),
            gz=gz,
        )
        write_idx(
            root / f"{prefix}-labels-idx1-ubyte{sfx}", rng.integers(0, 10, (n,), np.uint8), gz=gz
        )
    return root


def pixel_table(n: int, shape=(1, 4, 4), id_start: int = 0, labels: bool = True) -> pa.Table:
    """Rows in the storage layout with x_shape/x_dtype metadata."""
    x = np.random.default_rng(id_start).integers(0, 256, (n, *shape), dtype=np.uint8)
    cols = {schema.ID: pa.array(np.arange(id_start, id_start + n)), schema.X: encode_x(x)}
    if labels:
        cols[schema.LABEL] = pa.array(np.arange(n) % 3)
    meta = {schema.META_X_SHAPE: json.dumps(list(shape)).encode(), schema.META_X_DTYPE: b"uint8"}
    return pa.table(cols).replace_schema_metadata(meta)


def float_table(values: np.ndarray, ids=None, column: str = "features") -> pa.Table:
    """(N, D) floats as a list<float64> column (the common 'tabular' layout)."""
    cols = {column: pa.array(list(values), pa.list_(pa.float64()))}
    if ids is not None:
        cols[schema.ID] = pa.array(ids)
    return pa.table(cols)


def write_parquet(table: pa.Table, path: Path, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, mode: str = "L") -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (10, 12) if mode == "L" else (10, 12, 3)
            img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
            img.save(root / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root
