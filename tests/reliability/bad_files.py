"""Small Parquet inputs for the reliability tier, good and broken the ways real files break."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data import schema
from pipeline.data.schema import encode_x

SHAPE = (1, 8, 8)  # digits' layout, so a tiny model registered on it reads these files too


def pixel_table(n: int, id_start: int = 0, shape: tuple[int, ...] = SHAPE) -> pa.Table:
    """``n`` rows of uint8 samples in vaepipe's storage layout, ids ``id_start..``, labels."""
    x = np.random.default_rng(id_start).integers(0, 256, (n, *shape), dtype=np.uint8)
    cols = {
        schema.ID: pa.array(np.arange(id_start, id_start + n), pa.int64()),
        schema.X: encode_x(x),
        schema.LABEL: pa.array(np.arange(n) % 3, pa.int64()),
    }
    meta = {schema.META_X_SHAPE: json.dumps(list(shape)).encode(), schema.META_X_DTYPE: b"uint8"}
    return pa.table(cols).replace_schema_metadata(meta)


def write(table: pa.Table, path: Path) -> Path:
    """As vaepipe writes: page checksums on (uncompressed, so a flipped bit stays in its page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="none", use_dictionary=False, write_page_checksum=True)
    return path


def flip_bit_in_page(path: Path, column: str = schema.X) -> Path:
    """Flip one bit in the middle of ``column``'s first data page (the footer stays readable)."""
    meta = pq.read_metadata(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index(column))
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    where = start + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[where] ^= 0x10
    path.write_bytes(bytes(data))
    return path


# --- the catalogue: each case a folder (or file) holding one bad element beside good files ---
# A case builds under ``root`` and gives (the --data path, words the error must hold).


def _beside_good(root: Path, name: str) -> Path:
    """``root/name/`` with one good file ``a.parquet`` (ids 0..99); the bad one goes beside."""
    write(pixel_table(100), root / name / "a.parquet")
    return root / name


def empty_file(root: Path):
    d = _beside_good(root, "empty_file")
    (d / "b.parquet").write_bytes(b"")
    return d, ["b.parquet", "not a Parquet file"]


