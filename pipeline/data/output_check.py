"""Verify a staged output before it is committed: files, sizes, rows and distinct ids.

1. Every file a writer reported is present in staging with the size it reported, and staging
   holds no other data file.
2. Each file is read back on the cluster (its ``id`` column, page checksums verified): its row
   count must be what its writer reported, and the total what the source holds.
3. Ids are distinct, checked as a map-reduce on the cluster: map tasks read the ids of a few
   files and split them into hash buckets; one reduce task per bucket sorts and compares its
   ids. The driver holds object references and small counts, never the ids.
A mismatch raises a one-line ``UserError`` and the caller commits nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.data import schema
from pipeline.data.filesystems import Location
from pipeline.data.hashing import id_hash
from pipeline.data.parquet_files import WrittenFile, read_column
from pipeline.data.ray_errors import get_all, user_errors
from pipeline.errors import UserError

log = logging.getLogger(__name__)

FILES_PER_MAP_TASK = 4


def verify_staged(
    staging: Location, files: list[WrittenFile], expected_rows: int | None, what: str
) -> None:
    """Raise ``UserError`` unless ``files`` are exactly staging's data and hold good rows."""
    _check_listing(staging, files, what)
    read_back, duplicates, example = _scan_ids(staging, [f.path for f in files])
    for f, rows in zip(files, read_back, strict=True):
        if rows != f.rows:
            raise UserError(
                f"{what}: {f.path} holds {rows} rows but its writer wrote {f.rows}; "
                "nothing committed"
            )
    total = sum(read_back)
    if expected_rows is not None and total != expected_rows:
        raise UserError(
            f"{what}: {total} rows written but the source has {expected_rows}; nothing committed"
        )
    if duplicates:
        raise UserError(
            f"{what}: {duplicates} duplicate ids (e.g. id {example}; string ids: its hash); "
            "nothing committed"
        )
    log.info("verified %d files, %d rows, ids distinct", len(files), total)


def _check_listing(staging: Location, files: list[WrittenFile], what: str) -> None:
    root = staging.path.rstrip("/")
    listed = staging.fs.get_file_info(pafs.FileSelector(root, recursive=True))
    present = {
        i.path[len(root) + 1 :]: i.size
        for i in listed
        if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
    }
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise UserError(f"{what}: {twice} was written twice; nothing committed")
    for f in files:
        if f.path not in present:
            raise UserError(f"{what}: written file {f.path} is missing; nothing committed")
        if present[f.path] != f.bytes:
            raise UserError(
                f"{what}: {f.path} has {present[f.path]} bytes but {f.bytes} were written; "
                "nothing committed"
            )
    extra = sorted(set(present) - {f.path for f in files})
    if extra:
        raise UserError(
            f"{what}: unexpected file {extra[0]} in staging ({len(extra)} in all); "
            "nothing committed"
        )


def _bucket_of(ids: pa.ChunkedArray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) comparable id keys (int ids as they are, strings as 64-bit hashes), (N,) buckets."""
    h = id_hash(ids)
    is_int = pa.types.is_integer(ids.type)
    keys = ids.to_numpy().astype(np.int64) if is_int else h.view(np.int64)
    return keys, (h % np.uint64(buckets)).astype(np.int64)


def _map_ids(fs: pafs.FileSystem, paths: list[str], buckets: int) -> list[Any]:
    """Rows per file, then the id keys of ``paths`` falling in each of ``buckets`` buckets."""
    rows, keys, where = [], [], []
    for path in paths:
        ids = read_column(fs, path, schema.ID)
        rows.append(len(ids))
        k, b = _bucket_of(ids, buckets)
        keys.append(k)
        where.append(b)
    k = np.concatenate(keys) if keys else np.empty(0, np.int64)
    b = np.concatenate(where) if where else np.empty(0, np.int64)
    return [rows, *(k[b == i] for i in range(buckets))]


def _reduce_ids(*parts: np.ndarray) -> tuple[int, int | None]:
    """(duplicates, one duplicated key) among one bucket's keys."""
    keys = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
    dup = keys[1:][keys[1:] == keys[:-1]]
    return int(dup.size), (int(dup[0]) if dup.size else None)


def _scan_ids(staging: Location, paths: list[str]) -> tuple[list[int], int, int | None]:
    """(rows per file read back, duplicate ids, one duplicated id) via Ray tasks."""
    import ray

    if not paths:
        return [], 0, None
    cpus = ray.cluster_resources().get("CPU", 1) if ray.is_initialized() else 1
    buckets = max(1, int(cpus))
    groups = [paths[i : i + FILES_PER_MAP_TASK] for i in range(0, len(paths), FILES_PER_MAP_TASK)]
    map_task = ray.remote(_map_ids).options(num_returns=buckets + 1)
    reduce_task = ray.remote(_reduce_ids)
    full = [[f"{staging.path}/{p}" for p in g] for g in groups]
    mapped = [map_task.remote(staging.fs, g, buckets) for g in full]
    reduced = [reduce_task.remote(*(m[1 + i] for m in mapped)) for i in range(buckets)]
    every_map = [r for m in mapped for r in m]
    with user_errors():
        rows = [n for per_group in get_all([m[0] for m in mapped], every_map) for n in per_group]
        results = get_all(reduced, every_map)
    duplicates = sum(n for n, _ in results)
    example = next((e for n, e in results if n), None)
    return rows, duplicates, example
