"""Any source → sharded Parquet in the storage layout, written atomically.

Output: ``DIR/{train,val,test}/part-NNNNN.parquet`` (the splits computed once, kept when read
back), ``DIR/_vaepipe.json`` (manifest). Files are ~128 MiB with ~8 MiB row groups (a row
group is one read unit). Everything is written to a staging folder beside ``DIR`` and renamed
into place at the end; on any error the staging folder is removed and an existing ``DIR`` is
untouched. Duplicate ids are checked across the whole set (8 bytes of driver memory per row).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.hashing import id_hash
from pipeline.data.ingest import open_source
from pipeline.data.ray_errors import user_errors
from pipeline.data.schema import XLayout
from pipeline.data.sources import SPLITS
from pipeline.errors import UserError

FILE_BYTES = 128 << 20
ROW_GROUP_BYTES = 8 << 20
MANIFEST = "_vaepipe.json"

Progress = Callable[[int, int | None], None]  # (rows done, rows in all or None)


@dataclass
class PrepareResult:
    out: Path
    rows: dict[str, int]
    files: list[str] = field(default_factory=list)
    layout: XLayout | None = None


class ShardWriter:
    """Buffers Arrow batches into row groups of ``group_rows`` and files of ``file_rows``."""

    def __init__(self, folder: Path, target: pa.Schema, group_rows: int, file_rows: int):
        self.folder, self.target = folder, target
        self.group_rows, self.file_rows = group_rows, file_rows
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.writer: pq.ParquetWriter | None = None
        self.rows_in_file = 0
        self.files: list[Path] = []

    def add(self, table: pa.Table) -> None:
        self.pending.append(table.select(self.target.names).cast(self.target))
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.group_rows:
            self._flush(self.group_rows)

    def close(self) -> list[Path]:
        if self.pending_rows or not self.files:  # an empty split still gets one (empty) file
            self._flush(self.pending_rows)
        if self.writer is not None:
            self.writer.close()
        return self.files

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.pending) if self.pending else self.target.empty_table()
        head, rest = table.slice(0, rows), table.slice(rows)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        if self.writer is None or self.rows_in_file >= self.file_rows:
            if self.writer is not None:
                self.writer.close()
            path = self.folder / f"part-{len(self.files):05d}.parquet"
            self.writer = pq.ParquetWriter(path, self.target, compression="snappy")
            self.files.append(path)
            self.rows_in_file = 0
        self.writer.write_table(head, row_group_size=max(rows, 1))
        self.rows_in_file += rows


def _target_schema(first: pa.Schema, layout: XLayout, cfg: DataConfig) -> pa.Schema:
    meta = {
        schema.META_X_SHAPE: json.dumps(list(layout.shape)).encode(),
        schema.META_X_DTYPE: layout.dtype.encode(),
        schema.META_SOURCE: cfg.source.encode(),
    }
    return pa.schema([f.with_nullable(f.name != schema.ID) for f in first], metadata=meta)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_file():
        raise UserError(f"{out}: exists and is a file; --out must be a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: exists and is not empty; pass --overwrite to replace it")


class IdChecker:
    """Null and duplicate ids across everything written (ints kept raw, strings hashed)."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def add(self, table: pa.Table, where: str) -> None:
        ids = table.column(schema.ID)
        if ids.null_count:
            raise UserError(f"{where}: null ids")
        is_int = pa.types.is_integer(ids.type)
        self.parts.append(ids.to_numpy() if is_int else id_hash(ids).view(np.int64))

    def check(self, where: str) -> None:
        ids = np.sort(np.concatenate(self.parts)) if self.parts else np.empty(0)
        dup = ids[1:][ids[1:] == ids[:-1]]
        if dup.size:
            raise UserError(f"{where}: {dup.size} duplicate ids (e.g. id hash/value {dup[0]})")


def _write_splits(
    cfg: DataConfig, staging: Path, progress: Progress | None = None
) -> PrepareResult:
    data = open_source(cfg)
    row_bytes = data.layout.nbytes + 16
    group_rows = max(1, ROW_GROUP_BYTES // row_bytes)
    file_rows = max(group_rows, FILE_BYTES // row_bytes)
    result = PrepareResult(staging, {}, layout=data.layout)
    ids, target = IdChecker(), None
    for split in SPLITS:
        folder = staging / split
        folder.mkdir()
        writer, rows = None, 0
        with user_errors():
            for table in data.splits[split].iter_batches(batch_format="pyarrow", batch_size=None):
                if table.num_rows == 0:
                    continue
                target = target or _target_schema(table.schema, data.layout, cfg)
                writer = writer or ShardWriter(folder, target, group_rows, file_rows)
                ids.add(table, cfg.source)
                writer.add(table)
                rows += table.num_rows
                if progress is not None:
                    progress(sum(result.rows.values()) + rows, None)
        if writer is None and target is not None:
            writer = ShardWriter(folder, target, group_rows, file_rows)
        files = writer.close() if writer else []
        result.rows[split] = rows
        result.files += [str(f.relative_to(staging)) for f in files]
    if result.rows["train"] == 0:
        raise UserError(f"{cfg.source}: zero rows in the train split")
    ids.check(cfg.source)
    manifest = {"source": cfg.source, "description": data.description, "rows": result.rows}
    manifest |= {"layout": data.layout.to_dict(), "has_labels": data.has_labels}
    (staging / MANIFEST).write_text(json.dumps(manifest | {"files": result.files}, indent=1))
    return result


def _first_missing(path: Path) -> Path | None:
    """The outermost ancestor of ``path`` (itself included) that does not exist yet."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    return missing


def prepare(
    cfg: DataConfig, out: str | Path, overwrite: bool = False, progress: Progress | None = None
) -> PrepareResult:
    """Convert ``cfg.source`` to sharded Parquet in ``out``; all or nothing.

    ``progress(rows_done, None)`` is called after every batch written (the total is unknown
    until the source has been read).
    """
    out = Path(out).expanduser().absolute()
    _check_out(out, overwrite)
    created = _first_missing(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        result = _write_splits(cfg, staging, progress)
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        if out.exists():
            out.rename(trash)
        staging.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    result.out = out
    return result