def truncated(root: Path):
    d = _beside_good(root, "truncated")
    good = write(pixel_table(100, id_start=100), d / "b.parquet").read_bytes()
    (d / "b.parquet").write_bytes(good[: len(good) // 2])
    return d, ["b.parquet", "truncated"]


def not_parquet(root: Path):
    d = _beside_good(root, "not_parquet")
    (d / "b.parquet").write_text("id,x\n1,2\n")
    return d, ["b.parquet", "not a Parquet file"]


def directory_for_file(root: Path):
    d = root / "directory_for_file" / "b.parquet"  # --data names a file; a folder is there
    d.mkdir(parents=True)
    return d, ["b.parquet", "directory is empty"]


def missing_ids(root: Path):
    d = _beside_good(root, "missing_ids")
    write(pixel_table(100, id_start=100).drop_columns([schema.ID]), d / "b.parquet")
    return d, ["b.parquet", "schema differs", "id"]


def string_ids(root: Path):
    d = _beside_good(root, "string_ids")
    t = pixel_table(100, id_start=100)
    t = t.set_column(0, schema.ID, pa.array([f"r{i}" for i in range(100, 200)]))
    write(t, d / "b.parquet")
    return d, ["b.parquet", "schema differs", "id"]


def wrong_width(root: Path):
    d = _beside_good(root, "wrong_width")
    write(pixel_table(100, id_start=100, shape=(1, 4, 4)), d / "b.parquet")
    return d, ["b.parquet", "schema differs", "x"]


def mixed_schemas(root: Path):
    d = _beside_good(root, "mixed_schemas")
    t = pixel_table(100, id_start=100)
    write(t.append_column("extra", pa.array(np.zeros(100))), d / "b.parquet")
    return d, ["b.parquet", "schema differs", "extra"]


def zero_rows(root: Path):
    return write(pixel_table(0), root / "zero_rows.parquet"), ["zero_rows.parquet", "zero rows"]


def no_such_path(root: Path):
    return root / "no_such_path", ["no_such_path", "no such file"]


DRIVER_CASES = {f.__name__: f for f in [
    empty_file, truncated, not_parquet, directory_for_file, missing_ids, string_ids, wrong_width,
    mixed_schemas, zero_rows, no_such_path,
]}  # fmt: skip


def unreadable(root: Path):
    """Mode 000 (meaningless as root, who reads it anyway: callers skip then)."""
    d = _beside_good(root, "unreadable")
    write(pixel_table(100, id_start=100), d / "b.parquet").chmod(0)
    return d, ["b.parquet", "Permission denied"]


# --- problems only a read task sees (inside Ray): pixel data, and float features for NaN/Inf ---

WIDTH = 4  # float features per row (a tabular model's input)


def float_table(n: int, id_start: int = 0, width: int = WIDTH) -> pa.Table:
    values = np.random.default_rng(id_start).random((n, width))
    return pa.table(
        {
            schema.ID: pa.array(np.arange(id_start, id_start + n), pa.int64()),
            "features": pa.array(list(values), pa.list_(pa.float64())),
        }
    )


def bit_flip(root: Path):
    d = _beside_good(root, "bit_flip")
    flip_bit_in_page(write(pixel_table(100, id_start=100), d / "b.parquet"))
    return d, ["b.parquet", "checksum"]


def null_ids(root: Path):
    d = _beside_good(root, "null_ids")
    t = pixel_table(100, id_start=100)
    ids = pa.array([None if i == 150 else i for i in range(100, 200)], pa.int64())
    write(t.set_column(0, schema.ID, ids), d / "b.parquet")
    return d, ["b.parquet", "null ids"]


def duplicate_ids(root: Path):
    d = _beside_good(root, "duplicate_ids")
    t = pixel_table(100, id_start=100)
    ids = pa.array([120 if i == 170 else i for i in range(100, 200)], pa.int64())
    write(t.set_column(0, schema.ID, ids), d / "b.parquet")
    return d, ["b.parquet", "duplicate id 120"]


def duplicate_ids_across_files(root: Path):
    d = _beside_good(root, "duplicate_ids_across_files")
    write(pixel_table(100, id_start=50), d / "b.parquet")  # ids 50..99 are in a.parquet too
    return d, ["a.parquet", "b.parquet", "duplicate id"]


def _float_case(root: Path, name: str, bad: float):
    d = root / name
    write(float_table(100), d / "a.parquet")
    t = float_table(100, id_start=100)
    rows = t.column("features").to_pylist()
    rows[37][2] = bad
    write(t.set_column(1, "features", pa.array(rows, pa.list_(pa.float64()))), d / "b.parquet")
    return d, ["b.parquet", "NaN or Inf"]


def nan(root: Path):
    return _float_case(root, "nan", float("nan"))


def inf(root: Path):
    return _float_case(root, "inf", float("inf"))


def ragged_width(root: Path):
    d = root / "ragged_width"
    write(float_table(100), d / "a.parquet")
    rows = float_table(100, id_start=100).column("features").to_pylist()
    rows[5] = rows[5][:-1]
    t = float_table(100, id_start=100)
    write(t.set_column(1, "features", pa.array(rows, pa.list_(pa.float64()))), d / "b.parquet")
    return d, ["b.parquet", f"{WIDTH - 1} values (expected {WIDTH})"]


# case -> (builder, the model it reads with: "pixels" or "features")
TASK_CASES = {
    "bit_flip": (bit_flip, "pixels"),
    "null_ids": (null_ids, "pixels"),
    "duplicate_ids": (duplicate_ids, "pixels"),
    "duplicate_ids_across_files": (duplicate_ids_across_files, "pixels"),
    "nan": (nan, "features"),
    "inf": (inf, "features"),
    "ragged_width": (ragged_width, "features"),
}
