"""Worker faults for the reliability tier, injected through training hooks and marker files.

Each hook acts at a fixed point of the loop (``pipeline.train.hooks``), never after a delay,
and leaves a file behind saying when it fired (``time.time()``, comparable across processes on
one host), so a test can tell that the fault happened and measure what followed it.

Tests import this file by its bare name, which Ray workers cannot import: ``by_value()`` has Ray
pickle it by value instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.train.hooks import LoopView, TrainHook


def by_value() -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _stamp(path: Path, what: str) -> None:
    path.write_text(f"{time.time()!r} {what}\n")


def stamped_at(path: Path) -> float:
    """When the fault recorded in ``path`` fired (``time.time()``)."""
    return float(path.read_text().split()[0])


@dataclass(frozen=True)
class SigkillOnce(TrainHook):
    """Rank ``rank`` SIGKILLs its own process once, at the end of epoch ``epoch`` (0-based),
    once that epoch's metrics are in MLflow at ``tracking_uri`` (rank 0 logs them through a
    background sender: the hook waits for the observed state) and before the epoch is
    checkpointed: the restart redoes an epoch the run already has. ``marker`` records it, so it
    fires once."""

    marker: str
    rank: int
    epoch: int
    tracking_uri: str

    def on_epoch_end(self, loop: LoopView, epoch: int, metrics) -> None:
        marker = Path(self.marker)
        if loop.rank == self.rank and epoch == self.epoch and not marker.exists():
            _wait_epoch_logged(self.tracking_uri, loop.job.tracking, epoch + 1)
            _stamp(marker, f"SIGKILL rank {loop.rank} at the end of epoch {epoch + 1}")
            os.kill(os.getpid(), signal.SIGKILL)


def _wait_epoch_logged(uri: str, tracking, step: int, timeout_s: float = 120.0) -> None:
    """Until the run named ``tracking.run_name`` has its ``epoch`` metric at ``step``."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name(tracking.experiment)
        found = client.search_runs(
            [exp.experiment_id], f"attributes.run_name = '{tracking.run_name}'"
        )
        if found and step in {
            m.step for m in client.get_metric_history(found[0].info.run_id, "epoch")
        }:
            return
        time.sleep(0.1)  # polling observed state, not timing the fault
    raise RuntimeError(f"epoch {step} of {tracking.run_name} not in MLflow after {timeout_s} s")


@dataclass(frozen=True)
class SigkillEveryAttempt(TrainHook):
    """Rank ``rank`` SIGKILLs its own process at the start of every attempt's first epoch;
    each kill leaves ``kill-<n>`` in ``folder`` (n from 1)."""

    folder: str
    rank: int

    def on_epoch_start(self, loop: LoopView, epoch: int) -> None:
        if loop.rank != self.rank:
            return
        n = len(list(Path(self.folder).glob("kill-*"))) + 1
        _stamp(Path(self.folder) / f"kill-{n}", f"SIGKILL rank {loop.rank}, attempt {n}")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class HangOnce(TrainHook):
    """Rank ``rank`` stops making progress once, after the first step of epoch ``epoch``
    (0-based): it waits on an event nobody sets, alive but stuck, as a deadlocked worker is.
    Files record when: ``marker`` the hang (so the restarted worker goes on), ``resumed`` the
    restarted group's setup."""

    marker: str
    resumed: str
    rank: int
    epoch: int

    def setup(self, loop: LoopView) -> None:
        resumed = Path(self.resumed)
        if loop.rank == self.rank and Path(self.marker).exists() and not resumed.exists():
            _stamp(resumed, f"rank {loop.rank} set up again after the hang")

    def on_batch_end(self, loop: LoopView, epoch: int, rows: int) -> None:
        marker = Path(self.marker)
        if loop.rank == self.rank and epoch == self.epoch and not marker.exists():
            _stamp(marker, f"rank {loop.rank} hangs in epoch {epoch + 1}")
            threading.Event().wait()


