"""The objectives, and only here: the ELBO (β, KL warm-up, free bits), the IWAE bound, the
importance-sampled log-likelihood and the per-example negative ELBO (the anomaly score).

All values are in nats. ``model`` may be a ``VAE`` or a wrapper around one that forwards
``model(x, n_samples)`` (``DistributedDataParallel``): the training path always calls the wrapper,
so its gradient synchronisation runs; ``.module`` is reached only for the likelihood's parameters
and for no-grad evaluation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from vae_core.config import ObjectiveConfig
from vae_core.distributions import DiagonalGaussian, standard_normal_log_prob
from vae_core.model import VAE, VAEOutput


class ElboTerms(NamedTuple):
    """Batch means, in nats (scalars)."""

    loss: Tensor  # what the optimizer minimizes (β, warm-up and free bits applied; or -IWAE)
    reconstruction: Tensor  # -log p(x|z)
    kl: Tensor  # KL(q(z|x) || p(z))
    neg_elbo: Tensor  # reconstruction + kl: the true negative ELBO, whatever β is

    def detach(self) -> ElboTerms:
        return ElboTerms(*(t.detach() for t in self))


def _core(model: nn.Module) -> VAE:
    """The VAE inside a DDP-style wrapper (or the model itself)."""
    return getattr(model, "module", model)


def _f32(t: Tensor) -> Tensor:
    """Objective arithmetic in at least float32: under autocast the networks may emit bf16/fp16,
    where a KL or log-weight sum loses whole nats."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _posterior(out: VAEOutput) -> DiagonalGaussian:
    return DiagonalGaussian(_f32(out.mu), _f32(out.logvar))


def kl_weight(cfg: ObjectiveConfig, step: int | None) -> float:
    """β, ramped linearly from 0 over ``kl_warmup_steps``; step=None means warm-up is over."""
    if step is None or cfg.kl_warmup_steps == 0:
        return cfg.beta
    return cfg.beta * min(1.0, step / cfg.kl_warmup_steps)


def _kl_penalty(kl_per_dim: Tensor, free_bits: float) -> Tensor:
    """The KL term the loss sees: per-dim batch-mean KL, each held at >= free_bits nats."""
    per_dim = kl_per_dim.mean(0)  # (L,)
    if free_bits > 0:
        # Below free_bits a dim's KL costs a constant, so the gradient no longer pushes it to 0.
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


def elbo(
    model: nn.Module, x: Tensor, cfg: ObjectiveConfig | None = None, step: int | None = None
) -> ElboTerms:
    """Single-sample ELBO terms for a batch x (B, *input_shape)."""
    cfg = cfg or ObjectiveConfig()
    out = model(x)
    rec = -_core(model).log_px_given_z(x, out.x_params)  # (B,)
    kl_per_dim = _posterior(out).kl_per_dim()  # (B, L)
    rec_mean = rec.mean()
    kl_mean = kl_per_dim.sum(-1).mean()
    neg = rec_mean + kl_mean
    weight = kl_weight(cfg, step)
    if weight == 1.0 and cfg.free_bits == 0:
        return ElboTerms(neg, rec_mean, kl_mean, neg)  # the plain ELBO: no extra ops per step
    penalty = _kl_penalty(kl_per_dim, cfg.free_bits) if cfg.free_bits > 0 else kl_mean
    return ElboTerms(rec_mean + weight * penalty, rec_mean, kl_mean, neg)


