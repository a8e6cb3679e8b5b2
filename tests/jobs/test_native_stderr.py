"""Ray's known C++ notice is dropped from a command's stderr; everything else arrives, in order.

Each case is a real child process whose fd 2 is filtered by ``drop_ray_notices``, then written
to the way Ray's C++ core writes (``os.write`` on fd 2) and the way Python does (``sys.stderr``).
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTICE = (
    "[2026-12-05 18:33:01,123 E 13479 13479] core_worker.cc:2253: Actor with class name: "
    "'MapWorker(MapBatches(_Encode))' and ID: 'c1a2b3' has constructor arguments in the object "
    "store and max_restarts > 0. See https://github.com/ray-project/ray/issues/53727."
)
OTHER_RAY_LINE = "[2026-12-05 18:33:02,001 E 13479 13479] core_worker.cc:900: something else"

CHILD = f"""
import atexit, os, sys, threading
from pipeline.cluster.native_stderr import drop_ray_notices
# Runs after the filter's own exit step (atexit is last in, first out): its thread has ended.
atexit.register(lambda: print("threads", threading.active_count(), file=sys.stderr))
drop_ray_notices()
os.write(2, b"native before\\n" + {NOTICE!r}.encode() + b"\\n")
os.write(2, {OTHER_RAY_LINE!r}.encode() + b"\\n")
os.write(2, b"progress 1/2\\r")
os.write(2, b"[a Ray line cut short at exit")
print("isatty", sys.stderr.isatty(), file=sys.stderr)
"""


def _child(stderr) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", CHILD], env=env, stderr=stderr, timeout=60, check=True
    )


def _lines(raw: bytes) -> list[str]:
    return raw.decode().replace("\r\n", "\n").split("\n")


def test_the_notice_is_dropped_and_every_other_byte_passes():
    err = _child(subprocess.PIPE).stderr.decode()
    assert "constructor arguments" not in err
    # Python's own writes go straight to the real stderr: they may pass the piped ones.
    assert err.count("isatty False\n") == 1
    assert err.endswith("threads 1\n")  # the forwarding thread ended before finalization
    native = err.replace("isatty False\n", "").removesuffix("threads 1\n")
    assert native == f"native before\n{OTHER_RAY_LINE}\nprogress 1/2\r[a Ray line cut short at exit"


def test_a_terminal_stays_a_terminal():
    leader, follower = pty.openpty()
    try:
        _child(follower)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child's end is closed and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert "isatty True" in _lines(out)
    assert not any("constructor arguments" in line for line in _lines(out))
