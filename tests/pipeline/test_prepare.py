"""``vaepipe prepare``: sharded Parquet, read back with the same layout, all or nothing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from ingest_factories import float_table, write_parquet

from jobs.cli import main as cli_main
from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.batches import Preprocessor, iter_torch_batches
from pipeline.data.ingest import open_source
from pipeline.data.prepare import prepare
from pipeline.data.staged_output import MANIFEST
from pipeline.errors import UserError

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def quiet_ray_data(ray_local):
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    return ray_local


def split_ids(data) -> dict[str, list]:
    pre = Preprocessor(data.layout)
    return {
        s: sorted(np.concatenate([b.ids for b in iter_torch_batches(ds, 1000, pre)]).tolist())
        for s, ds in data.splits.items()
    }


def test_prepare_shapes_and_read_back_same_layout_and_splits(tmp_path):
    cfg = DataConfig(source="shapes", shapes_rows=2500, shapes_resolution=20)
    seen: list[tuple[int, int | None]] = []
    result = prepare(cfg, tmp_path / "out", progress=lambda done, total: seen.append((done, total)))
    out = tmp_path / "out"
    assert sum(result.rows.values()) == 2500
    assert seen[-1] == (2500, 2500)  # rows written, reported as files finish
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["layout"] == {"shape": [1, 20, 20], "dtype": "uint8"}
    first = next(f for f in manifest["files"] if f["split"] == "train")
    assert first["path"].startswith("train/part-")
    assert sum(f["rows"] for f in manifest["files"]) == 2500
    f = pq.ParquetFile(out / first["path"])
    assert schema.x_layout(f.schema_arrow) == ((1, 20, 20), "uint8")
    assert {"shape", "scale", "orientation", "pos_x", "pos_y"} <= set(f.schema_arrow.names)
    back = open_source(DataConfig(source=str(out)))
    assert back.layout == open_source(cfg).layout and back.has_labels
    assert split_ids(back) == split_ids(open_source(cfg))


def test_prepare_overwrite_replaces_and_failure_keeps_old(tmp_path):
    out = tmp_path / "out"
    prepare(DataConfig(source="digits"), out)
    with pytest.raises(UserError, match="not empty"):
        prepare(DataConfig(source="digits"), out)
    vals = np.ones((30, 2))
    vals[29, 1] = np.nan
    bad = write_parquet(float_table(vals), tmp_path / "in" / "nan.parquet")
    with pytest.raises(UserError, match="nan.parquet.*NaN or Inf"):
        prepare(DataConfig(source=str(bad)), out, overwrite=True)
    assert json.loads((out / MANIFEST).read_text())["source"] == "digits"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no staging left
    good = write_parquet(
        float_table(np.ones((30, 2)), ids=list(range(30))), tmp_path / "in" / "ok.pq"
    )
    prepare(DataConfig(source=str(good)), out, overwrite=True)
    assert json.loads((out / MANIFEST).read_text())["layout"]["dtype"] == "float32"


def test_prepare_rejects_duplicate_ids_across_files(tmp_path):
    for name in ("a", "b"):
        write_parquet(
            float_table(np.ones((3, 2)), ids=[1, 2, 3]), tmp_path / "in" / f"{name}.parquet"
        )
    with pytest.raises(UserError, match=r"a\.parquet and .*b\.parquet: duplicate id [123] "):
        prepare(DataConfig(source=str(tmp_path / "in")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_prepare_mnist_subset(mnist_dir, tmp_path, capsys):
    out = tmp_path / "mnist"
    code = cli_main(["prepare", str(mnist_dir), "--out", str(out), "--limit", "500"])
    assert code == 0, capsys.readouterr().err
    assert f"--data {out}" in capsys.readouterr().out
    back = open_source(DataConfig(source=str(out)))
    assert back.layout.shape == (1, 28, 28) and {len(v) for v in split_ids(back).values()} == {500}
