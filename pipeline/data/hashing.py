"""Stable, vectorized hashes of row ids: the basis of splits and static binarization.

Python's ``hash()`` is salted per process, so it would give every Ray worker different splits;
these hashes depend only on the id and a seed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, elementwise on uint64 (wrapping arithmetic)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _raw_id_bits(ids: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """uint64 per id: integers as their bits, strings through blake2b."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if isinstance(ids, pa.Array):
        if pa.types.is_integer(ids.type):
            ids = ids.to_numpy(zero_copy_only=False)
        else:
            ids = ids.to_pylist()
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64).view(np.uint64)
    digests = [hashlib.blake2b(str(i).encode(), digest_size=8).digest() for i in arr.tolist()]
    return np.frombuffer(b"".join(digests), dtype=np.uint64).copy()


def id_hash(ids: pa.Array | pa.ChunkedArray | np.ndarray, seed: int = 0) -> np.ndarray:
    """(N,) uint64 hash of each id, stable across processes and machines."""
    salt = splitmix64(np.array([seed], dtype=np.int64).view(np.uint64))[0]
    return splitmix64(_raw_id_bits(ids) ^ salt)


def to_unit(h: np.ndarray) -> np.ndarray:
    """uint64 hashes → float64 uniform in [0, 1) (top 53 bits)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
