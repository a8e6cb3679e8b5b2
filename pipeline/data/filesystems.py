"""Every path a user gives → a pyarrow filesystem and a path inside it, resolved one way.

A local path (relative, ``~``, absolute) or ``file://`` URI is the local filesystem at an
absolute path; any other URI (``s3://``, ``gs://``, ``hdfs://``, ...) goes through
``pyarrow.fs.FileSystem.from_uri``, which reads the standard settings of its store (for S3:
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_DEFAULT_REGION``, ...; a bare
``S3FileSystem()`` would ignore ``AWS_ENDPOINT_URL``). A ``Location`` is picklable, so Ray tasks
on any node write and read the same place the driver named.

Multi-node rule: a local path means "the same path on every node". ``check_shared`` verifies
that before a job writes or reads there, and refuses a path some node cannot see.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.errors import UserError


def is_uri(text: str | os.PathLike) -> bool:
    return "://" in str(text)


@dataclass(frozen=True)
class Location:
    """A place on some filesystem: ``fs`` + ``path`` inside it; ``uri`` is what users see."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    def child(self, relative: str) -> Location:
        relative = relative.strip("/")
        return Location(self.fs, f"{self.path.rstrip('/')}/{relative}", f"{self.uri}/{relative}")

    def parent(self) -> Location:
        path = posixpath.dirname(self.path.rstrip("/")) or "/"
        uri = self.uri.rstrip("/").rsplit("/", 1)[0] if not self.is_local else path
        return Location(self.fs, path, uri)

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as f:
            return f.read().decode()

    def write_text(self, text: str) -> None:
        """One object (object stores: visible only once complete, all at once)."""
        with self.fs.open_output_stream(self.path) as f:
            f.write(text.encode())

    def __str__(self) -> str:
        return self.uri


def resolve(text: str | os.PathLike) -> Location:
    """The filesystem and path that ``text`` (a local path or a URI) names."""
    text = str(text)
    if not is_uri(text):
        path = os.path.abspath(os.path.expanduser(text))
        return Location(pafs.LocalFileSystem(), path, path)
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        path = os.path.abspath(text.split("://", 1)[1])
        return Location(pafs.LocalFileSystem(), path, path)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{text}: cannot open filesystem ({first})") from None
    return Location(fs, path.rstrip("/"), text.split("?", 1)[0].rstrip("/"))


def check_not_overlapping(out: Location, source: str) -> None:
    """Refuse an output inside the input, the input inside the output, or both the same
    (``..`` and symlinks resolved): a later read of the input would take in the output too."""
    if is_uri(source) or not out.is_local or not Path(source).expanduser().exists():
        return  # a builtin name or a remote URI: nothing on this disk to collide with
    src = Path(source).expanduser().resolve()
    dst = Path(out.path).resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise UserError(f"output {out} overlaps the input {src}; write it somewhere else")


def check_shared(location: Location, what: str) -> None:
    """Refuse a local path that some node of a multi-node Ray cluster cannot see.

    Object stores are shared by nature. For a local ``location`` that exists on the driver,
    one zero-CPU task per alive node checks that the same path exists there (a probe file for
    a directory, so that a node with its own empty folder of the same name is caught too).
    Needs a connected Ray; a single node has nothing to check.
    """
    import ray

    if not location.is_local or not ray.is_initialized():
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    probe = location.path
    made = None
    if os.path.isdir(location.path):
        made = probe = os.path.join(location.path, f".vaepipe-probe-{uuid.uuid4().hex[:12]}")
        open(probe, "wb").close()
    try:
        blind = _nodes_without(probe, nodes)
    finally:
        if made is not None:
            os.unlink(made)
    if blind:
        raise UserError(
            f"{what} {location.uri} is a local path that node(s) {', '.join(blind)} cannot see; "
            "use a filesystem every node mounts at the same path, or a URI such as s3://bucket/x"
        )


def _nodes_without(path: str, nodes: list[dict]) -> list[str]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    sees = ray.remote(num_cpus=0)(os.path.exists)
    refs = [
        sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(path)
        for n in nodes
    ]
    return [n["NodeManagerAddress"] for n, ok in zip(nodes, ray.get(refs), strict=True) if not ok]
