"""MLflow unreachable at launch: every command that talks to MLflow fails within seconds with
one line naming the URI, before Ray starts (no Ray task, no run, nothing written)."""

from __future__ import annotations

import socket
import time

import pytest

from jobs.cli import main

# no_ray: these tests check that nothing started Ray in this process.
pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("no_ray")]

BOUND_S = 30.0  # issue #12, item 10: an error within 30 s


@pytest.fixture
def dead_uri(monkeypatch) -> str:
    """An http tracking URI where nothing listens (a port bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    return uri


COMMANDS = {
    "train": ["train", "--data", "digits", "--set", "train.epochs=1"],
    "tune": ["tune", "--space", "digits", "--config", "digits"],
    "encode": ["encode", "--model", "models:/tiny@champion", "--data", "digits", "--out", "OUT"],
    "evaluate": ["evaluate", "--model", "models:/tiny@champion", "--data", "digits"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unreachable_mlflow_fails_fast_before_ray(command, dead_uri, tmp_path, capsys, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in COMMANDS[command]]
    start = time.monotonic()
    code = main(argv)
    took = time.monotonic() - start
    err = capsys.readouterr().err
    print(f"{command}: exit {code} after {took:.2f} s: {err.strip()}")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("vaepipe: error: ") and dead_uri in err and "unreachable" in err
    assert took < BOUND_S
    assert not ray.is_initialized()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no output, no results


def test_silent_mlflow_fails_within_the_bound(tmp_path, capsys, monkeypatch):
    """A server that accepts connections and never answers (a hung process, a half-dead proxy):
    the launch check's timeout, not MLflow's minutes of retries, ends the command."""
    import ray

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes handshakes; nobody ever reads or replies
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(tmp_path)
        start = time.monotonic()
        code = main([*COMMANDS["encode"][:-1], str(tmp_path / "out")])
        took = time.monotonic() - start
    err = capsys.readouterr().err
    print(f"silent server: exit {code} after {took:.2f} s: {err.strip()}")
    assert code == 2 and len(err.splitlines()) == 1 and uri in err, err
    assert took < BOUND_S and not ray.is_initialized()
    assert list(tmp_path.iterdir()) == []
