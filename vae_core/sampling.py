"""Looking at a VAE: samples from the prior, reconstructions, latent traversals.

All return data-space means (sigmoid of the logits for Bernoulli) and build no autograd graph.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vae_core.model import VAE


def _core(model: nn.Module) -> VAE:
    return getattr(model, "module", model)


@torch.no_grad()
def sample_prior(model: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Decode n draws z ~ N(0, I): (n, *input_shape)."""
    vae = _core(model)
    param = next(vae.parameters())
    z = torch.randn(
        n, vae.cfg.latent_dim, generator=generator, dtype=param.dtype, device=param.device
    )  # (n, L)
    return vae.mean(vae.decode(z))


@torch.no_grad()
def reconstruct(model: nn.Module, x: Tensor, sample: bool = False) -> Tensor:
    """Decode the posterior mean (or a posterior sample with ``sample=True``): (B, *input_shape)."""
    vae = _core(model)
    out = vae(x)
    z = out.z if sample else out.mu  # (B, L)
    return vae.mean(vae.decode(z))


@torch.no_grad()
def latent_traversal(
    model: nn.Module,
    x: Tensor,
    dims: list[int] | None = None,
    steps: int = 7,
    span: float = 3.0,
) -> Tensor:
    """Vary one latent dim at a time from -span to +span around the posterior mean of one example.

    x is one example, (*input_shape) or (1, *input_shape). Returns (len(dims), steps,
    *input_shape); dims defaults to every latent dim.
    """
    vae = _core(model)
    if x.dim() == len(vae.cfg.input_shape):
        x = x.unsqueeze(0)
    mu, _ = vae.encode(x[:1])  # (1, L)
    dims = list(range(vae.cfg.latent_dim)) if dims is None else dims
    values = torch.linspace(-span, span, steps, dtype=mu.dtype, device=mu.device)  # (S,)
    z = mu.expand(len(dims), steps, -1).clone()  # (D, S, L)
    for i, d in enumerate(dims):
        z[i, :, d] = values
    return vae.mean(vae.decode(z))  # (D, S, *input_shape)