@dataclass(frozen=True)
class HoldAfterCheckpoint(TrainHook):
    """Rank 0 stops for good once epoch ``epoch`` (0-based) is checkpointed and in MLflow at
    ``tracking_uri``, leaving ``marker``: the moment a test kills the driver, with a known last
    checkpoint and nothing in flight."""

    marker: str
    epoch: int
    tracking_uri: str

    def after_checkpoint(self, loop: LoopView, epoch: int) -> None:
        if loop.rank == 0 and epoch == self.epoch:
            _wait_epoch_logged(self.tracking_uri, loop.job.tracking, epoch + 1)
            _stamp(Path(self.marker), f"rank 0 held after checkpointing epoch {epoch + 1}")
            threading.Event().wait()


@dataclass(frozen=True)
class BreakCheckpointsAndDie(TrainHook):
    """Rank 0, once the epochs named in ``breaks`` (0-based epoch → how) are checkpointed and in
    MLflow at ``tracking_uri``, breaks checkpoints in ``run_dir`` and SIGKILLs its process, once
    per epoch (a ``broke-<epoch>`` file in ``folder`` records it). How, comma-separated steps
    each on the checkpoints left by the one before: ``delete`` the newest checkpoint folder,
    ``flip`` a byte in the middle of the newest ``state.pt``, ``truncate`` every ``state.pt``.
    Every worker start appends the epochs it resumed after to ``folder/starts``."""

    folder: str
    run_dir: str
    breaks: tuple[tuple[int, str], ...]
    tracking_uri: str

    def setup(self, loop: LoopView) -> None:
        if loop.rank == 0:
            with open(Path(self.folder) / "starts", "a") as f:
                f.write(f"{loop.epochs_done}\n")

    def after_checkpoint(self, loop: LoopView, epoch: int) -> None:
        how = dict(self.breaks).get(epoch)
        marker = Path(self.folder) / f"broke-{epoch}"
        if loop.rank != 0 or how is None or marker.exists():
            return
        _wait_epoch_logged(self.tracking_uri, loop.job.tracking, epoch + 1)
        done = [_break_checkpoints(Path(self.run_dir), step) for step in how.split(",")]
        _stamp(marker, f"{'; '.join(done)}; SIGKILL rank 0 after epoch {epoch + 1}")
        os.kill(os.getpid(), signal.SIGKILL)


def _break_checkpoints(run_dir: Path, how: str) -> str:
    """One step of ``BreakCheckpointsAndDie``; what it did, in words."""
    newest, *_ = sorted(run_dir.glob("epoch_*"), reverse=True)
    if how == "delete":
        shutil.rmtree(newest)
        return f"deleted {newest.name}"
    if how == "flip":
        state = newest / "state.pt"
        data = bytearray(state.read_bytes())
        data[len(data) // 2] ^= 0xFF
        state.write_bytes(bytes(data))
        return f"flipped a byte of {newest.name}/state.pt"
    assert how == "truncate", how
    for state in run_dir.glob("epoch_*/state.pt"):
        state.write_bytes(state.read_bytes()[:100])
    return "truncated every state.pt"


@dataclass(frozen=True)
class ParkOnNode(TrainHook):
    """The rank running on Ray node ``node_id`` stops, once, after epoch ``epoch`` (0-based) is
    checkpointed: it writes ``marker`` and waits on an event nobody sets, so the test kills
    that node at a known point (the run has a checkpoint to resume from) and the job cannot
    finish before it does."""

    marker: str
    node_id: str
    epoch: int

    def after_checkpoint(self, loop: LoopView, epoch: int) -> None:
        import ray

        marker = Path(self.marker)
        here = ray.get_runtime_context().get_node_id()
        if epoch == self.epoch and here == self.node_id and not marker.exists():
            _stamp(marker, f"rank {loop.rank} parked on node {here} after epoch {epoch + 1}")
            threading.Event().wait()


@dataclass(frozen=True)
class ExitOnce:
    """An encode ``batch_hook`` (``pipeline.inference.latent_encoder``): the actor process that
    gets the batch holding id ``row_id`` exits at once (``os._exit``: no cleanup, as an OOM kill
    or a crash), the first time only; ``marker`` records it."""

    marker: str
    row_id: int

    def __call__(self, table) -> None:
        marker = Path(self.marker)
        if self.row_id in table.column("id").to_pylist() and not marker.exists():
            _stamp(marker, f"worker {os.getpid()} exits on the batch holding id {self.row_id}")
            os._exit(1)
