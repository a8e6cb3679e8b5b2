"""Diagnostics of a trained VAE that are not objectives."""

from __future__ import annotations

from torch import Tensor


def latent_variances(mu: Tensor) -> Tensor:
    """Variance over the data of each posterior-mean dim: mu (N, L) -> (L,)."""
    if mu.shape[0] < 2:
        return mu.new_zeros(mu.shape[-1])  # one example has no spread (and var() would be NaN)
    return mu.double().var(dim=0).to(mu.dtype)


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Latent dims whose posterior mean varies across the data by more than ``threshold``
    (Burda et al. 2016): mu (N, L), the encoder means of a data set."""
    return int((latent_variances(mu) > threshold).sum())
