"""Shapes of every encoder/decoder pairing, and the distribution pieces."""

from __future__ import annotations

import pytest
import torch

from vae_core import VAE, DiagonalGaussian, ModelConfig, build_decoder, build_encoder
from vae_core.distributions import standard_normal_log_prob

IMAGE_SHAPES = [(1, 28, 28), (1, 64, 64), (3, 32, 32)]
PAIRS = [("mlp", "mlp"), ("mlp", "conv"), ("conv", "mlp"), ("conv", "conv")]


def _cfg(shape, encoder="mlp", decoder="mlp", **kw) -> ModelConfig:
    kw.setdefault("hidden_sizes", (32,))
    kw.setdefault("conv_channels", (4, 8))
    return ModelConfig(input_shape=shape, latent_dim=5, encoder=encoder, decoder=decoder, **kw)


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize(("encoder", "decoder"), PAIRS)
def test_image_networks_shapes(shape, encoder, decoder):
    cfg = _cfg(shape, encoder, decoder)
    x = torch.rand(3, *shape)
    mu, logvar = build_encoder(cfg)(x)
    assert mu.shape == logvar.shape == (3, 5)
    assert build_decoder(cfg)(mu).shape == (3, *shape)
    out = VAE(cfg)(x)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 5)
    assert out.x_params.shape == (3, *shape)


@pytest.mark.parametrize("shape", [(1, 8, 8), (64,), (7,)])
def test_mlp_shapes_for_small_and_tabular_inputs(shape):
    model = VAE(_cfg(shape, hidden_sizes=(16, 8), activation="gelu"))
    out = model(torch.rand(4, *shape), n_samples=6)
    assert out.mu.shape == (4, 5)
    assert out.z.shape == (6, 4, 5)
    assert out.x_params.shape == (6, 4, *shape)
    assert model.log_px_given_z(torch.rand(4, *shape), out.x_params).shape == (6, 4)


def test_conv_decoder_accepts_sample_dim():
    model = VAE(_cfg((1, 28, 28), "conv", "conv"))
    out = model(torch.rand(2, 1, 28, 28), n_samples=3)
    assert out.x_params.shape == (3, 2, 1, 28, 28)


def test_mlp_without_hidden_layers_is_linear():
    model = VAE(_cfg((10,), hidden_sizes=()))
    assert sum(isinstance(m, torch.nn.Linear) for m in model.modules()) == 2


def test_analytic_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    logvar = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    q = DiagonalGaussian(mu, logvar)
    torch.manual_seed(0)
    z = q.rsample(200_000)  # (N, 3, 4)
    samples = q.log_prob(z) - standard_normal_log_prob(z)  # (N, 3)
    mc, se = samples.mean(0), samples.std(0) / samples.shape[0] ** 0.5
    analytic = q.kl_to_standard_normal()
    assert analytic.shape == (3,)
    assert torch.all((mc - analytic).abs() < 4 * se + 1e-3), (mc, analytic, se)


def test_log_prob_matches_torch_distributions():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    z = torch.randn(5, 3)
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(DiagonalGaussian(mu, logvar).log_prob(z), ref)


def test_gradients_reach_encoder_through_the_sample():
    torch.manual_seed(0)
    model = VAE(_cfg((12,)))
    x = torch.rand(8, 12).round()
    out = model(x)
    # Reconstruction only: with no KL term the encoder's only path to the loss is z = mu + std*eps.
    (-model.log_px_given_z(x, out.x_params).mean()).backward()
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
