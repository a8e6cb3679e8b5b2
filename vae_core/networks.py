"""Encoders and decoders: MLP and convolutional, swappable independently.

Every encoder maps x (B, *input_shape) to (mu, logvar), each (B, L); every decoder maps
z (B, L) to the likelihood's parameters (B, *input_shape) (logits or means). Conv networks halve
H and W with each stride-2 layer of ``conv_channels`` and mirror that with transposed convs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from vae_core.config import ModelConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def mlp(sizes: Sequence[int], activation: str, final_activation: bool = False) -> nn.Sequential:
    """Linear layers through ``sizes`` with ``activation`` between them (and after the last
    one only if ``final_activation``)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _conv_feature_shape(cfg: ModelConfig) -> tuple[int, int, int]:
    """(C, H, W) of the feature map after the encoder's stride-2 convs."""
    _, h, w = cfg.input_shape
    factor = 2 ** len(cfg.conv_channels)
    return cfg.conv_channels[-1], h // factor, w // factor


class MLPEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n_in = math.prod(cfg.input_shape)
        self.net = mlp([n_in, *cfg.hidden_sizes, 2 * cfg.latent_dim], cfg.activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(x.flatten(1))  # (B, 2L)
        mu, logvar = h.chunk(2, dim=-1)  # (B, L) each
        return mu, logvar


class MLPDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.output_shape = cfg.input_shape
        n_out = math.prod(cfg.input_shape)
        self.net = mlp([cfg.latent_dim, *reversed(cfg.hidden_sizes), n_out], cfg.activation)

    @property
    def output_layer(self) -> nn.Linear:
        """The last Linear: its bias is one value per output feature (flattened order)."""
        return self.net[-1]

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).unflatten(1, self.output_shape)  # (B, *input_shape)


class ConvEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = cfg.input_shape[0]
        for c_out in cfg.conv_channels:
            # kernel 4, stride 2, padding 1 halves H and W exactly (they are divisible by 2).
            layers += [
                nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
                _ACTIVATIONS[cfg.activation](),
            ]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        n_flat = math.prod(_conv_feature_shape(cfg))
        self.head = mlp([n_flat, *cfg.hidden_sizes, 2 * cfg.latent_dim], cfg.activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.convs(x)  # (B, C', H', W')
        h = self.head(h.flatten(1))  # (B, 2L)
        mu, logvar = h.chunk(2, dim=-1)  # (B, L) each
        return mu, logvar


class ConvDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.feature_shape = _conv_feature_shape(cfg)
        sizes = [cfg.latent_dim, *reversed(cfg.hidden_sizes), math.prod(self.feature_shape)]
        self.head = mlp(sizes, cfg.activation, final_activation=True)
        layers: list[nn.Module] = []
        channels = [*reversed(cfg.conv_channels), cfg.input_shape[0]]
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))  # doubles H, W
            if i < len(channels) - 2:  # no activation on the output: logits or means
                layers.append(_ACTIVATIONS[cfg.activation]())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.head(z).unflatten(1, self.feature_shape)  # (B, C', H', W')
        return self.deconvs(h)  # (B, C, H, W)


def build_encoder(cfg: ModelConfig) -> nn.Module:
    """The encoder ``cfg.encoder`` names: x (B, *input_shape) -> (mu, logvar), each (B, L)."""
    return ConvEncoder(cfg) if cfg.encoder == "conv" else MLPEncoder(cfg)


def build_decoder(cfg: ModelConfig) -> nn.Module:
    """The decoder ``cfg.decoder`` names: z (B, L) -> likelihood parameters (B, *input_shape)."""
    return ConvDecoder(cfg) if cfg.decoder == "conv" else MLPDecoder(cfg)
