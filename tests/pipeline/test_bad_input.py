"""Every kind of bad input → one line naming the file and the problem, nothing written.

Driver-side checks run without Ray; per-batch checks (NaN/Inf, null or duplicate ids) are
exercised by calling the source's read function directly, as a Ray task would.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pytest
from ingest_factories import (
    float_table,
    idx_dir,
    image_folder,
    pixel_table,
    write_idx,
    write_parquet,
)

from jobs.cli import main as cli_main
from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.prepare import prepare
from pipeline.data.sources import plan_source
from pipeline.errors import UserError


def one_line_error(cfg: DataConfig, *needles: str, tmp_path=None) -> str:
    """Plan ``cfg`` expecting a UserError; check it is one line holding every needle."""
    with pytest.raises(UserError) as info:
        plan_source(cfg)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def read_error(cfg: DataConfig, *needles: str) -> str:
    """Plan fine, but reading the first unit fails with a one-line UserError."""
    plan = plan_source(cfg)
    with pytest.raises(UserError) as info:
        for unit in plan.units["train"]:
            plan.read(unit)
    msg = str(info.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    return msg


# --- driver-side checks: each case builds its bad source under tmp_path ---------------------


def _missing(p):
    return str(p / "nope"), ("nope", "no such file")


def _empty_dir(p):
    (p / "empty").mkdir()
    return str(p / "empty"), ("empty", "directory is empty")


def _zero_rows_parquet(p):
    f = write_parquet(pixel_table(0), p / "zero.parquet")
    return str(f), ("zero.parquet", "zero rows")


def _zero_rows_npy(p):
    np.save(p / "zero.npy", np.zeros((0, 3), np.float32))
    return str(p / "zero.npy"), ("zero.npy", "zero rows")


def _truncated_parquet(p):
    f = write_parquet(pixel_table(50), p / "cut.parquet")
    f.write_bytes(f.read_bytes()[:-100])
    return str(f), ("cut.parquet", "not a Parquet file or truncated")


def _not_parquet(p):
    (p / "d").mkdir()
    (p / "d" / "notes.parquet").write_text("hello, I am text")
    return str(p / "d"), ("notes.parquet", "not a Parquet file")


def _unknown_file(p):
    (p / "data.csv").write_text("a,b\n1,2\n")
    return str(p / "data.csv"), ("data.csv", "not a recognised data file")


def _schemas_differ(p):
    write_parquet(pixel_table(4), p / "s" / "a.parquet")
    write_parquet(pixel_table(4, shape=(1, 2, 2)), p / "s" / "b.parquet")
    return str(p / "s"), ("b.parquet", "schema differs", "a.parquet")


def _wrong_shape_metadata(p):
    t = pixel_table(4)
    meta = {**t.schema.metadata, schema.META_X_SHAPE: json.dumps([1, 5, 5]).encode()}
    f = write_parquet(t.replace_schema_metadata(meta), p / "shape.parquet")
    return str(f), ("shape.parquet", "wrong shape")


def _wrong_dtype_column(p):
    f = write_parquet(pa.table({"x": ["a", "b"]}), p / "str.parquet")
    return str(f), ("str.parquet", "column 'x' has type string")


def _wrong_id_dtype(p):
    t = pixel_table(3).set_column(0, schema.ID, pa.array([0.5, 1.5, 2.5]))
    f = write_parquet(t, p / "fid.parquet")
    return str(f), ("fid.parquet", "id column 'id' has type double")


def _npy_wrong_dtype(p):
    np.save(p / "i64.npy", np.zeros((3, 4), np.int64))
    return str(p / "i64.npy"), ("i64.npy", "dtype int64")


def _npy_wrong_shape(p):
    np.save(p / "flat.npy", np.zeros(5, np.float32))
    return str(p / "flat.npy"), ("flat.npy", "wrong shape")


def _npy_truncated(p):
    np.save(p / "cut.npy", np.zeros((100, 10), np.float32))
    (p / "cut.npy").write_bytes((p / "cut.npy").read_bytes()[:500])
    return str(p / "cut.npy"), ("cut.npy", "truncated")


def _idx_wrong_magic(p):
    idx_dir(p / "m")
    write_idx(
        p / "m" / "train-images-idx3-ubyte.gz", np.zeros((4, 6, 5), np.uint8), magic=0x0803 + 0x10
    )
    return str(p / "m"), ("train-images-idx3-ubyte.gz", "wrong IDX magic number")


def _idx_truncated(p):
    idx_dir(p / "t", gz=False)
    f = p / "t" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-7])
    return str(p / "t"), ("t10k-images-idx3-ubyte", "wrong IDX size")


def _idx_truncated_gz(p):
    idx_dir(p / "g")
    f = p / "g" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw[:-30]))
    return str(p / "g"), ("train-images-idx3-ubyte.gz", "wrong IDX size")


def _idx_label_count(p):
    idx_dir(p / "l")
    write_idx(p / "l" / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    return str(p / "l"), ("train-labels-idx1-ubyte.gz", "7 labels for 50 images")


CASES = {f.__name__[1:]: f for f in [
    _missing, _empty_dir, _zero_rows_parquet, _zero_rows_npy, _truncated_parquet, _not_parquet,
    _unknown_file, _schemas_differ, _wrong_shape_metadata, _wrong_dtype_column, _wrong_id_dtype,
    _npy_wrong_dtype, _npy_wrong_shape, _npy_truncated, _idx_wrong_magic, _idx_truncated,
    _idx_truncated_gz, _idx_label_count,
]}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_driver_side_errors_name_file_and_problem(tmp_path, case):
    src, needles = CASES[case](tmp_path)
    one_line_error(DataConfig(source=src), *needles)


@pytest.mark.parametrize("case", ["missing", "truncated_parquet", "idx_wrong_magic"])
def test_prepare_writes_nothing_on_bad_input(tmp_path, case):
    src, _ = CASES[case](tmp_path / "in")
    out = tmp_path / "out" / "prepared"
    with pytest.raises(UserError):
        prepare(DataConfig(source=src), out)
    assert not (tmp_path / "out").exists()  # not even the parent it would have created


def test_prepare_refuses_existing_non_empty_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="not a vaepipe output"):
        prepare(DataConfig(source="digits"), out)
    assert (out / "keep.txt").read_text() == "precious" and len(list(tmp_path.iterdir())) == 1


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    code = cli_main(["prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("vaepipe: error: ") and "\n" not in err
    assert "nope" in err and not (tmp_path / "o").exists()


def test_wrong_column_name(tmp_path):
    f = write_parquet(pixel_table(3), tmp_path / "c.parquet")
    one_line_error(DataConfig(source=str(f), column="pixels"), "c.parquet", "no column 'pixels'")


def test_ambiguous_column(tmp_path):
    t = float_table(np.ones((2, 3))).append_column("other", pa.array([[1.0], [2.0]]))
    f = write_parquet(t, tmp_path / "two.parquet")
    one_line_error(DataConfig(source=str(f)), "two.parquet", "several data columns")


def test_images_mixed_levels_and_corrupt(tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "loose.png").write_bytes(b"not really a png")
    one_line_error(DataConfig(source=str(root)), "imgs", "both at the top level")
    (root / "loose.png").unlink()
    (root / "dog" / "9.png").write_bytes(b"not really a png")
    read_error(DataConfig(source=str(root)), "9.png", "cannot decode image")


# --- per-batch checks (run inside Ray tasks in real use) --------------------------------------


def test_nan_and_inf_values(tmp_path):
    vals = np.ones((4, 3))
    vals[2, 1] = np.nan
    f = write_parquet(float_table(vals), tmp_path / "nan.parquet")
    read_error(DataConfig(source=str(f)), "nan.parquet", "NaN or Inf")
    np.save(tmp_path / "inf.npy", np.array([[1.0, np.inf]]))
    read_error(DataConfig(source=str(tmp_path / "inf.npy")), "inf.npy", "NaN or Inf")


def test_null_and_duplicate_ids(tmp_path):
    f = write_parquet(float_table(np.ones((3, 2)), ids=[1, None, 3]), tmp_path / "nullid.parquet")
    read_error(DataConfig(source=str(f)), "nullid.parquet", "null ids")
    f = write_parquet(float_table(np.ones((3, 2)), ids=[1, 3, 3]), tmp_path / "dupid.parquet")
    read_error(DataConfig(source=str(f)), "dupid.parquet", "duplicate id 3")


def test_ragged_list_rows(tmp_path):
    t = pa.table({"features": pa.array([[1.0, 2.0, 3.0], [1.0, 2.0]])})
    f = write_parquet(t, tmp_path / "ragged.parquet")
    read_error(DataConfig(source=str(f)), "ragged.parquet", "2 values (expected 3)")


def test_mnist_without_network_fails_fast(tmp_path, monkeypatch):
    from pipeline.data.sources import mnist_download

    monkeypatch.setenv("VAEPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VAEPIPE_DOWNLOAD_TIMEOUT", "2")
    monkeypatch.setattr(mnist_download, "MIRRORS", ("http://127.0.0.1:9/",))
    msg = one_line_error(DataConfig(source="mnist"), "cannot download MNIST", "--data")
    assert "local IDX files" in msg
    assert not [p for p in (tmp_path / "cache" / "mnist").iterdir()]  # no partial file left
