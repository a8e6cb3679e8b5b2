"""The hang watchdog of the training loop, without Ray: it ends a worker that stops beating."""

from __future__ import annotations

import threading

from pipeline.train.watchdog import EXIT_CODE, Watchdog


def test_silence_past_the_timeout_ends_the_worker_with_one_line(caplog):
    ended: list[int] = []
    fired = threading.Event()
    watchdog = Watchdog(0.2, rank=3, exit=lambda code: (ended.append(code), fired.set()))
    watchdog.start()
    assert fired.wait(30)
    assert ended == [EXIT_CODE]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("rank 3 made no training progress for ")
    assert "(train.hang_timeout_s=0.2): ending its process" in line


def test_stop_ends_the_watch_at_once():
    ended: list[int] = []
    watchdog = Watchdog(60.0, rank=0, exit=ended.append).start()
    watchdog.stop()
    watchdog._thread.join(30)
    assert not watchdog._thread.is_alive()
    assert ended == []
