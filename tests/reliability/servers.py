"""Real servers for the reliability tier: an MLflow server on a fresh PostgreSQL database,
`vaepipe` as a real subprocess with its own HOME and Ray temp dir, all stopped by pid/marker."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.cluster import stack_processes as procs

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0
FIRST_EPOCH_TIMEOUT_S = 240.0


@dataclass
class Server:
    uri: str
    pid: int
    marker: str
    log: Path


def isolated_env(tmp: Path, marker: str, **extra: str) -> dict[str, str]:
    """A child environment with its own HOME and Ray temp dir, tagged with ``marker``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    # Ray's Unix socket paths must stay under 107 bytes: a short dir under /tmp.
    ray_tmp = tempfile.mkdtemp(prefix="vp_rel_", dir="/tmp")
    env.update(
        HOME=str(home),
        RAY_TMPDIR=ray_tmp,
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=str(REPO_ROOT),
        PYTHONUNBUFFERED="1",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        **extra,
    )
    env[procs.MARKER_VAR] = marker
    return env


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str,
    root: Path,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Server]:
    """``mlflow server`` on 127.0.0.1:``port`` (default: a free one) over ``backend_uri``;
    stopped by pid."""
    marker = secrets.token_hex(8)
    port = port or procs.free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(root / "mlartifacts"), "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *args,
    ]  # fmt: skip
    log = root / "mlflow.log"
    pid = procs.spawn(cmd, isolated_env(root, marker, **(env or {})), log)
    server = Server(uri=f"http://127.0.0.1:{port}", pid=pid, marker=marker, log=log)
    try:
        _wait_healthy(server)
        yield server
    finally:
        stop(server)


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        url = f"{server.uri}/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as resp:
            if resp.status == 200:
                return
        if not procs.is_alive(server.pid):
            raise RuntimeError(f"mlflow server exited: {server.log.read_text()[-3000:]}")
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server not healthy after {READY_TIMEOUT_S:.0f}s; see {server.log}")


def stop(server: Server) -> None:
    left = procs.terminate([server.pid], server.marker)
    procs.reap_child(server.pid)
    assert left == [], f"mlflow server processes left: {left}"


def kill_marked(marker: str) -> None:
    """SIGKILL every process carrying ``marker`` (a killed driver's orphaned local Ray)."""
    procs.signal_pids(procs.marked_pids(marker), signal.SIGKILL)
    assert procs.wait_until_gone(marker, 10.0) == []


def vaepipe_popen(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen:
    """The real CLI, leader of its own session (its local Ray shares the marker)."""
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_by_name(client, experiment: str, name: str | None):
    """The experiment's run called ``name`` (or its only run when ``name`` is None), or None."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    where = f"attributes.run_name = '{name}'" if name is not None else ""
    found = client.search_runs([exp.experiment_id], where)
    return found[0] if found else None


def wait_first_epoch(
    proc: subprocess.Popen, client, experiment: str, name: str | None = None
) -> str:
    """The run id once its first epoch is in MLflow (faults wait for observed state)."""
    deadline = time.monotonic() + FIRST_EPOCH_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        run = run_by_name(client, experiment, name)
        if run is not None and run.data.metrics.get("epoch", 0) >= 1:
            return run.info.run_id
        time.sleep(0.5)
    raise AssertionError(f"no epoch logged within {FIRST_EPOCH_TIMEOUT_S:.0f} s")
