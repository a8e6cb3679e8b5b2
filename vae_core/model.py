"""The VAE: encoder -> diagonal Gaussian posterior -> reparameterized z -> decoder.

``forward`` returns the parts (posterior parameters, the sample, the decoder's output), never a
loss: the objectives live in ``vae_core.objectives``, the one place they are defined.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from vae_core.config import ModelConfig
from vae_core.distributions import DiagonalGaussian
from vae_core.likelihoods import bernoulli_log_prob, gaussian_log_prob
from vae_core.networks import build_decoder, build_encoder

# Bounds that keep exp() finite in float32 whatever the encoder outputs (std in [3e-7, 2e4]).
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
# A learned likelihood std stops shrinking at exp(-7) ~ 1e-3, so a zero-variance batch cannot
# drive log p(x|z) to +inf.
LOG_STD_MIN, LOG_STD_MAX = -7.0, 7.0
# A Bernoulli output bias starts at logit(mean) with the mean clipped to [1e-3, 1 - 1e-3] (as
# Burda et al.'s IWAE code): an always-0 pixel (MNIST's border) gets -6.9, not -inf.
BIAS_MEAN_CLIP = 1e-3


class VAEOutput(NamedTuple):
    mu: Tensor  # (B, L) posterior mean
    logvar: Tensor  # (B, L) posterior log-variance
    z: Tensor  # (B, L), or (K, B, L) with n_samples=K
    x_params: Tensor  # (B, *input_shape), or (K, B, *input_shape): logits or means


class VAE(nn.Module):
    log_std: Tensor | None

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if not cfg.input_shape:
            raise ValueError(
                "ModelConfig.input_shape=(): the VAE needs the sample shape; fill it from the "
                "data layout (dataclasses.replace(cfg, input_shape=...)) before building the model"
            )
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.decoder = build_decoder(cfg)
        # Gaussian likelihood: one log-std per feature, a parameter if learned, else a buffer.
        init = torch.full(cfg.input_shape, math.log(cfg.gaussian_std))  # (*input_shape)
        if cfg.likelihood != "gaussian":
            self.log_std = None
        elif cfg.learn_std:
            self.log_std = nn.Parameter(init)
        else:
            self.register_buffer("log_std", init)

    @torch.no_grad()
    def init_output_bias(self, data_mean: Tensor) -> None:
        """Set the decoder's output bias from the training data's per-feature mean (the
        model-input space, ``(*input_shape)``): its clipped logit for Bernoulli, the mean itself
        for Gaussian. Only for ``output_bias_init="data_mean"``; call before training."""
        if self.cfg.output_bias_init != "data_mean":
            raise ValueError("init_output_bias: the model's output_bias_init is not 'data_mean'")
        if tuple(data_mean.shape) != tuple(self.cfg.input_shape):
            raise ValueError(
                f"init_output_bias: data_mean has shape {tuple(data_mean.shape)}, "
                f"the model's input_shape is {tuple(self.cfg.input_shape)}"
            )
        target = data_mean.detach().to(torch.float32).flatten()  # (D,)
        if self.log_std is None:
            target = torch.logit(target.clamp(BIAS_MEAN_CLIP, 1.0 - BIAS_MEAN_CLIP))
        bias = self.decoder.output_layer.bias
        bias.copy_(target.to(bias.device))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, *input_shape) -> (mu, logvar), each (B, L)."""
        mu, logvar = self.encoder(x)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: Tensor) -> Tensor:
        """z (..., B, L) -> likelihood parameters (..., B, *input_shape)."""
        if z.dim() == 2:
            return self.decoder(z)
        lead = z.shape[:-1]  # (K, B)
        out = self.decoder(z.reshape(-1, z.shape[-1]))  # (K*B, *input_shape)
        return out.reshape(*lead, *out.shape[1:])

    def forward(self, x: Tensor, n_samples: int | None = None) -> VAEOutput:
        """Encode, sample z by reparameterization, decode. n_samples=K draws K z per example."""
        mu, logvar = self.encode(x)  # (B, L)
        z = DiagonalGaussian(mu, logvar).rsample(n_samples)  # (B, L) or (K, B, L)
        return VAEOutput(mu, logvar, z, self.decode(z))

    def log_px_given_z(self, x: Tensor, x_params: Tensor) -> Tensor:
        """log p(x|z) in nats, summed over features.

        x (B, *input_shape), x_params (..., B, *input_shape) -> (..., B).
        """
        if x_params.dtype in (torch.float16, torch.bfloat16):
            x_params = x_params.float()  # autocast output: sum the nats in float32
        if self.log_std is None:
            return bernoulli_log_prob(x_params, x)
        return gaussian_log_prob(x_params, self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX), x)

    def mean(self, x_params: Tensor) -> Tensor:
        """The data-space mean of p(x|z): sigmoid(logits) for Bernoulli, the mean for Gaussian."""
        return torch.sigmoid(x_params) if self.log_std is None else x_params
