"""Tabular Parquet (one column per feature) and the source digest, planned and read without Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.lineage import source_digest
from pipeline.data.schema import decode_x
from pipeline.data.sources import plan_source
from pipeline.errors import UserError


def breast_cancer_parquet(path) -> tuple:
    """scikit-learn's breast-cancer table as people store it: 30 float columns, id, label."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    cols = {"id": np.arange(len(data.target)), "label": data.target.astype(np.int64)}
    cols |= {n: data.data[:, j] for j, n in enumerate(names)}
    cols["hospital"] = ["a"] * len(data.target)  # a non-numeric column passes through
    pq.write_table(pa.table(cols), path, row_group_size=200)
    return names, data.data.astype(np.float32)


def _read_all(cfg: DataConfig) -> tuple:
    plan = plan_source(cfg)
    tables = [plan.read(u) for u in plan.units["train"]]
    return plan, pa.concat_tables(tables)


def test_feature_columns_become_float32_samples(tmp_path):
    names, values = breast_cancer_parquet(tmp_path / "bc.parquet")
    with pytest.raises(UserError, match="list feature columns with columns"):
        plan_source(DataConfig(source=str(tmp_path / "bc.parquet")))
    for picked in ({"columns": names}, {"numeric_columns": True}):
        plan, table = _read_all(DataConfig(source=str(tmp_path / "bc.parquet"), **picked))
        assert plan.layout.shape == (30,) and plan.layout.dtype == "float32"
        assert plan.has_labels and plan.rows == 569
        assert np.array_equal(decode_x(table.column(schema.X), plan.layout), values)
        assert table.column("hospital").to_pylist()[:1] == ["a"]
        assert "mean_radius" not in table.column_names  # features live in x only
    picked = names[:3][::-1]
    plan, table = _read_all(DataConfig(source=str(tmp_path / "bc.parquet"), columns=picked))
    assert np.array_equal(decode_x(table.column(schema.X), plan.layout), values[:, [2, 1, 0]])


def test_feature_column_problems_are_one_line_errors(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, None], "b": ["x", "y"], "c": [1.0, np.nan]}), path)
    cases = {
        ("zz",): "no column 'zz'",
        ("b",): "feature column 'b' has type string",
        ("a",): "null values in column 'a'",
        ("c",): "NaN or Inf values in column 'c'",
    }
    for columns, message in cases.items():
        with pytest.raises(UserError, match=message):
            _read_all(DataConfig(source=str(path), columns=columns))
    with pytest.raises(ValueError, match="data.columns=.*excludes data.column"):
        DataConfig(source="x", column="a", columns=("b",))
    with pytest.raises(ValueError, match="data.numeric_columns=.*excludes data.columns"):
        DataConfig(source="x", columns=("b",), numeric_columns=True)
    with pytest.raises(ValueError, match="names a column twice"):
        DataConfig(source="x", columns=("b", "b"))
    with pytest.raises(ValueError, match="data.columns="):
        DataConfig.from_dict({"columns": "a"})
    assert DataConfig.from_dict({"columns": ["a", "b"]}).columns == ("a", "b")


def test_digest_names_the_data_not_the_split(tmp_path):
    breast_cancer_parquet(tmp_path / "bc.parquet")
    cfg = DataConfig(source=str(tmp_path / "bc.parquet"), numeric_columns=True)
    digest = source_digest(cfg, plan_source(cfg))
    same = DataConfig(source=cfg.source, numeric_columns=True, val_fraction=0.0, test_fraction=0.0)
    assert source_digest(same, plan_source(same)) == digest  # encode reads the same data
    other = DataConfig(source=cfg.source, columns=("mean_radius",))
    assert source_digest(other, plan_source(other)) != digest
    pq.write_table(pq.read_table(tmp_path / "bc.parquet").slice(1), tmp_path / "bc.parquet")
    assert source_digest(cfg, plan_source(cfg)) != digest  # the file changed
