"""Ids distinct across a whole Parquet input, checked before any row is used.

A read task sees one row group: it refuses null ids and duplicates within it, but an id found
in two files (or two row groups) passes it. ``check_distinct_ids`` reads every file's id
column once (page checksums verified) as a map-reduce on the cluster: map tasks split a few
files' id keys into hash buckets, one reduce task per bucket sorts and compares them. The
driver holds object references and one example, never the ids. A duplicate is a one-line
``UserError`` naming both files and the id.

Sources whose ids vaepipe makes itself (no id column; IDX, images, .npy) are distinct by
construction and are not read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.data.hashing import id_hash
from pipeline.data.parquet_files import read_column
from pipeline.data.ray_errors import get_all, user_errors
from pipeline.data.sources import SourcePlan
from pipeline.errors import UserError

FILES_PER_MAP_TASK = 8


def check_distinct_ids(plan: SourcePlan) -> None:
    """Raise ``UserError`` when two rows of ``plan``'s files share an id (needs Ray)."""
    import ray

    fs, column, paths = _id_files(plan)
    if not paths:
        return
    cpus = ray.cluster_resources().get("CPU", 1) if ray.is_initialized() else 1
    buckets = max(1, int(cpus))
    groups = [list(range(i, min(i + FILES_PER_MAP_TASK, len(paths))))
              for i in range(0, len(paths), FILES_PER_MAP_TASK)]  # fmt: skip
    map_task = ray.remote(_map_ids).options(num_returns=buckets)
    mapped = []
    for g in groups:
        refs = map_task.remote(fs, column, [(i, paths[i]) for i in g], buckets)
        mapped.append(refs if buckets > 1 else [refs])
    reduce_task = ray.remote(_reduce_ids)
    reduced = [reduce_task.remote(*(m[b] for m in mapped)) for b in range(buckets)]
    with user_errors():
        results = get_all(reduced, upstream=[r for refs in mapped for r in refs])
    found = [r for r in results if r[0]]
    if not found:
        return
    count = sum(r[0] for r in found)
    _, key, a, b = found[0]
    what = _id_text(fs, paths[a], column, key)
    where = paths[a] if a == b else f"{paths[a]} and {paths[b]}"
    raise UserError(
        f"{where}: duplicate id {what} in column {column!r} ({count} repeated ids in all); "
        "ids must be distinct across the input"
    )


def _id_files(plan: SourcePlan) -> tuple[Any, str, list[str]]:
    """(filesystem, id column, files) of a Parquet source with an id column, else no files."""
    from pipeline.data.sources.parquet import ParquetUnit

    units = [u for split in plan.units.values() for u in split]
    if not units or not isinstance(units[0], ParquetUnit) or units[0].spec.id_column is None:
        return None, "", []
    paths = sorted({u.path for u in units})
    return units[0].spec.fs, units[0].spec.id_column, paths


def _keys(ids: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) comparable keys (int ids as they are, strings as 64-bit hashes), (N,) hashes."""
    h = id_hash(ids)
    keys = ids.to_numpy().astype(np.int64) if pa.types.is_integer(ids.type) else h.view(np.int64)
    return keys, h


def _map_ids(fs: pafs.FileSystem, column: str, files: list[tuple[int, str]], buckets: int) -> Any:
    """Per bucket: (N, 2) int64 rows of (key, file index) for the ids of ``files``."""
    parts = []
    for index, path in files:
        ids = read_column(fs, path, column)
        if ids.null_count:
            raise UserError(f"{path}: column {column!r}: null ids")
        keys, h = _keys(ids)
        rows = np.stack([keys, np.full(len(keys), index, np.int64)], axis=1)
        parts.append((rows, (h % np.uint64(buckets)).astype(np.int64)))
    rows = np.concatenate([r for r, _ in parts]) if parts else np.empty((0, 2), np.int64)
    where = np.concatenate([w for _, w in parts]) if parts else np.empty(0, np.int64)
    out = [rows[where == b] for b in range(buckets)]
    return out if buckets > 1 else out[0]


def _reduce_ids(*parts: np.ndarray) -> tuple[int, int | None, int, int]:
    """(repeated ids, one of them, the two file indices holding it) in one bucket."""
    rows = np.concatenate(parts) if parts else np.empty((0, 2), np.int64)
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]  # by key, then file
    same = np.flatnonzero(rows[1:, 0] == rows[:-1, 0])
    if same.size == 0:
        return 0, None, -1, -1
    i = int(same[0])
    return int(same.size), int(rows[i, 0]), int(rows[i, 1]), int(rows[i + 1, 1])


def _id_text(fs: pafs.FileSystem, path: str, column: str, key: int) -> str:
    """The id behind ``key`` as the user wrote it (a string id's key is its hash)."""
    ids = read_column(fs, path, column)
    if pa.types.is_integer(ids.type):
        return str(key)
    keys, _ = _keys(ids)
    return repr(ids[int(np.flatnonzero(keys == key)[0])].as_py())
