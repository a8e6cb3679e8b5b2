"""Starting and reaping the local stack's server processes, and only those.

Every server is started in its own session (so its children share its process group) and with
a marker variable in its environment. Stopping signals the process groups; the marker then finds
any descendant that left the group (Ray starts job drivers with ``start_new_session=True``), so
nothing the stack started survives it and nothing else on the host is touched. This is the
reason the stack never calls ``ray stop``: that ends every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

MARKER_VAR = "VAEPIPE_STACK_ID"


RAY_WORKER_PORTS_END = 20_000  # Ray's workers take ports 10002-19999 by default
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default range starts here


def free_port() -> int:
    """A TCP port that is free now, below the kernel's ephemeral range and above Ray's worker
    ports. Why not port 0: the ephemeral range is where every outgoing connection gets its
    local port, so on a busy host (a training job, gRPC everywhere) a port the OS picked may be
    taken by a client before the server that was given it binds it (the likely reason a Ray
    node died while joining in one CI run). No port is handed out twice by one process."""
    rng = random.SystemRandom()
    end = max(_ephemeral_start(), 30_000)  # read once, not per try
    for _ in range(1000):
        port = rng.randrange(RAY_WORKER_PORTS_END, end)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise OSError("no free TCP port below the ephemeral range")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 (a probe, closed at once): 0.0.0.0 also clashes with a loopback listener
        except OSError:
            return False
    return True


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> int:
    """Start ``cmd`` as the leader of a new session, output to ``log_path``; returns its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def marked_pids(marker: str) -> list[int]:
    """Pids of live processes whose environment carries ``MARKER_VAR=marker``."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's process: not ours either way
            continue
        if needle in environ.split(b"\0") and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def pids_of_node(pgid: int, temp_dir: str) -> list[int]:
    """Live processes of one Ray node: its ``ray start`` group (raylet, agents) and anything
    whose command line names the node's temp dir (its workers name their session there)."""
    needle = temp_dir.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            group = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):  # gone, or not ours to read
            continue
        if (group == pgid or needle in cmdline) and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def signal_pids(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def reap_child(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (so it does not stay a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until_gone(marker: str, timeout_s: float) -> list[int]:
    """Wait for every marked process to exit; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout_s
    left = marked_pids(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        for pid in left:
            reap_child(pid)
        left = marked_pids(marker)
    return left


def terminate(pgids: list[int], marker: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM the groups, then SIGKILL whatever carries the marker; returns survivors' pids.

    The grace period is short on purpose: ``ray start --block``, its GCS server and autoscaler
    monitor ignore SIGTERM for more than 20 s, and the stack holds no state Ray must flush.
    """
    for pgid in pgids:
        signal_group(pgid, signal.SIGTERM)
    left = wait_until_gone(marker, grace_s)
    if left:
        for pgid in pgids:
            signal_group(pgid, signal.SIGKILL)
        signal_pids(left, signal.SIGKILL)
        left = wait_until_gone(marker, 5.0)
    return left
