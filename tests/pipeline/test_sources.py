"""Sources, planned and read without Ray: layouts, ids, labels, determinism."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from ingest_factories import float_table, idx_dir, image_folder, pixel_table, write_parquet

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.schema import XLayout, decode_x
from pipeline.data.sources import plan_source, source_kind
from pipeline.data.sources.shapes import FACTOR_COLUMNS


def read_all(plan, split="train") -> pa.Table:
    return pa.concat_tables([plan.read(u) for u in plan.units[split]])


def test_data_config_validation_and_round_trip():
    cfg = DataConfig(source="shapes", image_size=[32, 32], binarize="static")
    assert cfg.image_size == (32, 32)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="binarize"):
        DataConfig(binarize="sometimes")
    with pytest.raises(ValueError, match="val_fraction"):
        DataConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="colour"):
        DataConfig.from_dict({"source": "digits", "colour": "red"})


def test_source_kind_detection(tmp_path):
    assert source_kind("digits") == "digits" and source_kind("mnist") == "mnist_download"
    assert source_kind("s3://bucket/data") == "parquet"
    assert source_kind(str(idx_dir(tmp_path / "i"))) == "idx"
    f = write_parquet(pixel_table(3), tmp_path / "p" / "a.parquet")
    assert source_kind(str(f)) == "parquet" and source_kind(f"file://{f.parent}") == "parquet"
    assert source_kind(str(image_folder(tmp_path / "img"))) == "images"


def test_real_mnist_idx(mnist_dir):
    plan = plan_source(DataConfig(source=str(mnist_dir)))
    assert plan.layout == XLayout((1, 28, 28), "uint8") and plan.has_labels
    assert set(plan.units) == {"train", "test"}
    t = plan.read(plan.units["test"][0])
    assert t.num_rows == 10_000 and t.column(schema.ID)[0].as_py() == 1 << 32
    x = decode_x(t.column(schema.X), plan.layout)
    assert x.shape == (10_000, 1, 28, 28) and x.max() == 255
    assert t.column(schema.LABEL).to_pylist()[:3] == [7, 2, 1]  # the famous first test digits


@pytest.mark.parametrize("gz", [True, False])
def test_idx_raw_and_gz(tmp_path, gz):
    plan = plan_source(DataConfig(source=str(idx_dir(tmp_path, gz=gz))))
    t = read_all(plan)
    assert t.num_rows == 50 and plan.layout.shape == (1, 6, 5)
    assert t.column(schema.ID).to_pylist() == list(range(50))


def test_digits():
    plan = plan_source(DataConfig(source="digits"))
    t = read_all(plan)
    x = decode_x(t.column(schema.X), plan.layout)
    assert t.num_rows == 1797 and x.shape[1:] == (1, 8, 8) and x.max() == 255
    assert sorted(set(t.column(schema.LABEL).to_pylist())) == list(range(10))


def test_shapes_deterministic_and_partition_independent():
    small = plan_source(DataConfig(source="shapes", shapes_rows=3000, shapes_resolution=16))
    big = plan_source(DataConfig(source="shapes", shapes_rows=5000, shapes_resolution=16))
    a, b = read_all(small), read_all(big).slice(0, 3000)
    assert a.equals(b)  # row i does not depend on how many rows or units there are
    assert set(FACTOR_COLUMNS) <= set(a.column_names)
    x = decode_x(a.column(schema.X), small.layout)
    assert set(np.unique(x)) == {0, 255} and (x.reshape(3000, -1).max(1) == 255).all()
    other = read_all(
        plan_source(DataConfig(source="shapes", shapes_rows=3000, seed=1, shapes_resolution=16))
    )
    assert not other.column(schema.X).equals(a.column(schema.X))


def test_npy_uint8_images_and_float_features(tmp_path):
    np.save(tmp_path / "img.npy", np.zeros((7, 5, 4), np.uint8))
    np.save(tmp_path / "feat.npy", np.ones((9, 3), np.float64))
    img = plan_source(DataConfig(source=str(tmp_path / "img.npy")))
    feat = plan_source(DataConfig(source=str(tmp_path / "feat.npy")))
    assert img.layout == XLayout((1, 5, 4), "uint8")
    assert feat.layout == XLayout((3,), "float32")
    assert (decode_x(read_all(feat).column(schema.X), feat.layout) == 1.0).all()


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3)])
def test_image_folder_labels_and_resize(tmp_path, mode, channels):
    root = image_folder(tmp_path / "imgs", mode=mode)
    plan = plan_source(DataConfig(source=str(root), image_size=(8, 9)))
    assert plan.layout == XLayout((channels, 8, 9), "uint8") and plan.has_labels
    t = read_all(plan)
    assert t.column(schema.LABEL).to_pylist() == [0, 0, 0, 1, 1, 1]
    assert t.column(schema.ID)[0].as_py() == "cat/0.jpg"


def test_parquet_storage_layout_file_dir_and_uri(tmp_path):
    write_parquet(pixel_table(10), tmp_path / "d" / "a.parquet", row_group_size=4)
    write_parquet(pixel_table(6, id_start=10), tmp_path / "d" / "b.parquet")
    for src in (str(tmp_path / "d"), f"file://{tmp_path / 'd'}"):
        plan = plan_source(DataConfig(source=src))
        assert plan.layout == XLayout((1, 4, 4), "uint8") and plan.has_labels
        assert len(plan.units["train"]) == 4  # one unit per row group
        assert read_all(plan).column(schema.ID).to_pylist() == list(range(16))


def test_parquet_float_list_detected_and_ids_derived(tmp_path):
    values = np.arange(12, dtype=np.float64).reshape(4, 3)
    write_parquet(float_table(values), tmp_path / "f.parquet")
    plan = plan_source(DataConfig(source=str(tmp_path / "f.parquet")))
    assert plan.layout == XLayout((3,), "float32") and not plan.has_labels
    t = read_all(plan)
    assert (decode_x(t.column(schema.X), plan.layout) == values).all()
    assert t.column(schema.ID).to_pylist() == [0, 1, 2, 3]


def test_parquet_split_folders_are_kept(tmp_path):
    for i, split in enumerate(("train", "val", "test")):
        write_parquet(pixel_table(5, id_start=10 * i), tmp_path / split / "part-0.parquet")
    plan = plan_source(DataConfig(source=str(tmp_path)))
    assert set(plan.units) == {"train", "val", "test"}
    assert read_all(plan, "val").column(schema.ID).to_pylist() == list(range(10, 15))


@pytest.fixture
def http_dir(tmp_path):
    """A loopback HTTP server over a folder; yields (folder, base_url)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_mnist_download_verifies_sha256(mnist_dir, http_dir, tmp_path):
    import shutil

    from pipeline.data.sources import mnist_download
    from pipeline.errors import UserError

    folder, url = http_dir
    for name in mnist_download.SHA256:
        shutil.copy(mnist_dir / name, folder / name)
    got = mnist_download.ensure_files(tmp_path / "cache", mirrors=(url,))
    assert sorted(p.name for p in got.iterdir()) == sorted(mnist_download.SHA256)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    (got / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="sha256 mismatch"):
        mnist_download.ensure_files(got, mirrors=(url,))
    assert not (got / "t10k-labels-idx1-ubyte.gz").exists()
