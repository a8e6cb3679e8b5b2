"""EpochGate: a worker holds at each epoch until the controller opens it (bench/train.py)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # as bench/train.py sees it
from epoch_gate import EpochGate  # noqa: E402


def _worker(gate: EpochGate, epochs: int, trained: list[int]) -> None:
    for epoch in range(epochs):
        gate.wait(epoch)
        trained.append(epoch)
        gate.mark_done(epoch)
    gate.wait(epochs)  # the final test pass


def test_worker_trains_only_the_epochs_opened(tmp_path):
    gate, trained = EpochGate(str(tmp_path / "gate")), []
    worker = threading.Thread(target=_worker, args=(gate, 3, trained), daemon=True)
    worker.start()
    assert gate.run_epoch(0, worker.is_alive) >= 0.0
    assert trained == [0]  # epoch 1 is not open: the worker is held
    gate.run_epoch(1, worker.is_alive)
    gate.run_epoch(2, worker.is_alive)
    assert trained == [0, 1, 2] and worker.is_alive()  # held before its test pass
    gate.open(3)
    worker.join(timeout=10)
    assert not worker.is_alive()


def test_a_run_that_ends_early_is_an_error_not_a_hang(tmp_path):
    gate = EpochGate(str(tmp_path / "gate"))
    with pytest.raises(RuntimeError, match="before finishing epoch 0"):
        gate.run_epoch(0, alive=lambda: False)
