"""open_source + iter_torch_batches through a real local Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ingest_factories import float_table, write_parquet

from pipeline.config.data import DataConfig
from pipeline.config.job import load_job_config
from pipeline.data.batches import Preprocessor, compute_standardization, iter_torch_batches
from pipeline.data.ingest import open_source
from pipeline.errors import UserError
from pipeline.train.trainer import output_mean

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def quiet_ray_data(ray_local):
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    return ray_local


def all_ids(data, split: str) -> np.ndarray:
    pre = Preprocessor(data.layout)
    parts = [b.ids for b in iter_torch_batches(data.splits[split], 512, pre)]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def test_mnist_keeps_its_test_split_and_carves_val(mnist_dir):
    data = open_source(DataConfig(source=str(mnist_dir), val_fraction=0.1))
    val, test = all_ids(data, "val"), all_ids(data, "test")
    assert len(test) == 10_000 and (test >> 32 == 1).all()
    assert 5_500 < len(val) < 6_500 and (val >> 32 == 0).all()
    again = open_source(DataConfig(source=str(mnist_dir), val_fraction=0.1))
    assert np.array_equal(np.sort(val), np.sort(all_ids(again, "val")))


def test_digits_splits_are_disjoint_and_complete():
    data = open_source(DataConfig(source="digits", val_fraction=0.2, test_fraction=0.1))
    ids = {s: all_ids(data, s) for s in data.splits}
    together = np.concatenate(list(ids.values()))
    assert len(together) == 1797 and len(np.unique(together)) == 1797
    assert 250 < len(ids["val"]) < 470 and 110 < len(ids["test"]) < 260


def test_batches_from_a_train_shard_iterator_with_shuffle_and_dynamic_binarization():
    data = open_source(
        DataConfig(source="shapes", shapes_rows=3000, shapes_resolution=16, limit=1000)
    )
    shard = data.splits["train"].iterator()  # what ray.train.get_dataset_shard returns
    pre = Preprocessor(data.layout, binarize="dynamic")
    batches = list(iter_torch_batches(shard, 128, pre, shuffle_buffer=500, seed=1, drop_last=True))
    assert len(batches) == 1000 // 128
    b = batches[0]
    assert b.x.shape == (128, 1, 16, 16) and b.x.dtype == torch.float32
    assert set(b.x.unique().tolist()) <= {0.0, 1.0} and b.labels.max() <= 2
    assert not np.array_equal(b.ids, np.sort(b.ids))  # locally shuffled


def test_standardization_one_streaming_pass(tmp_path):
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(2000, 4))
    write_parquet(float_table(values), tmp_path / "f.parquet", row_group_size=300)
    data = open_source(
        DataConfig(source=str(tmp_path / "f.parquet"), val_fraction=0.0, test_fraction=0.0)
    )
    mean, std = compute_standardization(data.splits["train"], data.layout)
    assert np.allclose(mean, values.mean(0), atol=1e-5) and np.allclose(
        std, values.std(0), atol=1e-5
    )
    pre = Preprocessor(data.layout, mean=mean, std=std)
    x = torch.cat([b.x for b in iter_torch_batches(data.splits["train"], 500, pre)])
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2


def test_output_mean_is_the_training_splits_mean_in_model_input_space():
    cfg = load_job_config("digits", ["model.output_bias_init=data_mean"])
    data = open_source(cfg.data)
    pre = Preprocessor(data.layout, binarize="dynamic")
    x = torch.cat(
        [b.x for b in iter_torch_batches(data.splits["train"], 512, Preprocessor(data.layout))]
    )
    mean = output_mean(cfg, data, pre)
    assert len(mean) == 64
    np.testing.assert_allclose(mean, x.mean(0).flatten().numpy(), atol=1e-6)
    plain = load_job_config("digits", [])
    assert output_mean(plain, data, pre) is None


def test_nan_inside_a_ray_task_surfaces_as_one_line_user_error(tmp_path):
    vals = np.ones((50, 3))
    vals[40, 0] = np.inf
    f = write_parquet(float_table(vals), tmp_path / "bad.parquet")
    data = open_source(DataConfig(source=str(f), val_fraction=0.0, test_fraction=0.0))
    with pytest.raises(UserError) as info:
        list(iter_torch_batches(data.splits["train"], 16, Preprocessor(data.layout)))
    assert "bad.parquet" in str(info.value) and "NaN or Inf" in str(info.value)
    assert "\n" not in str(info.value)
