"""How vaepipe writes and reads Parquet files: page checksums on, and checked on every read.

Every page vaepipe writes carries a CRC32 (``write_page_checksum``) and every read verifies it
(``page_checksum_verification``): a flipped byte in a page fails the read with the file named,
instead of reading back as wrong pixels or latents.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.data.filesystems import Location
from pipeline.errors import UserError

WRITE_OPTIONS: dict[str, Any] = {"compression": "snappy", "write_page_checksum": True}

Progress = Callable[[int, int | None], None]  # (rows done, rows in all or None)


@dataclass(frozen=True)
class WrittenFile:
    """One data file of a staged output, as its writer reported it."""

    path: str  # relative to the staging root, "/"-separated
    rows: int
    bytes: int
    split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "rows": self.rows, "bytes": self.bytes}
        return out | ({"split": self.split} if self.split is not None else {})


def collect(
    records: Iterable[dict[str, Any]], total: int | None, progress: Progress | None
) -> list[WrittenFile]:
    """Write tasks' file records (streamed as files finish) → sorted ``WrittenFile``s,
    calling ``progress(rows done, total)`` after each."""
    files, done = [], 0
    for r in records:
        files.append(WrittenFile(r["path"], r["rows"], r["bytes"], r.get("split")))
        done += r["rows"]
        if progress is not None:
            progress(done, total)
    return sorted(files, key=lambda f: f.path)


def file_name(ids: pa.Array | pa.ChunkedArray, rows: int) -> str:
    """``part-<digest>.parquet`` from a batch's first and last id and size: a retried write task
    gets the same batch, so it overwrites its earlier attempt's file instead of adding one."""
    first = ids[0].as_py() if rows else None
    last = ids[rows - 1].as_py() if rows else None
    digest = hashlib.blake2b(repr((first, last, rows)).encode(), digest_size=8).hexdigest()
    return f"part-{digest}.parquet"


def write_file(
    root: Location, relative: str, table: pa.Table, row_group_rows: int, split: str | None = None
) -> WrittenFile:
    """Write ``table`` to ``root/relative`` in row groups of ``row_group_rows``."""
    target = root.child(relative)
    if target.is_local:  # object stores have no folders to make
        target.fs.create_dir(target.parent().path, recursive=True)
    with (
        target.fs.open_output_stream(target.path) as sink,
        pq.ParquetWriter(sink, table.schema, **WRITE_OPTIONS) as writer,
    ):
        writer.write_table(table, row_group_size=max(1, row_group_rows))
    size = target.fs.get_file_info(target.path).size
    return WrittenFile(relative, table.num_rows, int(size), split)


@contextlib.contextmanager
def open_file(fs: pafs.FileSystem, path: str) -> Iterator[pq.ParquetFile]:
    """A Parquet file whose every page read is checked against its checksum (if it has one)."""
    with fs.open_input_file(path) as raw:
        yield pq.ParquetFile(raw, page_checksum_verification=True)


def read_row_group(
    fs: pafs.FileSystem, path: str, row_group: int, columns: list[str] | None = None
) -> pa.Table:
    """One row group; a corrupt page or truncated file is a ``UserError`` naming the file."""
    try:
        with open_file(fs, path) as f:
            return f.read_row_group(row_group, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: cannot read row group {row_group} ({first})") from None


def read_column(fs: pafs.FileSystem, path: str, column: str) -> pa.ChunkedArray:
    """One column of a whole file, checksums verified; errors name the file."""
    try:
        with open_file(fs, path) as f:
            return f.read(columns=[column]).column(column)
    except (pa.ArrowInvalid, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: cannot read column {column!r} ({first})") from None
