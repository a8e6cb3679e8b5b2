"""Which process owns a RUNNING MLflow run, and whether that process still lives.

A run that ``vaepipe train`` opens carries the owner's host, boot id, pid and the pid's start
time (clock ticks since boot, from ``/proc``). A pid alone is not enough: pids are reused, and
after a reboot every pid is someone else's. The owner is *gone* when, on its own host, the boot
id differs, the pid does not exist, or it exists with another start time. On another host, or
without ``/proc``, nothing can be told and the run is left alone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST_TAG = "vaepipe.owner.host"
BOOT_TAG = "vaepipe.owner.boot_id"
PID_TAG = "vaepipe.owner.pid"
START_TAG = "vaepipe.owner.start_ticks"
OWNER_TAGS = (HOST_TAG, BOOT_TAG, PID_TAG, START_TAG)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (after the parenthesised command name), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # fields[0] is field 3 (state)


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """The tags that identify this process (or ``pid``) as a run's owner."""
    pid = os.getpid() if pid is None else pid
    return {
        HOST_TAG: socket.gethostname(),
        BOOT_TAG: _boot_id() or "",
        PID_TAG: str(pid),
        START_TAG: _start_ticks(pid) or "",
    }


def owner_is_gone(tags: dict[str, str]) -> bool:
    """True only when the owner recorded in ``tags`` is provably not running any more."""
    if not all(tags.get(t) for t in OWNER_TAGS) or tags[HOST_TAG] != socket.gethostname():
        return False  # not ours to judge: no owner recorded, or another host's process
    boot = _boot_id()
    if boot is None:
        return False
    if tags[BOOT_TAG] != boot:
        return True  # the machine rebooted since: that process is gone
    return _start_ticks(int(tags[PID_TAG])) != tags[START_TAG]


def describe(tags: dict[str, str]) -> str:
    return f"pid {tags.get(PID_TAG)} on {tags.get(HOST_TAG)}"
