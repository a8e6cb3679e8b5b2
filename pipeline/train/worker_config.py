"""``WorkerConfig``: everything the driver hands each Ray Train worker, typed and frozen.

Built by ``pipeline.train.trainer`` and passed as ``train_loop_config`` to ``train_func``
(``pipeline.train.loop``); it travels to the workers pickled, so every field is a plain value,
a frozen config object or a small picklable hook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.config.job import TrainJobConfig
from pipeline.data.batches import Preprocessor
from pipeline.data.train_order import TrainOrder
from pipeline.train.hooks import TrainHook


@dataclass(frozen=True)
class WorkerConfig:
    job: TrainJobConfig
    """The job, with ``model.input_shape`` filled in from the data."""
    preprocessor: Preprocessor
    """Stored sample -> model input (scaling, binarization, standardization)."""
    storage_path: str
    """Ray Train's storage root (local path or URI), for the checkpoint fallback scan."""
    run_dir: str
    """This run's checkpoint folder under ``storage_path`` (pyarrow filesystem path)."""
    total_steps: int
    """Optimizer steps of the whole run (for the LR schedule); >= 1."""
    threads: int | None = None
    """Torch threads per worker; None: the node's cores / the workers on it."""
    train_rows: int | None = None
    """Rows of the training split per epoch, when the driver counted them (progress totals)."""
    hooks: tuple[TrainHook, ...] = ()
    """Called in order at the loop's fixed points (``pipeline.train.hooks``)."""
    train_order: TrainOrder | None = None
    """Each epoch's training rows: hot and reshuffled, or streamed in a per-epoch unit order;
    None: the shard as Ray gives it."""
    output_mean: tuple[float, ...] | None = None
    """The training split's per-feature mean (model-input space, flattened) when
    ``model.output_bias_init`` is "data_mean": computed once on the driver, so every rank
    starts from the same decoder bias."""

    def __post_init__(self) -> None:
        if not isinstance(self.job, TrainJobConfig):
            raise TypeError(f"WorkerConfig.job must be a TrainJobConfig, got {type(self.job)}")
        if not isinstance(self.preprocessor, Preprocessor):
            raise TypeError("WorkerConfig.preprocessor must be a Preprocessor")
        if not isinstance(self.total_steps, int) or self.total_steps < 1:
            raise ValueError(f"WorkerConfig.total_steps must be >= 1, got {self.total_steps}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"WorkerConfig.threads must be >= 1 or None, got {self.threads}")
        if self.train_rows is not None and self.train_rows < 0:
            raise ValueError(f"WorkerConfig.train_rows must be >= 0 or None, got {self.train_rows}")
        self._check_output_mean()
        object.__setattr__(self, "hooks", tuple(self.hooks))
        bad = [h for h in self.hooks if not isinstance(h, TrainHook)]
        if bad:
            raise TypeError(f"WorkerConfig.hooks must be TrainHook instances, got {bad}")

    def _check_output_mean(self) -> None:
        model = self.job.model
        if model.output_bias_init != "data_mean":
            return
        numel = math.prod(model.input_shape)
        if self.output_mean is None or len(self.output_mean) != numel:
            got = None if self.output_mean is None else len(self.output_mean)
            raise ValueError(
                f"WorkerConfig.output_mean must hold {numel} values for output_bias_init "
                f"'data_mean', got {got}"
            )
