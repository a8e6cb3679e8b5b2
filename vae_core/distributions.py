"""The diagonal Gaussian posterior q(z|x) and the standard-normal prior, in closed form."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over the last dim: (..., L) -> (...)."""
    return -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)


class DiagonalGaussian:
    """N(mu, diag(exp(logvar))) over the last dim; mu and logvar are (B, L)."""

    def __init__(self, mu: Tensor, logvar: Tensor) -> None:
        self.mu = mu  # (B, L)
        self.logvar = logvar  # (B, L)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)  # (B, L)

    def rsample(self, n: int | None = None) -> Tensor:
        """Reparameterized sample mu + std * eps, so gradients reach mu and logvar.

        n=None gives (B, L); an int n gives n samples per example, (n, B, L).
        """
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z), summed over the latent dim: z (..., B, L) -> (..., B)."""
        return -0.5 * (((z - self.mu) ** 2) * torch.exp(-self.logvar) + self.logvar + _LOG_2PI).sum(
            -1
        )

    def kl_per_dim(self) -> Tensor:
        """KL(q || N(0, I)) per latent dim, in nats: (B, L)."""
        return 0.5 * (self.mu.pow(2) + torch.exp(self.logvar) - 1.0 - self.logvar)

    def kl_to_standard_normal(self) -> Tensor:
        """KL(q || N(0, I)) summed over the latent dim, in nats: (B,)."""
        return self.kl_per_dim().sum(-1)
