"""The MLflow outbox: writes never block the caller, survive an outage in order, and a refusal
or a server that never comes back is reported on the caller's thread."""

from __future__ import annotations

import threading

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from pipeline.tracking.outbox import Outbox, TrackingUnavailable, is_outage


class FlakyServer:
    """Receives writes while ``up``; refuses connections while down."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.up.set()
        self.received: list[int] = []
        self.failed_tries = 0
        self.refused_one = threading.Event()  # a try while down was made

    def write(self, n: int):
        def send() -> None:
            if not self.up.is_set():
                self.failed_tries += 1
                self.refused_one.set()
                raise ConnectionRefusedError("connection refused")
            self.received.append(n)

        return send


def test_writes_arrive_in_order_and_close_drains():
    server = FlakyServer()
    box = Outbox("test://server", retry_every_s=0.01)
    for n in range(50):
        box.put(server.write(n))
    box.close()
    assert server.received == list(range(50))


def test_an_outage_buffers_writes_without_blocking_and_sends_them_in_order_after():
    server = FlakyServer()
    box = Outbox("test://server", retry_every_s=0.01)
    server.up.clear()
    for n in range(20):
        box.put(server.write(n))  # returns at once although nothing can be sent
    assert server.refused_one.wait(30)
    assert box.pending() == 20 and server.received == []
    server.up.set()
    box.close()
    assert server.received == list(range(20))
    assert server.failed_tries >= 1


def test_a_refused_write_fails_the_next_put_and_is_not_retried():
    calls = []

    def refused() -> None:
        calls.append(1)
        raise MlflowException("bad metric", error_code=INVALID_PARAMETER_VALUE)

    box = Outbox("test://server", retry_every_s=0.01)
    box.put(refused)
    with pytest.raises(MlflowException, match="bad metric"):
        box.close()
    with pytest.raises(MlflowException, match="bad metric"):
        box.put(lambda: None)
    assert calls == [1]


def test_a_server_that_never_returns_is_named_after_the_drain_timeout():
    server = FlakyServer()
    server.up.clear()
    box = Outbox("http://127.0.0.1:5999", retry_every_s=0.01, drain_timeout_s=0.3)
    for n in range(3):
        box.put(server.write(n))
    with pytest.raises(TrackingUnavailable, match=r"127\.0\.0\.1:5999.*3 queued writes"):
        box.close()
    assert server.received == []


def test_outages_are_told_from_refusals():
    assert is_outage(ConnectionRefusedError())
    assert is_outage(TimeoutError())
    assert is_outage(MlflowException("API request failed"))  # no code: INTERNAL_ERROR, a 500
    assert is_outage(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert not is_outage(MlflowException("no", error_code=INVALID_PARAMETER_VALUE))
    assert not is_outage(ValueError("a bug"))
