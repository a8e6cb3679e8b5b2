"""Training checkpoints: one ``state.pt`` per epoch, loadable with ``weights_only=True``.

A checkpoint directory ``epoch_00003-<ns>`` (sortable by epoch, unique across restarts) holds
``state.pt``: state_dicts and plain values only (model, best model, optimizer, scheduler,
grad scaler, epoch, step, early-stopping state, RNG state), and ``state.pt.sha256``, its digest:
torch's zip format has no checksum over tensor bytes, so a flipped bit in the weights would load
as quietly wrong numbers. Loading tries the newest checkpoint first and falls back to older ones
when it is corrupt (unreadable, or not matching its digest) or missing; when checkpoints exist but
none loads it fails with a clear error instead of silently restarting from epoch 0. (A checkpoint
written before digests existed is loaded unchecked.) A checkpoint whose pickle would run code is
not "corrupt" but hostile: it stops the load at once, with one line naming it, instead of quietly
falling back to an older one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs
import torch

from pipeline.data.filesystems import resolve
from pipeline.errors import UserError
from vae_core.serialization import UnsafePickleError, load_weights

if TYPE_CHECKING:
    from vae_core.config import ModelConfig
    from vae_core.model import VAE

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
DIGEST_FILE = STATE_FILE + ".sha256"  # hex SHA-256 of state.pt's bytes
PREFIX = "epoch_"
REQUIRED_KEYS = ("epoch", "step", "model", "optimizer", "scheduler", "best_model", "best_val")


class CheckpointError(UserError):
    """Checkpoints exist for this run but none can be loaded."""


def checkpoint_dir_name(epoch: int) -> str:
    """``epoch_00003-<ns>``: sorts by epoch; unique if an epoch is redone after a fallback."""
    return f"{PREFIX}{epoch:05d}-{time.time_ns()}"


def save_state(state: dict[str, Any], directory: str | Path) -> Path:
    """``state.pt`` and its digest in ``directory``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = Path(directory) / STATE_FILE
    path.write_bytes(data)
    (Path(directory) / DIGEST_FILE).write_text(hashlib.sha256(data).hexdigest())
    return path


def _read_state(fs: pafs.FileSystem, dir_path: str) -> dict[str, Any]:
    path = f"{dir_path.rstrip('/')}/{STATE_FILE}"
    with fs.open_input_file(path) as f:
        data = f.read()
    # A hostile pickle is refused before the digest is compared: it stops the load, while a
    # mismatch only makes the checkpoint "corrupt".
    state = load_weights(io.BytesIO(data), path)
    expected = _digest(fs, f"{dir_path.rstrip('/')}/{DIGEST_FILE}")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"{STATE_FILE} does not match its SHA-256 digest ({DIGEST_FILE})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"state.pt lacks {missing}")
    return state


def _digest(fs: pafs.FileSystem, path: str) -> str | None:
    """The recorded digest; None for a checkpoint written before digests existed."""
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_file(path) as f:
        return f.read().decode().strip()


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


@dataclass(frozen=True)
class BestModel:
    """The run's best model as one checkpoint holds it, with that checkpoint's own figures."""

    vae: VAE  # in eval mode
    val_loss: float  # the validation loss that made it the best: what it is registered under
    epoch: int  # the epoch it was best at
    checkpoint: str  # the checkpoint it came from


def best_model(
    fs: pafs.FileSystem, run_dir: str, model: ModelConfig, final: str | None
) -> BestModel:
    """The best model from the newest loadable checkpoint, ``final`` (the run's last) first.

    When ``final`` cannot be read an older checkpoint's best model is used, and with it that
    checkpoint's validation loss, never the figure the run reported at its end: the weights and
    the metric a registered version carries come from the same file. Warns when it fell back.
    """
    from vae_core.model import VAE

    state = load_latest_state(fs, run_dir, final)
    if state is None:
        raise RuntimeError(f"training finished without a checkpoint in {run_dir}")
    if final is not None and state["path"] != final:
        log.warning(
            "the final checkpoint %s cannot be read; using the best model of %s (epoch %d, "
            "validation loss %.6g) and registering it under that checkpoint's validation loss",
            final, state["path"], state["best_epoch"], state["best_val"],
        )  # fmt: skip
    vae = VAE(model)
    vae.load_state_dict(state["best_model"] or state["model"])
    return BestModel(vae.eval(), state["best_val"], state["best_epoch"], state["path"])


def filesystem_for(storage_path: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or a URI."""
    where = resolve(storage_path)
    return where.fs, where.path
