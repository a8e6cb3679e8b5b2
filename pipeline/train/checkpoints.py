"""Training checkpoints: one ``state.pt`` per epoch, loadable with ``weights_only=True``.

A checkpoint directory ``epoch_00003-<ns>`` (sortable by epoch, unique across restarts) holds
``state.pt``: state_dicts and plain values only (model, best model, optimizer, scheduler,
grad scaler, epoch, step, early-stopping state, RNG state). Loading tries the newest checkpoint
first and falls back to older ones when it is corrupt or missing; when checkpoints exist but none
loads it fails with a clear error instead of silently restarting from epoch 0. A checkpoint whose
pickle would run code is not "corrupt" but hostile: it stops the load at once, with one line
naming it, instead of quietly falling back to an older one.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from pipeline.errors import UserError
from vae_core.serialization import UnsafePickleError, load_weights

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
PREFIX = "epoch_"
REQUIRED_KEYS = ("epoch", "step", "model", "optimizer", "scheduler", "best_model", "best_val")


class CheckpointError(UserError):
    """Checkpoints exist for this run but none can be loaded."""


def checkpoint_dir_name(epoch: int) -> str:
    """``epoch_00003-<ns>``: sorts by epoch; unique if an epoch is redone after a fallback."""
    return f"{PREFIX}{epoch:05d}-{time.time_ns()}"


def save_state(state: dict[str, Any], directory: str | Path) -> Path:
    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    return path


def _read_state(fs: pafs.FileSystem, dir_path: str) -> dict[str, Any]:
    path = f"{dir_path.rstrip('/')}/{STATE_FILE}"
    with fs.open_input_file(path) as f:
        data = f.read()
    state = load_weights(io.BytesIO(data), path)
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"state.pt lacks {missing}")
    return state


def list_checkpoints(fs: pafs.FileSystem, run_dir: str) -> list[str]:
    """Checkpoint directories of a run, newest epoch first (empty if the run dir is absent)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(run_dir, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return []
    dirs = [i.path for i in infos if i.type == pafs.FileType.Directory]
    return sorted((d for d in dirs if d.rsplit("/", 1)[-1].startswith(PREFIX)), reverse=True)


def load_latest_state(
    fs: pafs.FileSystem, run_dir: str, preferred: str | None = None
) -> dict[str, Any] | None:
    """The newest loadable state: ``preferred`` (Ray's latest) first, then the run dir's.

    None when the run has no checkpoint at all (a fresh start). Raises :class:`CheckpointError`
    when there are checkpoints but none loads.
    """
    candidates = list_checkpoints(fs, run_dir)
    if preferred:
        candidates = [preferred] + [c for c in candidates if c != preferred]
    if not candidates:
        return None
    errors = []
    for path in candidates:
        try:
            state = _read_state(fs, path)
        except UnsafePickleError as exc:
            raise CheckpointError(str(exc)) from None
        except Exception as exc:  # corrupt, truncated or deleted: try the previous one
            log.warning("checkpoint %s unusable (%s); trying the previous one", path, exc)
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        state["path"] = path
        return state
    raise CheckpointError(
        f"run directory {run_dir} has checkpoints but none can be loaded; refusing to restart "
        "from epoch 0 (delete the directory or pick another tracking.run_name to start over): "
        + "; ".join(errors)
    )


def filesystem_for(storage_path: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or a URI."""
    if "://" in storage_path:
        return pafs.FileSystem.from_uri(storage_path)
    return pafs.LocalFileSystem(), str(Path(storage_path).resolve())
