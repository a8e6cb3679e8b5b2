"""Frozen configs for the model, the objective and the optimizer.

Declared and checked with ``vae_core.typed_config`` like every vaepipe config section: typed
fields with a docstring each, ranges, strict types (``latent_dim: 2.5`` and ``"3"`` are errors),
unknown keys refused by ``from_dict``. A bad value is a ``ConfigError`` (a ``ValueError``) naming
``ModelConfig.<field>`` (or ``model.<field>`` when loaded as a job section) and the value.
YAML and JSON have no tuples: ``from_dict`` turns lists into tuples, ``to_dict`` back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vae_core.typed_config import ConfigError, TypedConfig, check_key, setting

__all__ = [
    "ConfigError",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "TypedConfig",
    "check_key",
    "setting",
]

Encoder = Literal["mlp", "conv"]
Activation = Literal["relu", "gelu", "silu", "tanh", "elu", "leaky_relu"]
Likelihood = Literal["bernoulli", "gaussian"]
Scheduler = Literal["none", "cosine"]
IwGradient = Literal["iwae", "dreg"]
OutputBiasInit = Literal["default", "data_mean"]


@dataclass(frozen=True)
class ModelConfig(TypedConfig):
    """The VAE's architecture and likelihood."""

    input_shape: tuple[int, ...] = setting((), ge=1)
    """Shape of one sample, e.g. (1, 28, 28) or (64,). () means "filled from the data later";
    the VAE itself rejects an empty shape."""
    latent_dim: int = setting(32, ge=1)
    """Number of latent dimensions."""
    encoder: Encoder = "mlp"
    """Encoder family: "mlp" (any shape, flattened) or "conv" (input_shape (C, H, W))."""
    decoder: Encoder = "mlp"
    """Decoder family, chosen independently of the encoder: "mlp" or "conv"."""
    hidden_sizes: tuple[int, ...] = setting((512,), ge=1)
    """Dense hidden layer widths, input side first. The decoder mirrors them. For conv networks,
    the dense layers between the flattened feature map and the latent."""
    conv_channels: tuple[int, ...] = setting((32, 64), ge=1, min_len=1)
    """Channels of the stride-2 conv layers, input side first. H and W must be divisible by
    2 ** len(conv_channels)."""
    activation: Activation = "relu"
    """Hidden-layer nonlinearity: relu, gelu, silu, tanh, elu or leaky_relu."""
    likelihood: Likelihood = "bernoulli"
    """p(x|z): "bernoulli" on logits (data in [0, 1]) or "gaussian" (real-valued data)."""
    gaussian_std: float = setting(1.0, gt=0)
    """Gaussian likelihood: the fixed std, or the initial std when learn_std is true."""
    learn_std: bool = False
    """Gaussian likelihood: learn one std per feature instead of keeping gaussian_std fixed."""
    output_bias_init: OutputBiasInit = "default"
    """The decoder's output bias at init: "default" (PyTorch's) or "data_mean": the per-feature
    mean of the training data (its clipped logit for Bernoulli), so p(x|z) starts near the data
    and the first steps are not spent learning the background. MLP decoder only; training code
    passes the mean to ``VAE.init_output_bias``."""

    def check(self) -> None:
        if self.learn_std and self.likelihood != "gaussian":
            self.fail("learn_std", "only applies to likelihood 'gaussian'")
        if self.output_bias_init == "data_mean" and self.decoder != "mlp":
            self.fail("output_bias_init", "'data_mean' needs decoder 'mlp' (a per-feature bias)")
        if self.input_shape and "conv" in (self.encoder, self.decoder):
            self._check_conv_shape()

    def _check_conv_shape(self) -> None:
        shape = self.input_shape
        if len(shape) != 3:
            self.fail("input_shape", "conv networks need a (C, H, W) shape")
        factor = 2 ** len(self.conv_channels)
        if shape[1] % factor or shape[2] % factor:
            self.fail(
                "input_shape",
                f"H and W must be divisible by {factor} (2 ** len(conv_channels)) for conv nets",
            )


@dataclass(frozen=True)
class ObjectiveConfig(TypedConfig):
    """The training objective: a β-weighted ELBO with warm-up and free bits, or the IWAE bound."""

    beta: float = setting(1.0, ge=0)
    """Weight of the KL term once warm-up is over (1.0 is the true ELBO)."""
    kl_warmup_steps: int = setting(0, ge=0)
    """KL weight rises linearly from 0 to beta over this many optimizer steps (0: no warm-up)."""
    free_bits: float = setting(0.0, ge=0)
    """Nats per latent dim below which the batch-mean KL of that dim is not penalized (0: off)."""
    iw_samples: int = setting(1, ge=1)
    """Importance samples per example: 1 trains on the ELBO, k > 1 on the IWAE bound."""
    iw_gradient: IwGradient = "iwae"
    """The IWAE bound's gradient estimator (k > 1): "iwae" (plain reparameterization) or
    "dreg" (doubly reparameterized, Tucker et al. 2019: lower-variance encoder gradients,
    whose signal-to-noise ratio does not fall as k grows)."""


@dataclass(frozen=True)
class OptimConfig(TypedConfig):
    """Adam (AdamW when weight_decay > 0), an optional warm-up + cosine schedule, clipping."""

    lr: float = setting(1e-3, gt=0)
    """Peak learning rate."""
    weight_decay: float = setting(0.0, ge=0)
    """Decoupled weight decay (AdamW); 0 uses plain Adam."""
    scheduler: Scheduler = "none"
    """Learning-rate schedule after warm-up: "none" (constant) or "cosine" (to 0 at the end)."""
    warmup_steps: int = setting(0, ge=0)
    """Linear learning-rate warm-up from lr / warmup_steps to lr over this many steps."""
    grad_clip_norm: float | None = setting(None, gt=0)
    """Clip the global gradient norm to this value; None turns clipping off."""
