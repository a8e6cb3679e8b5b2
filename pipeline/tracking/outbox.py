"""``Outbox``: MLflow writes sent in order by a background thread, so an outage of the tracking
server delays them instead of failing the job.

Rank 0 logs every epoch. Sent synchronously, an outage of a few minutes used to fail training
(MLflow's own HTTP retries back off for about 4 minutes, then raise). Here the training thread
queues each write and goes on; one sender thread sends them oldest first, and on a failure that
looks like an outage (no connection, a timeout, a 5xx or 429 answer) it keeps the write and tries
it again every ``retry_every_s``, so once the server is back every write arrives, in order. A write
the server *refuses* (a 4xx: a bad value, a deleted run, no permission) is never retried: it fails
the next ``put`` or ``close`` on the training thread, as a synchronous call would have.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RETRY_EVERY_S = 2.0
DRAIN_TIMEOUT_S = 600.0  # ``close`` waits this long for an unreachable server, then gives up


class TrackingUnavailable(RuntimeError):
    """The tracking server stayed unreachable past the drain timeout; writes were lost."""


def is_outage(exc: BaseException) -> bool:
    """True for failures a later retry can cure: a refused connection or timeout (``OSError``,
    which ``requests``' errors are), or an MLflow error that maps to HTTP 5xx or 429."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return status >= 500 or status == 429
    return isinstance(exc, OSError)


class Outbox:
    def __init__(
        self,
        target: str,
        retry_every_s: float = RETRY_EVERY_S,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> None:
        self.target = target  # named in messages: the tracking URI
        self.retry_every_s = retry_every_s
        self.drain_timeout_s = drain_timeout_s
        self._pending: collections.deque[Callable[[], None]] = collections.deque()
        self._changed = threading.Condition()
        self._closing = False
        self._refused: BaseException | None = None
        self._stopped = threading.Event()  # set when closing gives up on the server
        self._sender = threading.Thread(target=self._send_all, name="mlflow-outbox", daemon=True)
        self._sender.start()

    def put(self, write: Callable[[], None]) -> None:
        """Queue ``write`` (a call that sends one thing to MLflow); raises a refusal seen since."""
        self._raise_refused()
        with self._changed:
            self._pending.append(write)
            self._changed.notify()

    def pending(self) -> int:
        with self._changed:
            return len(self._pending)

    def close(self) -> None:
        """Wait until every queued write is sent (at most ``drain_timeout_s``)."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._sender.join(timeout=self.drain_timeout_s)
        if self._sender.is_alive():
            self._stopped.set()
            raise TrackingUnavailable(
                f"MLflow at {self.target} did not answer for {self.drain_timeout_s:.0f} s: "
                f"{self.pending()} queued writes (metrics or images) were not logged"
            )
        self._raise_refused()

    def _raise_refused(self) -> None:
        if self._refused is not None:
            raise self._refused

    def _next(self) -> Callable[[], None] | None:
        with self._changed:
            while not self._pending and not self._closing:
                self._changed.wait()
            return self._pending[0] if self._pending else None

    def _send_all(self) -> None:
        outage_since: float | None = None
        while (write := self._next()) is not None:
            try:
                write()
            except Exception as exc:  # noqa: BLE001 - sorted into outage or refusal below
                if not is_outage(exc):
                    self._refused = exc
                    return
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning("MLflow at %s unreachable; buffering writes: %s", self.target, exc)
                if self._stopped.wait(self.retry_every_s):
                    return
                continue
            if outage_since is not None:
                log.warning(
                    "MLflow at %s back after %.0f s; sending %d buffered writes",
                    self.target,
                    time.monotonic() - outage_since,
                    self.pending(),
                )
                outage_since = None
            with self._changed:
                self._pending.popleft()
