"""``Watchdog``: a training worker that stops making progress ends its own process.

A hung rank (a deadlock, a data read that never returns, a wedged device) is alive, so Ray
Train sees nothing wrong. With 2+ workers its peers notice through the collective timeouts
(``pipeline.train.trainer``), but a single worker waits on nobody, and a rank stuck outside a
collective holds the others only until then. So every rank runs this thread: when the loop has
reported no progress for ``train.hang_timeout_s`` it logs one line and ends the process with
``os._exit`` — the one way out of a thread blocked in native code — and Ray Train restarts the
worker group from the last checkpoint, as for any dead worker (it counts against
``train.max_failures``).

Progress is anything the loop gets done: a batch arriving or its step finishing (training,
validation, test and IS-NLL batches alike), a data shard opened, a checkpoint written and
reported. The longest legitimate pause — the first batch of a split on a busy cluster, a
checkpoint upload, one test batch's IS-NLL — must fit in the timeout (minutes by default).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_CODE = 75  # what a hung worker's process ends with (EX_TEMPFAIL: retrying may work)


class Watchdog:
    """Call :meth:`beat` on progress; after ``timeout_s`` without one, ``exit(EXIT_CODE)``."""

    def __init__(
        self, timeout_s: float, rank: int, exit: Callable[[int], object] = os._exit
    ) -> None:
        self.timeout_s = timeout_s
        self.rank = rank
        self._exit = exit
        self._last = time.monotonic()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self._last = time.monotonic()  # one float store: no lock needed

    def start(self) -> Watchdog:
        self.beat()
        self._thread = threading.Thread(target=self._watch, name="vaepipe-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        # Checking a few times per timeout bounds the detection at ~1.25 x the timeout.
        interval = min(5.0, self.timeout_s / 4)
        while not self._stopped.wait(interval):
            idle = time.monotonic() - self._last
            if idle >= self.timeout_s:
                log.error(
                    "rank %d made no training progress for %.0f s (train.hang_timeout_s=%g): "
                    "ending its process so Ray Train restarts the worker group",
                    self.rank, idle, self.timeout_s,
                )  # fmt: skip
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                self._exit(EXIT_CODE)
                return
