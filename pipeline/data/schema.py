"""Column names, Arrow types and Parquet metadata keys: defined once, used everywhere.

Ingested rows (what every source produces and what training/encoding consume):
    id     int64 or string, stable and unique (the source's own id, else derived from
           file and row position)
    x      fixed_size_binary(nbytes): one sample in its storage layout, C-contiguous,
           dtype and shape given by the schema metadata below (uint8 pixels for images,
           float32 for real-valued features). Converted to float on the consumer.
    label  int64, optional

Latent Parquet (the output of ``vaepipe encode``):
    id, mu, logvar (fixed_size_list<float32>[latent_dim]), optional z, score (float32,
    per-row negative ELBO in nats), optional label.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

ID = "id"
X = "x"
LABEL = "label"

MU = "mu"
LOGVAR = "logvar"
Z = "z"
SCORE = "score"

# Schema-metadata keys (bytes, as Arrow stores them).
META_X_SHAPE = b"vaepipe.x_shape"  # JSON list, e.g. "[1, 28, 28]" or "[64]"
META_X_DTYPE = b"vaepipe.x_dtype"  # "uint8" or "float32"
META_MODEL = b"vaepipe.model"  # JSON: {"name", "version", "run_id", "uri"}
META_LATENT_DIM = b"vaepipe.latent_dim"
META_SOURCE = b"vaepipe.source"
META_VERSION = b"vaepipe.version"
META_DATA_DIGEST = b"vaepipe.data_digest"  # digest of the encoded source (pipeline.data.lineage)
META_TRAIN_DIGEST = b"vaepipe.train_data_digest"  # digest of the data the model learned from

X_DTYPES = ("uint8", "float32")


def x_nbytes(shape: tuple[int, ...], dtype: str) -> int:
    """Bytes in one stored sample of ``shape`` and ``dtype``."""
    n = 1
    for d in shape:
        n *= d
    return n * (1 if dtype == "uint8" else 4)


def ingest_schema(
    shape: tuple[int, ...], dtype: str, id_type: pa.DataType | None = None, labels: bool = True
) -> pa.Schema:
    """Arrow schema of ingested rows, with the sample shape and dtype in its metadata."""
    if dtype not in X_DTYPES:
        raise ValueError(f"x dtype must be one of {X_DTYPES}, got {dtype!r}")
    id_type = pa.string() if id_type is None else id_type
    fields = [pa.field(ID, id_type, nullable=False), pa.field(X, pa.binary(x_nbytes(shape, dtype)))]
    if labels:
        fields.append(pa.field(LABEL, pa.int64()))
    meta = {META_X_SHAPE: json.dumps(list(shape)).encode(), META_X_DTYPE: dtype.encode()}
    return pa.schema(fields, metadata=meta)


def x_layout(schema: pa.Schema) -> tuple[tuple[int, ...], str]:
    """(shape, dtype) of the ``x`` column, read from schema metadata."""
    meta = schema.metadata or {}
    if META_X_SHAPE not in meta or META_X_DTYPE not in meta:
        raise KeyError("schema has no vaepipe x_shape/x_dtype metadata")
    return tuple(json.loads(meta[META_X_SHAPE])), meta[META_X_DTYPE].decode()


def latent_schema(
    latent_dim: int, id_type: pa.DataType, with_z: bool = False, labels: bool = False
) -> pa.Schema:
    """Arrow schema of latent Parquet rows (file metadata is added by the writer)."""
    vec = pa.list_(pa.float32(), latent_dim)
    fields = [pa.field(ID, id_type, nullable=False), pa.field(MU, vec), pa.field(LOGVAR, vec)]
    if with_z:
        fields.append(pa.field(Z, vec))
    fields.append(pa.field(SCORE, pa.float32()))
    if labels:
        fields.append(pa.field(LABEL, pa.int64()))
    return pa.schema(fields)


@dataclass(frozen=True)
class XLayout:
    """Shape of one sample, e.g. ``(1, 28, 28)`` or ``(64,)``, and its storage dtype."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if not self.shape or any(s <= 0 for s in self.shape):
            raise ValueError(f"layout.shape must be non-empty positive ints, got {self.shape}")
        if self.dtype not in X_DTYPES:
            raise ValueError(f"layout.dtype must be one of {X_DTYPES}, got {self.dtype!r}")

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return x_nbytes(self.shape, self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> XLayout:
        return cls(tuple(d["shape"]), d["dtype"])


def encode_x(x: np.ndarray) -> pa.FixedSizeBinaryArray:
    """(N, *shape) uint8/float32 array → fixed_size_binary array (one copy at most)."""
    x = np.ascontiguousarray(x)
    n = x.shape[0]
    width = x.nbytes // n if n else int(np.prod(x.shape[1:])) * x.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(x)])


def decode_x(col: pa.Array | pa.ChunkedArray, layout: XLayout) -> np.ndarray:
    """fixed_size_binary column → (N, *shape) read-only numpy view, zero-copy per chunk."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks != 1:
            parts = [decode_x(c, layout) for c in col.chunks]
            return np.concatenate(parts) if parts else np.empty((0, *layout.shape), layout.dtype)
        col = col.chunk(0)
    n = len(col)
    dtype = np.dtype(layout.dtype)
    data = col.buffers()[1]
    if n == 0 or data is None:
        return np.empty((0, *layout.shape), dtype)
    flat = np.frombuffer(
        data, dtype=dtype, count=n * layout.numel, offset=col.offset * layout.nbytes
    )
    return flat.reshape(n, *layout.shape)
