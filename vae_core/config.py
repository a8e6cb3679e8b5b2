"""Frozen configs for the model, the objective and the optimizer.

Every field has a docstring; ``__post_init__`` rejects bad values with a ``ValueError`` that names
the field and the value. ``from_dict`` rejects unknown keys (a typo in a YAML file is an error,
never a silently ignored setting) and turns lists into tuples, since YAML and JSON have no tuples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

ENCODERS = ("mlp", "conv")
DECODERS = ("mlp", "conv")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "elu", "leaky_relu")
LIKELIHOODS = ("bernoulli", "gaussian")
SCHEDULERS = ("none", "cosine")

C = TypeVar("C", bound="_Config")


def _fail(cls_name: str, field: str, value: Any, why: str) -> None:
    raise ValueError(f"{cls_name}.{field}={value!r}: {why}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Config:
    """Shared ``from_dict``/``to_dict`` and checking helpers for the config dataclasses."""

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown key(s) {unknown}; known keys are {sorted(known)}"
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (tuples become lists), ready for JSON or YAML."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def _check(self, field: str, ok: bool, why: str) -> None:
        if not ok:
            _fail(type(self).__name__, field, getattr(self, field), why)

    def _as_int_tuple(self, field: str, allow_empty: bool) -> None:
        """Accept a list or tuple of positive ints; store a tuple (the dataclass is frozen)."""
        v = getattr(self, field)
        self._check(field, isinstance(v, (list, tuple)), "must be a list of positive integers")
        self._check(field, all(_is_int(d) and d > 0 for d in v), "entries must be positive ints")
        self._check(field, allow_empty or len(v) > 0, "must not be empty")
        object.__setattr__(self, field, tuple(v))


@dataclass(frozen=True)
class ModelConfig(_Config):
    """The VAE's architecture and likelihood."""

    input_shape: tuple[int, ...] = ()
    """Shape of one sample, e.g. (1, 28, 28) or (64,). () means "filled from the data later";
    the VAE itself rejects an empty shape."""
    latent_dim: int = 32
    """Number of latent dimensions."""
    encoder: str = "mlp"
    """Encoder family: "mlp" (any shape, flattened) or "conv" (input_shape (C, H, W))."""
    decoder: str = "mlp"
    """Decoder family, chosen independently of the encoder: "mlp" or "conv"."""
    hidden_sizes: tuple[int, ...] = (512,)
    """Dense hidden layer widths, input side first. The decoder mirrors them. For conv networks,
    the dense layers between the flattened feature map and the latent."""
    conv_channels: tuple[int, ...] = (32, 64)
    """Channels of the stride-2 conv layers, input side first. H and W must be divisible by
    2 ** len(conv_channels)."""
    activation: str = "relu"
    """Hidden-layer nonlinearity: relu, gelu, silu, tanh, elu or leaky_relu."""
    likelihood: str = "bernoulli"
    """p(x|z): "bernoulli" on logits (data in [0, 1]) or "gaussian" (real-valued data)."""
    gaussian_std: float = 1.0
    """Gaussian likelihood: the fixed std, or the initial std when learn_std is true."""
    learn_std: bool = False
    """Gaussian likelihood: learn one std per feature instead of keeping gaussian_std fixed."""

    def __post_init__(self) -> None:
        self._as_int_tuple("input_shape", allow_empty=True)
        self._as_int_tuple("hidden_sizes", allow_empty=True)
        self._as_int_tuple("conv_channels", allow_empty=False)
        self._check("latent_dim", _is_int(self.latent_dim) and self.latent_dim > 0, "must be > 0")
        self._check("encoder", self.encoder in ENCODERS, f"must be one of {ENCODERS}")
        self._check("decoder", self.decoder in DECODERS, f"must be one of {DECODERS}")
        self._check("activation", self.activation in ACTIVATIONS, f"must be one of {ACTIVATIONS}")
        self._check("likelihood", self.likelihood in LIKELIHOODS, f"must be one of {LIKELIHOODS}")
        ok_std = _is_number(self.gaussian_std) and self.gaussian_std > 0
        self._check("gaussian_std", ok_std, "must be a number > 0")
        self._check("learn_std", isinstance(self.learn_std, bool), "must be true or false")
        self._check(
            "learn_std",
            not (self.learn_std and self.likelihood != "gaussian"),
            "only applies to likelihood 'gaussian'",
        )
        if self.input_shape and "conv" in (self.encoder, self.decoder):
            self._check_conv_shape()

    def _check_conv_shape(self) -> None:
        shape = self.input_shape
        self._check("input_shape", len(shape) == 3, "conv networks need a (C, H, W) shape")
        factor = 2 ** len(self.conv_channels)
        self._check(
            "input_shape",
            shape[1] % factor == 0 and shape[2] % factor == 0,
            f"H and W must be divisible by {factor} (2 ** len(conv_channels)) for conv networks",
        )


@dataclass(frozen=True)
class ObjectiveConfig(_Config):
    """The training objective: a β-weighted ELBO with warm-up and free bits, or the IWAE bound."""

    beta: float = 1.0
    """Weight of the KL term once warm-up is over (1.0 is the true ELBO)."""
    kl_warmup_steps: int = 0
    """KL weight rises linearly from 0 to beta over this many optimizer steps (0: no warm-up)."""
    free_bits: float = 0.0
    """Nats per latent dim below which the batch-mean KL of that dim is not penalized (0: off)."""
    iw_samples: int = 1
    """Importance samples per example: 1 trains on the ELBO, k > 1 on the IWAE bound."""

    def __post_init__(self) -> None:
        self._check("beta", _is_number(self.beta) and self.beta >= 0, "must be a number >= 0")
        ok_warm = _is_int(self.kl_warmup_steps) and self.kl_warmup_steps >= 0
        self._check("kl_warmup_steps", ok_warm, "must be an int >= 0")
        ok_fb = _is_number(self.free_bits) and self.free_bits >= 0
        self._check("free_bits", ok_fb, "must be a number >= 0")
        self._check("iw_samples", _is_int(self.iw_samples) and self.iw_samples >= 1, "must be >= 1")


@dataclass(frozen=True)
class OptimConfig(_Config):
    """Adam (AdamW when weight_decay > 0), an optional warm-up + cosine schedule, clipping."""

    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW); 0 uses plain Adam."""
    scheduler: str = "none"
    """Learning-rate schedule after warm-up: "none" (constant) or "cosine" (to 0 at the end)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up from lr / warmup_steps to lr over this many steps."""
    grad_clip_norm: float | None = None
    """Clip the global gradient norm to this value; None turns clipping off."""

    def __post_init__(self) -> None:
        self._check("lr", _is_number(self.lr) and self.lr > 0, "must be a number > 0")
        ok_wd = _is_number(self.weight_decay) and self.weight_decay >= 0
        self._check("weight_decay", ok_wd, "must be a number >= 0")
        self._check("scheduler", self.scheduler in SCHEDULERS, f"must be one of {SCHEDULERS}")
        ok_warm = _is_int(self.warmup_steps) and self.warmup_steps >= 0
        self._check("warmup_steps", ok_warm, "must be an int >= 0")
        clip = self.grad_clip_norm
        ok_clip = clip is None or (_is_number(clip) and clip > 0)
        self._check("grad_clip_norm", ok_clip, "must be null or a number > 0")
