"""Exactly-once outputs: stage, verify, commit. ``open_output`` picks the mechanism by filesystem.

Object stores (no atomic rename): ``pipeline.data.object_store_output``, where the manifest,
written last as one object, is the commit. Local (and any mounted) filesystems: this module's
``StagedOutput``, committed with renames, so a plain directory listing is always truthful too.

Layout next to the output ``DIR`` (same parent, so every rename stays on one filesystem and is
atomic):

    .DIR.vaepipe-lock       flock held for the whole command: one writer per output at a time
    .DIR.vaepipe-staging-T/ files being written by attempt T; ``_SUCCESS`` written last
    .DIR.vaepipe-old/       a previous complete output being replaced (``--overwrite`` only)
    DIR/                    a complete output: data files + ``_SUCCESS`` (JSON manifest)

Each attempt stages into a fresh directory, so a straggling write task of a killed attempt can
only fail (its directory is gone), never add files to a later attempt's output.

Commit order: manifest into staging → DIR to old (if replacing) → staging to DIR → delete old.
Whatever step a kill interrupts, ``StagedOutput.recover`` on the next run brings the directory
back to a consistent state: a staging dir without ``_SUCCESS`` is deleted, one with it is
committed, an orphaned old dir is deleted or put back. A reader that sees ``DIR/_SUCCESS`` sees
a complete result; one that sees no ``DIR`` sees nothing.

Both kinds share the manifest (``_SUCCESS``: JSON, ``files`` listed relative to the output)
and the interface: ``locked``, ``recover``, ``existing``, ``check_writable``, ``begin`` →
staging ``Location``, ``relative(path in staging)`` → path in the manifest, ``commit``, ``abort``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.data.filesystems import Location, resolve
from pipeline.errors import UserError

MANIFEST = "_SUCCESS"
# Tests: "encode:written", "encode:staged", "encode:mid-commit" or "encode:swapped" (the commit
# steps, in order) kills the process there.
FAULT_ENV = "VAEPIPE_FAULT"


def inject_fault(point: str) -> None:
    """Die like ``kill -9`` at ``point`` when ``$VAEPIPE_FAULT`` names it (tests only)."""
    if os.environ.get(FAULT_ENV) == point:
        os._exit(137)


def read_manifest(out: Location | Path) -> dict[str, Any] | None:
    """The ``_SUCCESS`` manifest of a complete output, or None."""
    where = out if isinstance(out, Location) else resolve(out)
    try:
        return json.loads(where.child(MANIFEST).read_text())
    except (OSError, ValueError):  # absent, a directory, or unreadable
        return None


def open_output(out: str | os.PathLike) -> StagedOutput | Any:
    """The exactly-once output at ``out`` (a local path or any pyarrow filesystem URI)."""
    where = resolve(out)
    if where.is_local:
        return StagedOutput(where)
    from pipeline.data.object_store_output import ObjectStoreOutput

    return ObjectStoreOutput(where)


class StagedOutput:
    """One local output directory committed exactly once (renames)."""

    def __init__(self, out: str | os.PathLike | Location) -> None:
        self.location = out if isinstance(out, Location) else resolve(out)
        self.out = Path(self.location.path)
        prefix = f".{self.out.name}.vaepipe-"
        self._staging_prefix = f"{prefix}staging-"
        self.staging = self.out.parent / f"{self._staging_prefix}{uuid.uuid4().hex[:12]}"
        self.old = self.out.parent / f"{prefix}old"
        self.lock_path = self.out.parent / f"{prefix}lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on this output (released by the kernel if we are killed).

        Nothing is created when the parent directory does not exist yet: then no other
        writer can hold the lock either, and ``begin`` reports an unwritable place.
        """
        if not self.out.parent.is_dir():
            yield
            return
        fd = self._acquire()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            os.close(fd)

    def _acquire(self) -> int:
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UserError(f"cannot write output {self.out}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(f"another vaepipe command is writing {self.out}") from None
            # The holder before us may have unlinked the file as we opened it: retry then.
            if os.path.exists(self.lock_path) and os.stat(self.lock_path).st_ino == (
                os.fstat(fd).st_ino
            ):
                return fd
            os.close(fd)

    def _stagings(self) -> list[Path]:
        parent = self.out.parent
        if not parent.is_dir():
            return []
        return sorted(p for p in parent.iterdir() if p.name.startswith(self._staging_prefix))

    # -- before writing -------------------------------------------------------------------

    def recover(self) -> None:
        """Finish or undo whatever an interrupted earlier run left behind."""
        for staging in self._stagings():
            if read_manifest(staging) is not None and not self.out.exists():
                staging.rename(self.out)  # killed between the two commit renames
            else:
                shutil.rmtree(staging)  # killed while writing: nothing of it counts
        if self.old.exists():
            if self.out.exists():
                shutil.rmtree(self.old)  # killed after the commit, before the cleanup
            else:
                self.old.rename(self.out)  # cannot happen by the commit order; never lose it

    def existing(self) -> dict[str, Any] | None:
        """The manifest of a complete output already at ``out``; refuse anything foreign.

        Raises ``UserError`` when ``out`` is a file or a non-empty directory that is not a
        complete vaepipe output: those are never written into or deleted.
        """
        if not self.out.exists():
            return None
        if not self.out.is_dir():
            raise UserError(f"output {self.out} exists and is not a directory")
        manifest = read_manifest(self.out)
        if manifest is None and any(self.out.iterdir()):
            raise UserError(
                f"output {self.out} already holds files that are not a vaepipe output; "
                "choose an empty or new directory"
            )
        return manifest

    def check_writable(self) -> None:
        """Refuse early (before any work) a place that cannot hold the output."""
        ancestor = self.out.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            why = "not a directory" if not ancestor.is_dir() else "not writable"
            raise UserError(f"cannot write output {self.out}: {ancestor} is {why}")

    def begin(self) -> Location:
        """Create a fresh staging dir and return it; an unwritable place is a ``UserError``."""
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir()
            probe = self.staging / ".probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self.abort()
            raise UserError(f"cannot write output {self.out}: {exc.strerror or exc}") from None
        return resolve(self.staging)

    def relative(self, path: str) -> str:
        """The manifest path of ``path`` (relative to staging): staging becomes ``out``."""
        return path

    # -- after writing --------------------------------------------------------------------

    def commit(self, manifest: dict[str, Any], fault: Callable[[str], None] = inject_fault) -> None:
        """Write the manifest into staging, then swap staging in as ``out``."""
        fault("encode:written")
        tmp = self.staging / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.rename(self.staging / MANIFEST)
        fault("encode:staged")
        if self.out.exists():
            if read_manifest(self.out) is not None:
                self.out.rename(self.old)
            else:
                self.out.rmdir()  # empty (existing() refused anything else)
        fault("encode:mid-commit")
        self.staging.rename(self.out)
        fault("encode:swapped")
        if self.old.exists():
            shutil.rmtree(self.old)

    def abort(self) -> None:
        """Remove the staging dir (an error or Ctrl-C while writing)."""
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)
