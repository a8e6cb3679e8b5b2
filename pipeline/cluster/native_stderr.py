"""Drop Ray's C++ actor-pool notice from this process's stderr; every other byte passes.

Ray's C++ core writes its notices straight to file descriptor 2, outside Python's logging, so
no log level quiets them. One reaches ``vaepipe encode`` and ``evaluate`` users on a bad input,
before vaepipe's one-line error: Ray Data's actor pool keeps its constructor arguments in the
object store and its actors restartable, and the core worker reports that at ERROR level
(ray-project/ray#53727). It says nothing about the user's input.

How: fd 2 becomes a pipe that a thread reads, forwarding every line but that notice to
the real stderr. Python's ``sys.stderr`` is first re-opened on the real stderr, so Python's own
writes (logs, the progress line, vaepipe's error line) never pass through the pipe and a
terminal stays a terminal (``isatty``). At exit, after Ray's own shutdown (``atexit`` runs in
reverse order of registration), a marker line drains the pipe, fd 2 becomes the real stderr
again and the thread, at the pipe's end, stops before the interpreter finalizes (a daemon thread
woken during finalization is a known way for a process to crash on its way out).
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

ACTOR_POOL_NOTICE = re.compile(
    rb"core_worker\.cc:\d+: Actor with class name: '\S+' and ID: '\w+' has constructor "
    rb"arguments in the object store"
)
DRAIN_TIMEOUT_S = 2.0
RAY_LOG_LINE_START = b"["  # Ray's C++ log lines: "[2026-12-05 18:33:01,123 E 13479 13479] ..."


def drop_ray_notices() -> None:
    """From now on, fd 2 is filtered and ``sys.stderr`` writes to the real stderr directly."""
    sys.stderr.flush()
    real_stderr = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = os.fdopen(
        real_stderr, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace"
    )
    marker = b"vaepipe-stderr-drained-%d" % os.getpid()
    drained = threading.Event()
    forward = threading.Thread(
        target=_forward_lines, args=(read_end, real_stderr, marker, drained), daemon=True
    )
    forward.start()
    atexit.register(_drain, marker, drained, real_stderr, forward)


def _forward_lines(read_end: int, out: int, marker: bytes, drained: threading.Event) -> None:
    pending = b""
    while chunk := os.read(read_end, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.endswith(marker):
                line = line[: -len(marker)]
                drained.set()
                if line:
                    _write_all(out, line)
            elif not ACTOR_POOL_NOTICE.search(line):
                _write_all(out, line + b"\n")
        # Only what may become a Ray log line waits for its end; anything else (a progress
        # update ending in "\r", a prompt) passes at once.
        if pending and not pending.startswith(RAY_LOG_LINE_START):
            _write_all(out, pending)
            pending = b""
    if pending:  # the pipe's end: a last line without its newline
        _write_all(out, pending)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _drain(
    marker: bytes, drained: threading.Event, real_stderr: int, forward: threading.Thread
) -> None:
    """Everything written to fd 2 before this call reaches the real stderr first; then fd 2 is
    the real stderr again, which closes this process's write end of the pipe and so ends the
    thread (unless a child process still holds that end: then it is left, as a daemon)."""
    os.write(2, marker + b"\n")
    drained.wait(DRAIN_TIMEOUT_S)
    os.dup2(real_stderr, 2)
    forward.join(DRAIN_TIMEOUT_S)
