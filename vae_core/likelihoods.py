"""log p(x|z) for the decoder's output, per example, summed over features, in nats.

Both functions take the data ``x`` as (B, *event) and the decoder's parameters as
(..., B, *event): extra leading dims (importance samples) broadcast against ``x``. The result
drops the event dims: (..., B).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _sum_event(values: Tensor, event_ndim: int) -> Tensor:
    """Sum the trailing ``event_ndim`` dims: (..., B, *event) -> (..., B)."""
    return values.sum(dim=tuple(range(-event_ndim, 0))) if event_ndim else values


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """log Bernoulli(x; sigmoid(logits)) for x in [0, 1] (fractional x: the same cross-entropy).

    Uses BCE-with-logits, x * l - softplus(l), which stays finite when the logits saturate;
    log(sigmoid(l)) would give -inf (and NaN gradients) there.
    """
    event_ndim = x.dim() - 1
    nll = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return -_sum_event(nll, event_ndim)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, x: Tensor) -> Tensor:
    """log N(x; mean, exp(log_std)^2); log_std broadcasts to mean (scalar or per-feature)."""
    event_ndim = x.dim() - 1
    scaled = (x - mean) * torch.exp(-log_std)
    return _sum_event(-0.5 * scaled.pow(2) - log_std - _HALF_LOG_2PI, event_ndim)
