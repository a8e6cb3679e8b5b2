"""The bounds: IWAE >= ELBO and non-decreasing in k, the IS estimate against an exactly integrated
marginal, the per-example anomaly score, β / warm-up / free bits."""

from __future__ import annotations

import math

import pytest
import torch

from vae_core import (
    VAE,
    ModelConfig,
    ObjectiveConfig,
    elbo,
    importance_sampled_nll,
    importance_sampled_terms,
    iwae_bound,
    kl_weight,
    negative_elbo,
    training_loss,
)
from vae_core.distributions import standard_normal_log_prob


def _sharp_model(shape, latent_dim, likelihood="bernoulli", seed=0, scale=3.0, **kw) -> VAE:
    """A small float64 VAE whose decoder depends strongly on z (weights times ``scale``), so the
    bounds differ visibly."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        input_shape=shape,
        latent_dim=latent_dim,
        hidden_sizes=(16,),
        activation="tanh",
        likelihood=likelihood,
        **kw,
    )
    model = VAE(cfg).double()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(scale)
    return model


def test_iwae_is_at_least_elbo_and_non_decreasing_in_k():
    model = _sharp_model((10,), latent_dim=3)
    x = torch.rand(6, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64).round()
    reps = 300  # replicate each example: the bounds are compared in expectation
    x_rep = x.repeat(reps, 1)  # (R*B, D)
    torch.manual_seed(2)
    means, ses = [], []
    with torch.no_grad():
        for k in (1, 5, 50):
            b = iwae_bound(model, x_rep, k).reshape(reps, -1).mean(1)  # (R,) batch means
            means.append(b.mean().item())
            ses.append(b.std().item() / math.sqrt(reps))
        elbo_est = -negative_elbo(model, x_rep).reshape(reps, -1).mean().item()
    # k=1 is the ELBO; each step up in k is larger by many standard errors, not by luck.
    assert abs(means[0] - elbo_est) < 4 * ses[0]
    for lo, hi, se_lo, se_hi in zip(means, means[1:], ses, ses[1:], strict=False):
        assert hi - lo > 4 * math.hypot(se_lo, se_hi), (means, ses)


@pytest.mark.parametrize(
    ("likelihood", "extra"),
    [("bernoulli", {}), ("gaussian", {"gaussian_std": 1.0, "scale": 1.5})],
)
def test_importance_sampled_nll_matches_numerical_integral(likelihood, extra):
    model = _sharp_model((6,), latent_dim=1, likelihood=likelihood, **extra)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 6, generator=gen, dtype=torch.float64)
    x = x.round() if likelihood == "bernoulli" else x
    with torch.no_grad():
        # Exact log p(x) = log ∫ p(x|z) N(z; 0, 1) dz on a fine grid (1-D latent).
        z = torch.linspace(-12, 12, 24_001, dtype=torch.float64)[:, None]  # (G, 1)
        params = model.decode(z)[:, None].expand(-1, 4, 6)  # (G, B, D)
        log_joint = model.log_px_given_z(x, params) + standard_normal_log_prob(z)[:, None]
        exact = torch.logsumexp(log_joint, dim=0) + math.log(z[1, 0] - z[0, 0])  # (B,)
    # Tolerances are ~2x the worst error seen over 20 seeds; a wrong term (a missing log k, the
    # prior or q left out) is off by nats. The larger k shows the estimate converging.
    for k, chunk_size, atol in ((5000, 700, 0.06), (40_000, 4000, 0.025)):
        torch.manual_seed(4)
        estimate = -importance_sampled_nll(model, x, k=k, chunk_size=chunk_size)
        assert estimate.shape == (4,)
        torch.testing.assert_close(estimate, exact, atol=atol, rtol=0)


def test_importance_sampled_nll_is_below_negative_elbo_and_checks_args():
    model = _sharp_model((10,), latent_dim=2)
    x = torch.rand(5, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64).round()
    torch.manual_seed(6)
    nll = importance_sampled_nll(model, x, k=250, chunk_size=100)  # k not a multiple of chunk
    score = negative_elbo(model, x, n_samples=200)
    assert nll.shape == score.shape == (5,)
    assert torch.all(nll <= score)
    with pytest.raises(ValueError, match="chunk_size"):
        importance_sampled_nll(model, x, k=10, chunk_size=0)


def test_sampled_terms_share_their_samples_and_match_the_single_sample_scores():
    model = _sharp_model((10,), latent_dim=2)
    x = torch.rand(5, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64).round()
    torch.manual_seed(7)
    terms = importance_sampled_terms(model, x, k=250, chunk_size=100)
    torch.manual_seed(7)
    assert torch.equal(terms.is_nll, importance_sampled_nll(model, x, k=250, chunk_size=100))
    assert torch.allclose(terms.neg_elbo, terms.reconstruction + terms.kl)
    assert torch.all(terms.is_nll <= terms.neg_elbo)  # Jensen, on average over 250 samples
    torch.manual_seed(8)
    many = negative_elbo(model, x, n_samples=4000)  # the same ELBO, from other samples
    assert torch.allclose(terms.neg_elbo, many, rtol=0.05)


def test_negative_elbo_is_per_example_and_builds_no_graph():
    model = _sharp_model((10,), latent_dim=2)
    x = torch.rand(7, 10, dtype=torch.float64).round()
    score = negative_elbo(model, x)
    assert score.shape == (7,) and not score.requires_grad
    terms = elbo(model, x, ObjectiveConfig(beta=0.1))
    assert terms.neg_elbo.shape == ()


def test_kl_weight_warms_up_linearly():
    cfg = ObjectiveConfig(beta=2.0, kl_warmup_steps=10)
    assert [kl_weight(cfg, s) for s in (0, 5, 10, 50)] == [0.0, 1.0, 2.0, 2.0]
    assert kl_weight(cfg, None) == 2.0
    assert kl_weight(ObjectiveConfig(beta=0.5), 0) == 0.5


def test_beta_and_warmup_change_loss_but_not_neg_elbo():
    model = _sharp_model((10,), latent_dim=3)
    x = torch.rand(8, 10, dtype=torch.float64).round()
    torch.manual_seed(7)
    full = elbo(model, x, ObjectiveConfig())
    torch.manual_seed(7)
    warm = elbo(model, x, ObjectiveConfig(beta=4.0, kl_warmup_steps=100), step=0)
    torch.testing.assert_close(full.loss, full.reconstruction + full.kl)
    torch.testing.assert_close(warm.loss, warm.reconstruction)  # KL weight 0 at step 0
    torch.testing.assert_close(warm.neg_elbo, full.neg_elbo)


def test_free_bits_hold_each_dim_at_the_floor():
    model = _sharp_model((10,), latent_dim=3)
    x = torch.rand(8, 10, dtype=torch.float64).round()
    terms = training_loss(model, x, ObjectiveConfig(free_bits=50.0), step=None)
    # Every dim's KL is far below 50 nats, so the KL term is the constant 3 x 50.
    torch.testing.assert_close(terms.loss, terms.reconstruction + 150.0)
    terms.loss.backward()
    mu_head = model.encoder.net[-1].weight.grad
    assert mu_head is not None  # the reconstruction still trains the encoder


def test_iwae_training_loss_is_minus_the_bound_and_differentiable():
    model = _sharp_model((10,), latent_dim=3)
    x = torch.rand(8, 10, dtype=torch.float64).round()
    terms = training_loss(model, x, ObjectiveConfig(iw_samples=8), step=3)
    assert terms.loss.requires_grad and torch.isfinite(terms.loss)
    terms.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_objectives_sum_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=(1, 28, 28), encoder="conv", latent_dim=8))
    x = torch.rand(4, 1, 28, 28).round()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for cfg in (ObjectiveConfig(), ObjectiveConfig(iw_samples=3)):
            terms = training_loss(model, x, cfg, step=0)
            assert all(t.dtype == torch.float32 and torch.isfinite(t) for t in terms)


def test_negative_elbo_runs_the_forward_once_through_call():
    """The batch encoder hooks the VAE's forward to reuse mu/logvar/z instead of re-encoding."""
    model = VAE(ModelConfig(input_shape=(6,), latent_dim=2, hidden_sizes=(8,)))
    seen = []
    model.register_forward_hook(lambda _m, _i, out: seen.append(out))
    score = negative_elbo(model, torch.rand(3, 6))
    assert len(seen) == 1 and seen[0].mu.shape == (3, 2) and score.shape == (3,)
