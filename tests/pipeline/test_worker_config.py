"""The driver -> worker contract: a typed, frozen ``WorkerConfig`` and the hooks it carries."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from pipeline.config.job import load_job_config
from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.train.hooks import Hooks, TrainHook
from pipeline.train.worker_config import WorkerConfig


class Adds(TrainHook):
    """Adds ``key`` = the number of metrics it was shown; records teardown."""

    def __init__(self, key: str, fail_teardown: bool = False) -> None:
        self.key, self.fail_teardown, self.torn_down = key, fail_teardown, False

    def on_epoch_end(self, loop, epoch, metrics):
        return {self.key: float(len(metrics))}

    def teardown(self, loop):
        self.torn_down = True
        if self.fail_teardown:
            raise RuntimeError(f"{self.key} failed")


def _config(**changes) -> WorkerConfig:
    base = dict(
        job=load_job_config("digits", []),
        preprocessor=Preprocessor(layout=XLayout((1, 8, 8), "uint8")),
        storage_path="/tmp/ray_results",
        run_dir="/tmp/ray_results/run",
        total_steps=10,
    )
    return WorkerConfig(**(base | changes))


def test_worker_config_is_typed_frozen_and_picklable():
    cfg = _config(hooks=[Adds("a")], train_rows=1437)
    assert isinstance(cfg.hooks, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.total_steps = 3
    back = pickle.loads(pickle.dumps(cfg))
    assert back.job == cfg.job and back.train_rows == 1437 and back.hooks[0].key == "a"


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"job": {"train": {"epochs": 1}}}, "must be a TrainJobConfig"),
        ({"preprocessor": {"binarize": "none"}}, "must be a Preprocessor"),
        ({"total_steps": 0}, "total_steps must be >= 1"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"hooks": [lambda: None]}, "must be TrainHook instances"),
    ],
)
def test_worker_config_refuses_what_the_workers_cannot_use(changes, match):
    with pytest.raises((TypeError, ValueError), match=match):
        _config(**changes)


def test_hooks_see_earlier_hooks_entries_and_all_tear_down():
    first, second = Adds("first", fail_teardown=True), Adds("second")
    hooks = Hooks([first, second])
    out = hooks.on_epoch_end(None, 0, {"train/loss": 1.0})
    assert out == {"train/loss": 1.0, "first": 1.0, "second": 2.0}
    with pytest.raises(RuntimeError, match="first failed"):
        hooks.teardown(None)
    assert first.torn_down and second.torn_down  # the failure did not skip the second


def test_a_hot_training_split_is_no_ray_train_dataset():
    from types import SimpleNamespace

    from pipeline.data.hot_split import HotSplit
    from pipeline.data.train_order import TrainOrder
    from pipeline.train.trainer import streamed_splits

    source = SimpleNamespace(splits={"train": "T", "val": "V", "test": "S"})
    hot = TrainOrder(seed=0, hot=HotSplit([], 0, XLayout((1, 8, 8), "uint8")))
    # The workers gather a hot split from the object store; a shard would start an idle process.
    assert streamed_splits(source, _config(train_order=hot)) == {"val": "V", "test": "S"}
    assert streamed_splits(source, _config(train_order=TrainOrder(seed=0))) == source.splits
    assert streamed_splits(source, _config()) == source.splits


def test_a_data_mean_bias_needs_the_mean_of_every_feature():
    job = load_job_config(
        "digits", ["model.input_shape=[1,8,8]", "model.output_bias_init=data_mean"]
    )
    with pytest.raises(ValueError, match="output_mean must hold 64 values.*got None"):
        _config(job=job)
    with pytest.raises(ValueError, match="got 3"):
        _config(job=job, output_mean=(0.1, 0.2, 0.3))
    assert _config(job=job, output_mean=(0.5,) * 64).output_mean == (0.5,) * 64
