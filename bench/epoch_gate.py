"""Epoch gate: hold training runs at epoch boundaries so a benchmark can pair their epochs.

On a shared 2-core VM the same loop's speed swings by ±20% over tens of seconds, so two runs
measured one after the other compare the machine's moods, not the runs. ``bench/train.py``
instead lets runs take turns epoch by epoch: a worker waits at ``go-<epoch>`` before each epoch
(and before its final test pass, ``go-<epochs>``), and rank 0 writes ``done-<epoch>`` once the
epoch is trained, validated, logged, checkpointed and reported. Files, not sleeps or actors:
the gate works across processes and nodes that share the directory.

The worker side is a training hook (``pipeline.train.hooks``): ``run_training(cfg,
hooks=[EpochGate(dir)])``. ``bench/train.py`` imports this file as a script's neighbour, a module
the Ray workers cannot import, so it registers it to be pickled by value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.train.hooks import LoopView, TrainHook

POLL_S = 0.005


@dataclass(frozen=True)
class EpochGate(TrainHook):
    directory: str

    def _go(self, epoch: int) -> Path:
        return Path(self.directory) / f"go-{epoch}"

    def _done(self, epoch: int) -> Path:
        return Path(self.directory) / f"done-{epoch}"

    # worker side

    def wait(self, epoch: int) -> None:
        """Block until the controller opens ``epoch``."""
        while not self._go(epoch).exists():
            time.sleep(POLL_S)

    def mark_done(self, epoch: int) -> None:
        self._done(epoch).touch()

    # ... as a training hook

    def on_epoch_start(self, loop: LoopView, epoch: int) -> None:
        self.wait(epoch)

    def after_checkpoint(self, loop: LoopView, epoch: int) -> None:
        if loop.rank == 0:
            self.mark_done(epoch)

    def before_test(self, loop: LoopView) -> None:
        self.wait(loop.job.train.epochs)

    # controller side

    def open(self, epoch: int) -> None:
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        self._go(epoch).touch()

    def run_epoch(self, epoch: int, alive: Callable[[], bool]) -> float:
        """Open ``epoch`` and wait until it is done; its wall seconds (train, validate, log,
        report). ``alive()`` turning False first (the run ended) is an error, not a hang."""
        start = time.perf_counter()
        self.open(epoch)
        while not self._done(epoch).exists():
            if not alive() and not self._done(epoch).exists():
                raise RuntimeError(f"the gated run ended before finishing epoch {epoch}")
            time.sleep(POLL_S)
        return time.perf_counter() - start
