"""e2e serving helpers: free loopback ports, servers as subprocesses, JSON over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes | dict, timeout: float = 30) -> tuple[int, dict]:
    """POST ``body`` (bytes as they are, a dict as JSON) → (status, JSON answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def get(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Server:
    """A server command as a subprocess in its own process group, stopped with SIGINT."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, url: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if get(url, timeout=2) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 60) -> int:
        """SIGINT, as Ctrl-C would; the whole group is killed if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def tail(self) -> str:
        return self.log.read_text()[-3000:]


def vaepipe_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *args]


def mlflow_serve_args(uri: str, port: int) -> list[str]:
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    return [mlflow, "models", "serve", "-m", uri, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
