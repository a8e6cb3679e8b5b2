"""A label-sorted training set shuffles on real Ray (streamed and hot), and a tabular training run
records its inputs with MLflow's dataset tracking (streamed through Ray Train). One Ray for the
module; tiny data."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_tabular import breast_cancer_parquet

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.batches import Preprocessor, iter_torch_batches
from pipeline.data.schema import encode_x
from pipeline.data.train_order import open_training_source

pytestmark = pytest.mark.ray


def _label_sorted(path, n: int = 6000) -> str:
    """n rows of 8x8 pixels sorted by label (10 classes), 150-row row groups."""
    labels = np.arange(n) * 10 // n
    x = np.random.default_rng(0).integers(0, 256, (n, 1, 8, 8), np.uint8)
    table = pa.table({schema.ID: np.arange(n), schema.X: encode_x(x), schema.LABEL: labels})
    meta = {schema.META_X_SHAPE: b"[1, 8, 8]", schema.META_X_DTYPE: b"uint8"}
    pq.write_table(table.replace_schema_metadata(meta), path, row_group_size=150)
    return str(path)


def _epoch_labels(source, order, epoch: int) -> list[list[int]]:
    data = order.epoch_data(source.splits["train"], epoch)
    pre = Preprocessor(source.layout)
    batches = iter_torch_batches(data, 128, pre, shuffle_buffer=1, seed=epoch, drop_last=True)
    return [b.labels.tolist() for b in batches]


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_label_sorted_training_set_shuffles(ray_local, tmp_path, share):
    src = _label_sorted(tmp_path / "sorted.parquet")
    cfg = DataConfig(source=src, cache_share=share, val_fraction=0.1, test_fraction=0.1)
    source, order = open_training_source(cfg, seed=3)
    assert order.mode == ("hot" if share else "streaming")
    first, second = _epoch_labels(source, order, 0), _epoch_labels(source, order, 1)
    spans = [len(set(b)) for b in first]
    # Sorted, a batch holds 1-2 labels; a whole-set shuffle nearly all 10, the streamed window
    # (8 random row groups per read task, then the fetch permutation) most of them.
    assert np.median(spans) >= (9 if share else 6) and min(spans) >= 4
    assert first != second  # a fresh order every epoch
    assert _epoch_labels(source, order, 1) == second or not share  # hot: reproducible exactly


def test_tabular_run_records_its_datasets(ray_local, tmp_path):
    from mlflow import MlflowClient

    from pipeline.config.job import load_job_config
    from pipeline.inference.encode import encode_dataset
    from pipeline.tracking.datasets import logged_rows
    from pipeline.tracking.registry import load_vae
    from pipeline.train.trainer import run_training

    src = tmp_path / "bc.parquet"
    breast_cancer_parquet(src)
    cfg = load_job_config(
        "digits",
        [
            f"data.source={src}",
            "data.numeric_columns=true",
            "data.cache_share=0",  # streamed: the per-epoch unit order inside Ray Train
            "data.binarize=none",
            "data.standardize=true",
            "model.likelihood=gaussian",
            "model.hidden_sizes=[16]",
            "model.latent_dim=2",
            "train.epochs=1",
            "train.nll_samples=0",
            "train.log_images=false",
            f"tracking.storage_path={tmp_path / 'ray_results'}",
            "tracking.model_name=bc",
        ],
    )
    result = run_training(cfg)
    inputs = logged_rows(result.run_id)
    digests = {d for d, _ in inputs.values()}
    rows = {name.rsplit("-", 1)[1]: n for name, (_, n) in inputs.items()}
    assert len(digests) == 1 and sum(rows.values()) == 569 and min(rows.values()) > 0
    contexts = {
        i.tags[0].value for i in MlflowClient().get_run(result.run_id).inputs.dataset_inputs
    }
    assert contexts == {"training", "validation", "testing"}
    loaded = load_vae(f"models:/bc/{result.version}")
    assert loaded.data_digest in digests and len(loaded.preprocessor["mean"]) == 30

    out = tmp_path / "latents"
    encode_dataset(f"models:/bc/{result.version}", str(src), out)  # the model's columns
    meta = pq.read_schema(next(out.glob("*.parquet"))).metadata
    assert meta[schema.META_TRAIN_DIGEST].decode() in digests
    assert meta[schema.META_DATA_DIGEST] == meta[schema.META_TRAIN_DIGEST]
    assert json.loads(meta[schema.META_MODEL])["version"] == result.version
