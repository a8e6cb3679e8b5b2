"""Secret files (Ray tokens, MLflow admin passwords) that are private from the moment they exist.

``write_text(path)`` then ``chmod(0o600)`` leaves a window in which the file is world-readable
under the usual umask 022; here the file is created with ``O_CREAT | O_EXCL`` and mode 0600
(and its folder 0700), so no other user ever sees it. Ray's own ``ray.init`` writes
``~/.ray/auth_token`` with plain ``open(..., "w")``; :func:`ensure_local_ray_token` writes it
first, privately, so Ray finds one and keeps it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def write_private(path: Path, value: str) -> Path:
    """Create ``path`` (which must not exist) holding ``value``, mode 0600 from creation."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.chmod(path, PRIVATE_FILE)  # the umask can only remove bits; make it exact
    return path


def is_private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == PRIVATE_FILE


def new_secret() -> str:
    return secrets.token_hex(32)


def ensure_local_ray_token(environ: dict[str, str] | None = None) -> Path | None:
    """Before a local ``ray.init``: make sure Ray's default token file exists and is 0600.

    Does nothing when the token comes from elsewhere (``RAY_AUTH_TOKEN``/``_PATH``) or auth is
    off. A token file found readable by others is tightened to 0600. Returns the path used.
    """
    env = os.environ if environ is None else environ
    if env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH"):
        return None
    if env.get("RAY_AUTH_MODE", "token").lower() != "token":
        return None
    path = Path.home() / ".ray" / "auth_token"
    if path.exists():
        if not is_private(path):
            os.chmod(path, PRIVATE_FILE)
        return path
    try:
        return write_private(path, new_secret())
    except FileExistsError:  # another process created it a moment ago
        return path
