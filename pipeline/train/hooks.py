"""Worker-side training hooks: how code outside the loop joins it at fixed points.

``train_func`` (``pipeline.train.loop``) calls every hook of its ``WorkerConfig`` at the points
below, in order, on every rank; a hook decides itself which ranks act (MLflow logging and
progress: rank 0 only). Product code plugs in this way (MLflow epoch logging, in-epoch progress),
and so do tests (a worker that dies once) and benchmarks (epochs held at a gate), so the loop
carries no test or bench branches.

Hooks travel to the workers pickled inside the ``WorkerConfig``: keep them small, plain objects
(paths, ids, Ray actor handles); anything heavy is built in ``setup`` on the worker. A restarted
worker group unpickles fresh copies, so per-worker state starts again from ``setup``.

Why not Ray Train's own ``UserCallback``: it runs on the Train controller (not the driver, not
the workers), only after a ``ray.train.report`` of all ranks (once per epoch here), and cannot
hold or stop a worker; in-epoch progress, epoch gates and fault injection all need the worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import Tensor

    from pipeline.config.job import TrainJobConfig
    from pipeline.data.batches import Preprocessor
    from vae_core.model import VAE


class LoopView(Protocol):
    """What a hook may read of the rank it runs on (``pipeline.train.loop._Worker``)."""

    rank: int
    world_size: int
    job: TrainJobConfig
    vae: VAE  # the unwrapped model (not the DDP wrapper)
    preprocessor: Preprocessor
    examples: Tensor | None  # up to 8 fixed validation inputs, once the first epoch validated
    train_rows: int | None  # rows of the whole training split per epoch, when the driver knows

    @property
    def epochs_done(self) -> int: ...

    @property
    def epoch_metrics(self) -> Sequence[Mapping[str, float]]:
        """Each completed epoch's metrics as computed, those of a restored checkpoint included
        (its ``epoch`` entry is the epoch's number, from 1)."""
        ...


class TrainHook:
    """No-op base: override the points you need. ``epoch`` is 0-based (the one being run)."""

    def setup(self, loop: LoopView) -> None:
        """Once per worker start (also after a restart), after the checkpoint is restored."""

    def on_epoch_start(self, loop: LoopView, epoch: int) -> None:
        """Before the epoch's first batch."""

    def on_batch_end(self, loop: LoopView, epoch: int, rows: int) -> None:
        """After each training step; ``rows``: this rank's training rows so far this epoch."""

    def on_epoch_end(
        self, loop: LoopView, epoch: int, metrics: Mapping[str, float]
    ) -> Mapping[str, float] | None:
        """The epoch trained and validated (metrics identical on every rank), before it is
        checkpointed and reported; returned entries join the reported metrics."""
        return None

    def after_checkpoint(self, loop: LoopView, epoch: int) -> None:
        """The epoch is checkpointed and reported: a restart resumes after it."""

    def before_test(self, loop: LoopView) -> None:
        """After the last epoch, before the best model's test pass."""

    def after_test(self, loop: LoopView, metrics: Mapping[str, float]) -> None:
        """The test metrics (identical on every rank)."""

    def teardown(self, loop: LoopView) -> None:
        """Always last, also when the loop fails: release what ``setup`` took."""


class Hooks(TrainHook):
    """Several hooks called in order as one."""

    def __init__(self, hooks: Sequence[TrainHook]) -> None:
        self.hooks = tuple(hooks)

    def setup(self, loop: LoopView) -> None:
        for hook in self.hooks:
            hook.setup(loop)

    def on_epoch_start(self, loop: LoopView, epoch: int) -> None:
        for hook in self.hooks:
            hook.on_epoch_start(loop, epoch)

    def on_batch_end(self, loop: LoopView, epoch: int, rows: int) -> None:
        for hook in self.hooks:
            hook.on_batch_end(loop, epoch, rows)

    def on_epoch_end(
        self, loop: LoopView, epoch: int, metrics: Mapping[str, float]
    ) -> dict[str, float]:
        """Every hook sees the metrics with the entries added by the hooks before it."""
        out = dict(metrics)
        for hook in self.hooks:
            out.update(hook.on_epoch_end(loop, epoch, out) or {})
        return out

    def after_checkpoint(self, loop: LoopView, epoch: int) -> None:
        for hook in self.hooks:
            hook.after_checkpoint(loop, epoch)

    def before_test(self, loop: LoopView) -> None:
        for hook in self.hooks:
            hook.before_test(loop)

    def after_test(self, loop: LoopView, metrics: Mapping[str, float]) -> None:
        for hook in self.hooks:
            hook.after_test(loop, metrics)

    def teardown(self, loop: LoopView) -> None:
        """Every hook's teardown runs, even when an earlier one fails."""
        errors = []
        for hook in self.hooks:
            try:
                hook.teardown(loop)
            except Exception as exc:  # re-raised below, after the others released theirs
                errors.append(exc)
        if errors:
            raise errors[0]
