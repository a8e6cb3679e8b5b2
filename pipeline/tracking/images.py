"""Image grids of a VAE: reconstructions, prior samples, latent traversals (MLflow and PNG)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pipeline.data.batches import Preprocessor
from vae_core.model import VAE
from vae_core.sampling import latent_traversal, reconstruct, sample_prior

GRID_COLS = 8
TRAVERSAL_DIMS = 8


def image_grid(x: np.ndarray, ncol: int = 8) -> np.ndarray:
    """``x`` (N, C, H, W) floats in [0, 1] → one uint8 grid (rows*H, ncol*W[, C]); 2-D if C=1."""
    n, c, h, w = x.shape
    rows = -(-n // ncol)
    grid = np.zeros((rows * h, ncol * w, c), dtype=np.uint8)
    pixels = (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = pixels[i]
    return grid[..., 0] if c == 1 else grid


def is_image_data(preprocessor: Preprocessor) -> bool:
    """(C, H, W) with 1 or 3 channels and values in [0, 1] (not standardized)."""
    shape = preprocessor.layout.shape
    return len(shape) == 3 and shape[0] in (1, 3) and preprocessor.mean is None


def _np(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


@torch.no_grad()
def epoch_images(
    vae: VAE, examples: Tensor, preprocessor: Preprocessor, seed: int
) -> dict[str, np.ndarray]:
    """``examples`` (N, C, H, W) model inputs → named uint8 grids; {} for non-image data."""
    if not is_image_data(preprocessor) or examples.shape[0] == 0:
        return {}
    was_training = vae.training
    vae.eval()
    examples = examples[:GRID_COLS]
    recon = reconstruct(vae, examples)  # (N, C, H, W)
    generator = torch.Generator(device=examples.device).manual_seed(seed)
    prior = sample_prior(vae, GRID_COLS * GRID_COLS, generator=generator)  # (64, C, H, W)
    dims = list(range(min(TRAVERSAL_DIMS, vae.cfg.latent_dim)))
    trav = latent_traversal(vae, examples[0], dims=dims, steps=GRID_COLS)  # (D, S, C, H, W)
    vae.train(was_training)
    return {
        "reconstructions": image_grid(_np(torch.cat([examples, recon])), GRID_COLS),
        "prior_samples": image_grid(_np(prior), GRID_COLS),
        "latent_traversal": image_grid(_np(trav.flatten(0, 1)), GRID_COLS),
    }