def _log_weights(model: nn.Module, x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """log p(x|z_i), log p(z_i) - log q(z_i|x) for k reparameterized samples: (k, B) each,
    plus the analytic KL (B,)."""
    out = model(x, n_samples=k)  # z (k, B, L)
    q, z = _posterior(out), _f32(out.z)
    log_px = _core(model).log_px_given_z(x, out.x_params)  # (k, B)
    log_prior_ratio = standard_normal_log_prob(z) - q.log_prob(z)  # (k, B)
    return log_px, log_prior_ratio, q.kl_to_standard_normal()


def iwae_bound(model: nn.Module, x: Tensor, k: int) -> Tensor:
    """The IWAE bound log (1/k) sum_i p(x, z_i) / q(z_i|x) per example (B,); k=1 is the ELBO.

    Differentiable (reparameterized), so it can be trained on; logsumexp keeps it stable.
    """
    log_px, log_prior_ratio, _ = _log_weights(model, x, k)
    return torch.logsumexp(log_px + log_prior_ratio, dim=0) - math.log(k)  # (B,)


def _iwae_terms(model: nn.Module, x: Tensor, k: int) -> ElboTerms:
    log_px, log_prior_ratio, kl = _log_weights(model, x, k)
    bound = torch.logsumexp(log_px + log_prior_ratio, dim=0) - math.log(k)  # (B,)
    rec_mean = -log_px.mean()  # averaged over the k samples and the batch
    kl_mean = kl.mean()
    return ElboTerms(-bound.mean(), rec_mean, kl_mean, rec_mean + kl_mean)


def _dreg_terms(model: nn.Module, x: Tensor, k: int) -> ElboTerms:
    """The IWAE bound with doubly reparameterized gradients (Tucker et al. 2019).

    Encoder gradient: sum_i w_i^2 d/dz_i log w_i dz_i/dphi, with q's own parameters held fixed
    inside log q(z_i|x) (their score-function term has zero mean and is the noise DReG
    removes); decoder gradient: the IWAE one, sum_i w_i d/dtheta log w_i. Both come from one
    backward pass: the surrogate sum_i w_i log w_i gives the decoder's, and a hook scales the
    gradient reaching z_i by w_i once more for the encoder's (z is its only path to the
    encoder). The loss *value* is the IWAE bound.
    """
    out = model(x, n_samples=k)  # z (k, B, L)
    q, z = _posterior(out), _f32(out.z)
    q_fixed = DiagonalGaussian(q.mu.detach(), q.logvar.detach())
    log_px = _core(model).log_px_given_z(x, out.x_params)  # (k, B)
    log_w = log_px + standard_normal_log_prob(z) - q_fixed.log_prob(z)  # (k, B)
    weights = torch.softmax(log_w.detach(), dim=0)  # (k, B): normalized importance weights
    if z.requires_grad:
        z.register_hook(lambda grad: grad * weights.unsqueeze(-1).to(grad.dtype))
    surrogate = (weights * log_w).sum(0)  # (B,)
    bound = torch.logsumexp(log_w.detach(), dim=0) - math.log(k)  # (B,)
    # Value of -bound, gradient of -surrogate.
    loss = -(bound + surrogate - surrogate.detach()).mean()
    rec_mean = -log_px.detach().mean()
    kl_mean = q.kl_to_standard_normal().detach().mean()
    return ElboTerms(loss, rec_mean, kl_mean, rec_mean + kl_mean)


def training_loss(
    model: nn.Module, x: Tensor, cfg: ObjectiveConfig, step: int | None = None
) -> ElboTerms:
    """The objective ``cfg`` names: the ELBO (iw_samples=1) or the IWAE bound (iw_samples>1).

    β, warm-up and free bits shape the ELBO only; the IWAE loss is the plain bound, its
    gradient estimated as ``cfg.iw_gradient`` says.
    """
    if cfg.iw_samples == 1:
        return elbo(model, x, cfg, step)
    if cfg.iw_gradient == "dreg":
        return _dreg_terms(model, x, cfg.iw_samples)
    return _iwae_terms(model, x, cfg.iw_samples)


@torch.no_grad()
def negative_elbo(model: nn.Module, x: Tensor, n_samples: int = 1) -> Tensor:
    """Per-example negative ELBO in nats (B,): the anomaly score. No β, no warm-up, no free bits;
    the reconstruction term is averaged over ``n_samples`` posterior samples."""
    out = _core(model)(x, n_samples=None if n_samples == 1 else n_samples)
    log_px = _core(model).log_px_given_z(x, out.x_params)  # (B,) or (n, B)
    if n_samples > 1:
        log_px = log_px.mean(0)
    kl = _posterior(out).kl_to_standard_normal()  # (B,)
    return kl - log_px


class SampledTerms(NamedTuple):
    """Per-example figures from k samples of q(z|x), in nats: each (B,)."""

    neg_elbo: Tensor  # reconstruction + kl
    reconstruction: Tensor  # -log p(x|z) averaged over the k samples
    kl: Tensor  # analytic KL(q(z|x) || p(z))
    is_nll: Tensor  # -log (1/k) sum_i p(x, z_i) / q(z_i|x)


@torch.no_grad()
def importance_sampled_terms(
    model: nn.Module, x: Tensor, k: int = 5000, chunk_size: int = 100
) -> SampledTerms:
    """The k-sample IS-NLL and, from the same samples, the ELBO's terms, per example.

    Samples are drawn ``chunk_size`` at a time and merged with a running logsumexp, so memory is
    about chunk_size x B x prod(input_shape) floats whatever k is.
    """
    if k < 1 or chunk_size < 1:
        raise ValueError(f"importance_sampled_nll: k={k} and chunk_size={chunk_size} must be >= 1")
    vae = _core(model)
    q = DiagonalGaussian(*(_f32(t) for t in vae.encode(x)))  # (B, L)
    chunk_lse, log_px_sum = [], torch.zeros(x.shape[0], device=x.device)
    for start in range(0, k, chunk_size):
        z = q.rsample(min(chunk_size, k - start))  # (c, B, L)
        log_px = _f32(vae.log_px_given_z(x, vae.decode(z)))  # (c, B)
        log_w = log_px + standard_normal_log_prob(z) - q.log_prob(z)
        chunk_lse.append(torch.logsumexp(log_w, dim=0))  # (B,)
        log_px_sum += log_px.sum(0)
    is_nll = math.log(k) - torch.logsumexp(torch.stack(chunk_lse), dim=0)  # (B,)
    rec, kl = -log_px_sum / k, q.kl_to_standard_normal()
    return SampledTerms(rec + kl, rec, kl, is_nll)


def importance_sampled_nll(
    model: nn.Module, x: Tensor, k: int = 5000, chunk_size: int = 100
) -> Tensor:
    """-log p(x) per example (B,), estimated with k importance samples from q(z|x)."""
    return importance_sampled_terms(model, x, k, chunk_size).is_nll
