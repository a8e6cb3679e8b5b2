"""Save and load a VAE as a directory of plain files; loading never unpickles code.

config.json   {"format": 1, "model": ModelConfig.to_dict()}
weights.pt    the state_dict, read back with torch.load(weights_only=True)
extra.json    optional: any JSON dict the caller stores beside the model (e.g. preprocessing)

:func:`load_weights` is the one way vaepipe reads a ``.pt`` file (models and checkpoints): a file
whose pickle names anything but tensors and plain values (a ``__reduce__`` that would run code)
is refused with one line, :class:`UnsafePickleError`, before anything runs. ``weights_only=True``
is passed explicitly: torch's ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` only changes the *default*.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from vae_core.config import ModelConfig
from vae_core.model import VAE

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
EXTRA_FILE = "extra.json"


class UnsafePickleError(ValueError):
    """A ``.pt`` file that is more than tensors and plain values; nothing in it was run."""


def load_weights(
    source: str | Path | IO[bytes], name: str, map_location: str | torch.device = "cpu"
) -> Any:
    """``torch.load(weights_only=True)``; a refused pickle → :class:`UnsafePickleError`.

    ``name`` (a path or URI) is what the one-line error names.
    """
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError(
            f"{name}: refused to load: {_refusal_reason(exc)}; only tensors and plain values "
            "are accepted (the file may have been tampered with)"
        ) from None


def _refusal_reason(exc: BaseException) -> str:
    """torch's message is a paragraph; the line naming the forbidden global is the reason."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "global" in line]
    return (named or lines or [type(exc).__name__])[0].rstrip(".")


def save_model(
    model: nn.Module, directory: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (a VAE, or a DDP-style wrapper around one) to ``directory``."""
    vae: VAE = getattr(model, "module", model)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT_VERSION, "model": vae.cfg.to_dict()}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    state = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    torch.save(state, out / WEIGHTS_FILE)
    if extra is not None:
        (out / EXTRA_FILE).write_text(json.dumps(extra, indent=2, sort_keys=True))
    elif (out / EXTRA_FILE).exists():
        (out / EXTRA_FILE).unlink()  # a stale extra.json must not describe a new model
    return out


def load_model(
    directory: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[VAE, dict[str, Any]]:
    """Read a directory written by ``save_model``: (the VAE in eval mode, the extra dict or {})."""
    src = Path(directory)
    config = json.loads((src / CONFIG_FILE).read_text())
    if config.get("format") != FORMAT_VERSION:
        raise ValueError(f"{src / CONFIG_FILE}: format={config.get('format')!r}, expected 1")
    vae = VAE(ModelConfig.from_dict(config["model"]))
    state = load_weights(src / WEIGHTS_FILE, str(src / WEIGHTS_FILE), map_location)
    vae.load_state_dict(state)
    vae.to(map_location).eval()
    extra_path = src / EXTRA_FILE
    extra = json.loads(extra_path.read_text()) if extra_path.exists() else {}
    return vae, extra
