"""MNIST-format IDX files (``train-*`` and ``t10k-*``, ``.gz`` or raw).

Ids are ``file_code << 32 | row`` (train 0, t10k 1), so they are stable and unique across
both files. Readers seek to their row range; on ``.gz`` that means decompressing the prefix,
which is why units are a few large row ranges.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data.schema import XLayout
from pipeline.data.sources import SourcePlan, rows_table
from pipeline.errors import UserError

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims (N, rows, cols)
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim (N,)
ROWS_PER_UNIT = 20_000
FILE_CODES = {"train": 0, "t10k": 1}


@dataclass(frozen=True)
class IdxHeader:
    path: str
    dims: tuple[int, ...]

    @property
    def data_offset(self) -> int:
        return 4 + 4 * len(self.dims)

    @property
    def row_bytes(self) -> int:
        return math.prod(self.dims[1:])


def _open(path: str) -> BinaryIO:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _stored_size(path: str) -> int:
    """Uncompressed size: the file size, or a .gz file's ISIZE trailer (size mod 2**32)."""
    if not path.endswith(".gz"):
        return os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            raise UserError(f"{path}: not a gzip file")
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def read_header(path: str, magic: int) -> IdxHeader:
    """Check magic number and total size; raise a one-line UserError naming the file."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4:
                raise UserError(f"{path}: truncated IDX file (no header)")
            found = struct.unpack(">I", head)[0]
            if found != magic:
                raise UserError(
                    f"{path}: wrong IDX magic number 0x{found:08x} (expected 0x{magic:08x})"
                )
            ndim = magic & 0xFF
            raw = f.read(4 * ndim)
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 * ndim:
        raise UserError(f"{path}: truncated IDX header")
    header = IdxHeader(path, struct.unpack(f">{ndim}I", raw))
    expected = header.data_offset + header.dims[0] * header.row_bytes
    actual = _stored_size(path)
    if actual != expected % (1 << 32 if path.endswith(".gz") else 1 << 64):
        raise UserError(
            f"{path}: wrong IDX size: header says {'x'.join(map(str, header.dims))} "
            f"({expected} bytes), file holds {actual} bytes"
        )
    if header.dims[0] == 0:
        raise UserError(f"{path}: zero rows")
    return header


@dataclass(frozen=True)
class IdxUnit:
    images: IdxHeader
    labels: IdxHeader | None
    start: int
    stop: int
    id_base: int


@functools.lru_cache(maxsize=4)  # MNIST: train/t10k images and labels
def _decompressed(path: str, mtime_ns: int) -> bytes:
    """A .gz IDX file's bytes, decompressed once per process. gzip cannot seek: reading rows
    k..n would otherwise decompress everything before them again, for every unit and epoch."""
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as exc:
        raise UserError(f"{path}: corrupt gzip data ({exc})") from None


def _read_rows(header: IdxHeader, start: int, stop: int) -> np.ndarray:
    want = (stop - start) * header.row_bytes
    offset = header.data_offset + start * header.row_bytes
    if header.path.endswith(".gz"):
        data = _decompressed(header.path, os.stat(header.path).st_mtime_ns)
        raw = memoryview(data)[offset : offset + want]
    else:
        with open(header.path, "rb") as f:
            f.seek(offset)
            raw = f.read(want)
    if len(raw) != want:
        raise UserError(f"{header.path}: truncated IDX data at row {start}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(stop - start, *header.dims[1:])


def read_unit(unit: IdxUnit) -> pa.Table:
    x = _read_rows(unit.images, unit.start, unit.stop)[:, None]  # (n, 1, H, W)
    labels = None if unit.labels is None else _read_rows(unit.labels, unit.start, unit.stop)
    ids = unit.id_base + np.arange(unit.start, unit.stop, dtype=np.int64)
    return rows_table(ids, x, labels)


def _find(directory: str, prefix: str, kind: str) -> str | None:
    matches = sorted(glob.glob(os.path.join(directory, f"{prefix}-{kind}*ubyte*")))
    return matches[0] if matches else None


def _split_units(directory: str, prefix: str) -> tuple[list[IdxUnit], IdxHeader] | None:
    img_path = _find(directory, prefix, "images")
    if img_path is None:
        return None
    images = read_header(img_path, IMAGES_MAGIC)
    lab_path = _find(directory, prefix, "labels")
    labels = None if lab_path is None else read_header(lab_path, LABELS_MAGIC)
    if labels is not None and labels.dims[0] != images.dims[0]:
        raise UserError(f"{lab_path}: {labels.dims[0]} labels for {images.dims[0]} images")
    n, base = images.dims[0], FILE_CODES[prefix] << 32
    units = [
        IdxUnit(images, labels, s, min(s + ROWS_PER_UNIT, n), base)
        for s in range(0, n, ROWS_PER_UNIT)
    ]
    return units, images


def plan(cfg: DataConfig) -> SourcePlan:
    directory = cfg.source.removeprefix("file://")
    found = {p: _split_units(directory, p) for p in FILE_CODES}
    if found["train"] is None and found["t10k"] is None:
        raise UserError(f"{directory}: no train-images-* or t10k-images-* IDX file")
    headers = [h for v in found.values() if v for h in [v[1]]]
    if len({h.dims[1:] for h in headers}) > 1:
        raise UserError(f"{headers[1].path}: image size differs from {headers[0].path}")
    units = {split: v[0] for split, v in (("train", found["train"]), ("test", found["t10k"])) if v}
    if "train" not in units:  # only t10k present: treat it as the whole set
        units = {"train": units.pop("test")}
    has_labels = all(u.labels is not None for us in units.values() for u in us)
    if not has_labels:  # every block must have the same columns
        units = {k: [dataclasses.replace(u, labels=None) for u in v] for k, v in units.items()}
    rows = {k: sum(u.stop - u.start for u in v) for k, v in units.items()}
    return SourcePlan(
        units=units,
        read=read_unit,
        layout=XLayout((1, *headers[0].dims[1:]), "uint8"),
        has_labels=has_labels,
        description=f"IDX files in {directory} ({rows})",
        rows=sum(rows.values()),
    )
