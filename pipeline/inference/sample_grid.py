"""PNG grids from a registered model: prior samples, or inputs above their reconstructions."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.cluster.ray_session import ensure_ray
from pipeline.config.data import DataConfig
from pipeline.data.batches import Preprocessor, iter_torch_batches
from pipeline.data.ray_errors import user_errors
from pipeline.errors import UserError
from pipeline.inference.model_data import check_layout, model_preprocessor, resolve_model_data
from pipeline.tracking.images import image_grid, is_image_data
from pipeline.tracking.registry import LoadedModel, load_vae
from vae_core.sampling import reconstruct, sample_prior

MIN_CELL_PX = 48  # small images (8x8 digits) are scaled up so the PNG is readable


@dataclass
class GridResult:
    out: str
    n: int
    kind: str  # "prior" or "reconstruction"
    model: dict


def write_grid(
    model_uri: str,
    out: str | Path,
    *,
    n: int = 64,
    seed: int = 0,
    reconstruct_data: str | None = None,
    data_overrides: Mapping[str, Any] | None = None,
) -> GridResult:
    """Prior samples (or, with ``reconstruct_data``, n inputs and their reconstructions, read
    as the model was trained but for ``data_overrides``: ``model_data``)."""
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, got {out}")
    loaded = load_vae(model_uri)
    pre = model_preprocessor(loaded, data_overrides)
    if not is_image_data(pre):
        raise UserError(f"model {model_uri} is not an image model (shape {list(pre.layout.shape)})")
    ncol = max(1, math.isqrt(n)) if reconstruct_data is None else min(n, 8)
    if reconstruct_data is None:
        generator = torch.Generator().manual_seed(seed)
        grid = image_grid(sample_prior(loaded.vae, n, generator=generator).numpy(), ncol)
        kind = "prior"
    else:
        resolved = resolve_model_data(loaded, reconstruct_data, data_overrides)
        data = dataclasses.replace(resolved.data, limit=n)
        grid = _reconstruction_grid(loaded, pre, data, n, ncol, seed)
        kind = "reconstruction"
    _save_png(_upscale(grid, pre.layout.shape[1]), out)
    return GridResult(str(out), n, kind, loaded.describe())


def _reconstruction_grid(
    loaded: LoadedModel, pre: Preprocessor, data: DataConfig, n: int, ncol: int, seed: int
):
    """Rows of ``ncol`` inputs, each followed by a row of their reconstructions."""
    from pipeline.data.ingest import open_source

    ensure_ray()
    vae = loaded.vae
    with user_errors():
        src = open_source(data)
        check_layout(loaded, src.layout, data.source)
        x = next(iter(iter_torch_batches(src.splits["train"], n, pre))).x  # (n, C, H, W)
    x = x[: max(ncol, len(x) // ncol * ncol)]  # whole rows, so inputs sit above their outputs
    torch.manual_seed(seed)
    recon = reconstruct(vae, x)
    rows = []
    for start in range(0, len(x), ncol):
        rows += [x[start : start + ncol], recon[start : start + ncol]]
    return image_grid(torch.cat(rows).numpy(), ncol)


def _upscale(grid: np.ndarray, cell: int) -> np.ndarray:
    """Nearest-neighbour upscaling so each ``cell``-pixel image is at least MIN_CELL_PX."""
    factor = max(1, MIN_CELL_PX // cell)
    return grid.repeat(factor, axis=0).repeat(factor, axis=1)


def _save_png(grid: np.ndarray, out: Path) -> None:
    from PIL import Image

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
