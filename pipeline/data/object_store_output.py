"""Exactly-once outputs on object stores (S3, GCS, ...), where there is no atomic rename.

Layout under the output prefix ``OUT``:

    OUT/attempt-T/...   the data files of attempt T (a fresh T per command)
    OUT/_SUCCESS        the manifest: written last, as one object, it *is* the commit

An object becomes visible only once its upload completes, all at once, so a reader sees either
no ``_SUCCESS`` (nothing committed) or a complete one. The manifest lists every committed file
(path relative to ``OUT``, rows, bytes): readers trust those files only. Files of attempts the
manifest does not name (a killed run, a replaced output) are deleted by the next command that
writes ``OUT``, but may be seen by a reader that lists the prefix instead of reading the manifest.

A rerun after a kill at any point: no ``_SUCCESS`` → its attempt is garbage and a new attempt
writes everything again; ``_SUCCESS`` present → the output is complete (leftover attempts are
deleted). There is no lock on object stores: run one writer per output at a time (a second one
racing the first can only make the other's verification fail, never commit a mixture).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow.fs as pafs

from pipeline.data.filesystems import Location
from pipeline.data.staged_output import MANIFEST, inject_fault, read_manifest
from pipeline.errors import UserError

ATTEMPT_PREFIX = "attempt-"


class ObjectStoreOutput:
    """One output prefix on an object store, committed exactly once by its manifest."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.out = location.uri
        self.attempt = f"{ATTEMPT_PREFIX}{uuid.uuid4().hex[:12]}"
        self.staging = location.child(self.attempt)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        yield  # object stores offer no lock: one writer per output (module docstring)

    def _children(self) -> list[pafs.FileInfo]:
        if self.location.info().type != pafs.FileType.Directory:
            return []
        return self.location.fs.get_file_info(pafs.FileSelector(self.location.path))

    def recover(self) -> None:
        """Delete the attempts no manifest names (killed runs, replaced outputs)."""
        manifest = read_manifest(self.location) or {}
        keep = {f["path"].split("/", 1)[0] for f in manifest.get("files", [])}
        for child in self._children():
            if child.base_name.startswith(ATTEMPT_PREFIX) and child.base_name not in keep:
                self.location.fs.delete_dir(child.path)

    def existing(self) -> dict[str, Any] | None:
        """The manifest of a complete output at ``out``; refuse anything foreign."""
        info = self.location.info()
        if info.type == pafs.FileType.NotFound:
            return None
        if info.type == pafs.FileType.File:
            raise UserError(f"output {self.out} exists and is an object, not a prefix")
        manifest = read_manifest(self.location)
        foreign = [c for c in self._children() if not c.base_name.startswith(ATTEMPT_PREFIX)]
        if manifest is None and foreign:
            raise UserError(
                f"output {self.out} already holds files that are not a vaepipe output; "
                "choose an empty or new prefix"
            )
        return manifest

    def check_writable(self) -> None:
        """Refuse early a bucket that does not exist (writing is probed by ``begin``)."""
        bucket = self.location.path.split("/", 1)[0]
        try:
            missing = self.location.fs.get_file_info(bucket).type == pafs.FileType.NotFound
        except OSError as exc:
            first = (str(exc).splitlines() or [""])[0]
            raise UserError(f"cannot write output {self.out}: {first}") from None
        if missing:
            raise UserError(f"cannot write output {self.out}: bucket {bucket!r} does not exist")

    def begin(self) -> Location:
        """A fresh attempt prefix, probed with a small write; failure is a ``UserError``."""
        probe = self.staging.child(".probe")
        try:
            self.staging.fs.create_dir(self.staging.path)
            probe.write_text("")
            probe.fs.delete_file(probe.path)
        except OSError as exc:
            first = (str(exc).splitlines() or [""])[0]
            raise UserError(f"cannot write output {self.out}: {first}") from None
        return self.staging

    def relative(self, path: str) -> str:
        return f"{self.attempt}/{path}"

    def commit(self, manifest: dict[str, Any], fault: Callable[[str], None] = inject_fault) -> None:
        """Write the manifest (the commit), then delete the attempts it does not name."""
        fault("encode:written")
        self.location.child(MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        fault("encode:staged")
        fault("encode:mid-commit")
        self.recover()

    def abort(self) -> None:
        """Delete this attempt's files (an error or Ctrl-C while writing)."""
        with contextlib.suppress(OSError):
            self.staging.fs.delete_dir(self.staging.path)
