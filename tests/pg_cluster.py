"""A private PostgreSQL cluster for the test session: ``initdb`` in a temp dir, one loopback port.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to an
unprivileged user (``nobody`` unless ``VAEPIPE_PG_USER`` names another) and its programs run
through ``runuser -u USER --``. The server is stopped by its postmaster pid (from
``postmaster.pid``), never by name. Each MLflow store is its own database in this cluster.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("VAEPIPE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "vaepipe"
READY_TIMEOUT_S = 60.0


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    needed = [PG_BIN / n for n in ("initdb", "postgres")]
    absent = [str(p) for p in needed if not p.is_file()]
    if absent:
        return f"PostgreSQL binaries not found: {', '.join(absent)} (set VAEPIPE_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root and `runuser` is missing: cannot run PostgreSQL unprivileged"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[test]')"
    return None


@dataclass
class PgCluster:
    data_dir: Path
    port: int
    pid: int  # the postmaster's
    launcher: subprocess.Popen | None = None  # runuser (or postgres itself), reaped on stop

    def uri(self, database: str = "postgres") -> str:
        """libpq form (psycopg2.connect)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def sqlalchemy_uri(self, database: str) -> str:
        # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3; the test extras bring psycopg2.
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "mlflow") -> str:
        """A new empty database; returns its SQLAlchemy URI (MLflow's backend store form)."""
        import psycopg2

        name = f"{prefix}_{secrets.token_hex(6)}"
        conn = psycopg2.connect(self.uri())
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.sqlalchemy_uri(name)


def _owner() -> str | None:
    """The unprivileged user that owns the cluster when we are root; None when we are not."""
    return os.environ.get("VAEPIPE_PG_USER", "nobody") if os.geteuid() == 0 else None


def _as_owner(cmd: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start() -> PgCluster:
    """initdb + postgres on a free 127.0.0.1 port (trust auth on loopback only)."""
    owner = _owner()
    # Not under pytest's 0700 tmp tree: the owner must be able to reach its data dir.
    root = Path(tempfile.mkdtemp(prefix="vp_pg_", dir="/tmp"))
    data_dir, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if owner:
        uid, gid = pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid
        for path in (root, sockets):
            os.chown(path, uid, gid)
    initdb = [str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "-A", "trust"]
    subprocess.run(
        _as_owner([*initdb, "--no-sync", "-E", "UTF8"], owner),
        check=True,
        capture_output=True,
        cwd=root,
    )
    port = _free_port()
    server = [
        str(PG_BIN / "postgres"), "-D", str(data_dir), "-p", str(port),
        "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockets}",
        "-c", "fsync=off", "-c", "max_connections=200",
    ]  # fmt: skip
    with open(root / "postgres.log", "ab") as log:
        launcher = subprocess.Popen(
            _as_owner(server, owner), stdout=log, stderr=subprocess.STDOUT, cwd=root,
            start_new_session=True,
        )  # fmt: skip
    pid = _wait_ready(data_dir, port, launcher, root / "postgres.log")
    return PgCluster(data_dir=data_dir, port=port, pid=pid, launcher=launcher)


def _wait_ready(data_dir: Path, port: int, launcher: subprocess.Popen, log: Path) -> int:
    """The postmaster's pid once it accepts connections."""
    import psycopg2

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise RuntimeError(f"postgres exited during start: {log.read_text()[-2000:]}")
        pid_file = data_dir / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(psycopg2.OperationalError):
                psycopg2.connect(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres").close()
                return int(pid_file.read_text().split()[0])
        time.sleep(0.2)
    raise RuntimeError(f"postgres not ready on port {port} after {READY_TIMEOUT_S:.0f}s; see {log}")


def stop(cluster: PgCluster) -> None:
    """Fast shutdown by pid (SIGINT to the postmaster), then remove the data."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(cluster.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while _alive(cluster.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(cluster.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(cluster.pid, signal.SIGKILL)
    if cluster.launcher is not None:
        cluster.launcher.wait(timeout=30)
    shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
