"""Likelihoods in nats, stable at saturation; no NaN/inf on extreme inputs or constant batches."""

from __future__ import annotations

import math

import torch

from vae_core import (
    VAE,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    active_units,
    bernoulli_log_prob,
    build_optimizer,
    gaussian_log_prob,
    negative_elbo,
    train_step,
)


def test_bernoulli_matches_definition_on_moderate_logits():
    logits = torch.randn(4, 3, 5, dtype=torch.float64)
    x = torch.rand(4, 3, 5, dtype=torch.float64).round()
    p = torch.sigmoid(logits)
    ref = (x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2))
    torch.testing.assert_close(bernoulli_log_prob(logits, x), ref)


def test_bernoulli_is_finite_and_exact_when_logits_saturate():
    logits = torch.tensor([[1e4, -1e4, 200.0, -200.0]], requires_grad=True)
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    lp = bernoulli_log_prob(logits, x)
    # Right with certainty costs 0 nats; wrong by a logit of 200 costs 200 nats each.
    torch.testing.assert_close(lp, torch.tensor([-400.0]))
    lp.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_bernoulli_broadcasts_over_sample_dim():
    logits, x = torch.randn(7, 4, 6), torch.rand(4, 6)
    lp = bernoulli_log_prob(logits, x)
    assert lp.shape == (7, 4)
    torch.testing.assert_close(lp[3], bernoulli_log_prob(logits[3], x))


def test_gaussian_matches_torch_distributions():
    mean, x = torch.randn(4, 6), torch.randn(4, 6)
    log_std = torch.randn(6)
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, x), ref)
    scalar = gaussian_log_prob(mean, torch.tensor(0.0), x)
    torch.testing.assert_close(scalar, -0.5 * ((x - mean) ** 2).sum(-1) - 3 * math.log(2 * math.pi))


def test_extreme_encoder_outputs_stay_finite():
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=(10,), latent_dim=3, hidden_sizes=(8,)))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e4)  # logits and logvars in the 1e8 range
    x = torch.rand(6, 10).round()
    opt = build_optimizer(model, OptimConfig())
    terms = train_step(model, x, opt, ObjectiveConfig(), step=0, grad_clip_norm=1.0)
    assert all(torch.isfinite(t) for t in terms)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(negative_elbo(model, x)).all()


def test_zero_variance_batch_stays_finite_with_learned_std():
    torch.manual_seed(0)
    cfg = ModelConfig(
        input_shape=(5,),
        latent_dim=2,
        hidden_sizes=(16,),
        likelihood="gaussian",
        gaussian_std=0.01,
        learn_std=True,
    )
    model = VAE(cfg)
    x = torch.full((32, 5), 0.25)  # every example identical: zero variance per feature
    opt = build_optimizer(model, OptimConfig(lr=0.2))
    for step in range(40):
        terms = train_step(model, x, opt, ObjectiveConfig(iw_samples=1 + step % 2), step)
    assert all(torch.isfinite(t) for t in terms)
    with torch.no_grad():
        model.log_std.fill_(-50.0)  # where an unbounded std would head on constant data
    terms = train_step(model, x, opt, ObjectiveConfig(), step=40)
    assert all(torch.isfinite(t) for t in terms)
    with torch.no_grad():
        mu, _ = model.encode(x)
    assert active_units(mu) == 0  # no spread across a constant batch, and no NaN
    assert torch.isfinite(negative_elbo(model, x)).all()
