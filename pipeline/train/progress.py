"""Training progress fed by the workers: rank 0's hook → a small Ray actor → the driver.

Events (plain dicts, for a driver-side ``progress(event)`` callable):
    {"event": "batch", "epoch": E, "rows_done": n, "rows_total": N or None}
        within epoch E (1-based), at the epoch's first step and then at most every
        ``every_s`` seconds;
    {"event": "epoch", "epoch": E, "rows_done": n, "rows_total": n, **metrics}
        once the epoch is trained and validated (``train/loss``, ``val/neg_elbo``,
        ``samples_per_s``, ... as reported).
Rows are rank 0's training rows times the world size (DDP shards are equal). ``rows_total`` is
the driver's count when it made one, else the previous epoch's rows, else None (first epoch).

Rank 0 sends events fire-and-forget (``actor.put.remote``: no round trip in the training step;
Ray runs one caller's calls to an actor in order); the driver drains them every ``POLL_S``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.train.hooks import LoopView, TrainHook

Progress = Callable[[dict[str, Any]], None]
POLL_S = 0.5  # how often the driver drains the channel
EVERY_S = 1.0  # at most one in-epoch event per second per run


class _Mailbox:
    """The channel's actor: a list of events, drained by the driver."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def put(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def drain(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out


class ProgressChannel:
    """Driver side: owns the actor; ``hook()`` is the worker side to put in the config."""

    def __init__(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # No CPU reserved: it holds a few dicts, and every CPU here is sized for training/data.
        # On the driver's node: anywhere else the loss of that node would fail the driver's
        # next drain, where Ray Train restarts the workers and the job goes on.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.actor = ray.remote(num_cpus=0)(_Mailbox).options(scheduling_strategy=here).remote()

    def hook(self, every_s: float = EVERY_S) -> ProgressHook:
        return ProgressHook(self.actor, every_s)

    def relay(self, progress: Progress) -> None:
        """Hand every event that arrived since the last call to ``progress``, in order."""
        import ray

        for event in ray.get(self.actor.drain.remote()):
            progress(event)

    def close(self) -> None:
        import ray

        ray.kill(self.actor)


class ProgressHook(TrainHook):
    """Rank 0 puts progress events into the channel's actor."""

    def __init__(self, actor: Any, every_s: float = EVERY_S) -> None:
        self.actor = actor
        self.every_s = every_s
        self.last_sent = 0.0
        self.rows_total: int | None = None

    def setup(self, loop: LoopView) -> None:
        self.rows_total = loop.train_rows
        self.rows_done = 0  # this epoch's rows so far, all ranks

    def on_epoch_start(self, loop: LoopView, epoch: int) -> None:
        self.rows_done = 0

    def on_batch_end(self, loop: LoopView, epoch: int, rows: int) -> None:
        if loop.rank != 0:
            return
        self.rows_done = rows * loop.world_size
        now = time.monotonic()
        first_step = rows <= loop.job.train.batch_size
        if first_step or now - self.last_sent >= self.every_s:
            self._send("batch", epoch, self.rows_total, {})
            self.last_sent = now

    def on_epoch_end(
        self, loop: LoopView, epoch: int, metrics: Mapping[str, float]
    ) -> Mapping[str, float] | None:
        if loop.rank == 0:
            self._send("epoch", epoch, self.rows_done, dict(metrics))
            self.rows_total = self.rows_total or self.rows_done  # the next epochs' total
        return None

    def _send(self, kind: str, epoch: int, total: int | None, extra: dict[str, Any]) -> None:
        event = {**extra, "event": kind, "epoch": epoch + 1}
        event |= {"rows_done": self.rows_done, "rows_total": total}
        self.actor.put.remote(event)
