"""``mnist``: the standard MNIST files, downloaded once with sha256 checks into a cache.

Cache: ``$VAEPIPE_CACHE/mnist`` (default ``~/.cache/vaepipe/mnist``). Without network the
error says how to use local IDX files instead; the timeout is short
(``VAEPIPE_DOWNLOAD_TIMEOUT``, 10 s) so an offline machine fails fast.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.config.data import DataConfig
from pipeline.data.sources import SourcePlan, idx
from pipeline.errors import UserError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# name -> sha256 of the standard files (the same bytes on every mirror).
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a40"
    "24d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8"
    "be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def cache_dir() -> Path:
    root = os.environ.get("VAEPIPE_CACHE") or Path.home() / ".cache" / "vaepipe"
    return Path(root) / "mnist"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(name: str, dest: Path, mirrors: tuple[str, ...], timeout: float) -> None:
    """Download ``name`` to ``dest`` atomically; raise UserError when no mirror works."""
    errors = []
    for mirror in mirrors:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{name}.")
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(mirror + name, timeout=timeout) as r,
            ):
                while chunk := r.read(1 << 20):
                    out.write(chunk)
            if _sha256(Path(tmp)) != SHA256[name]:
                errors.append(f"{mirror + name}: sha256 mismatch")
                continue
            os.replace(tmp, dest)
            return
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{mirror + name}: {getattr(exc, 'reason', exc)}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise UserError(
        f"cannot download MNIST {name} ({'; '.join(errors)}); without network, point --data at "
        "a directory of local IDX files (train-images-idx3-ubyte.gz, ...)"
    )


def ensure_files(directory: Path | None = None, mirrors: tuple[str, ...] = MIRRORS) -> Path:
    """The cache directory holding all four verified files, downloading what is missing."""
    directory = directory or cache_dir()
    timeout = float(os.environ.get("VAEPIPE_DOWNLOAD_TIMEOUT", "10"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{directory}: cannot create the MNIST cache ({exc})") from None
    for name in SHA256:
        dest = directory / name
        if not (dest.exists() and _sha256(dest) == SHA256[name]):
            _fetch(name, dest, mirrors, timeout)
    return directory


def plan(cfg: DataConfig) -> SourcePlan:
    directory = ensure_files()
    local = idx.plan(DataConfig(**{**cfg.to_dict(), "source": str(directory)}))
    return SourcePlan(**{**local.__dict__, "description": f"MNIST (cached in {directory})"})
