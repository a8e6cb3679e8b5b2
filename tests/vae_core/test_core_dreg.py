"""DReG (doubly reparameterized IWAE gradients): the same bound and decoder gradient as IWAE on
the same samples, the encoder gradient of its definition, unbiased, with less variance."""

from __future__ import annotations

import torch

from vae_core import VAE, ModelConfig, ObjectiveConfig, training_loss
from vae_core.distributions import DiagonalGaussian, standard_normal_log_prob

K = 8
IWAE = ObjectiveConfig(iw_samples=K)
DREG = ObjectiveConfig(iw_samples=K, iw_gradient="dreg")


def _model() -> VAE:
    torch.manual_seed(0)
    cfg = ModelConfig(input_shape=(10,), latent_dim=3, hidden_sizes=(16,), activation="tanh")
    model = VAE(cfg).double()
    with torch.no_grad():  # a decoder that depends strongly on z, so the weights are uneven
        for p in model.decoder.parameters():
            p.mul_(3.0)
    return model


def _x() -> torch.Tensor:
    return torch.rand(
        6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    ).round()


def _grads(model: VAE, cfg: ObjectiveConfig, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    torch.manual_seed(seed)
    terms = training_loss(model, _x(), cfg)
    terms.loss.backward()
    return terms.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _encoder_names(model: VAE) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.startswith("encoder.")]


def test_dreg_has_the_iwae_value_and_decoder_gradient_on_the_same_samples():
    model = _model()
    iwae_loss, iwae = _grads(model, IWAE, seed=5)
    dreg_loss, dreg = _grads(model, DREG, seed=5)
    assert abs(iwae_loss - dreg_loss) < 1e-10
    decoder = [n for n in iwae if n.startswith("decoder.")]
    assert decoder
    for name in decoder:
        torch.testing.assert_close(dreg[name], iwae[name], rtol=1e-9, atol=1e-12)
    encoder = _encoder_names(model)
    assert any(not torch.allclose(dreg[n], iwae[n]) for n in encoder)


def test_dreg_encoder_gradient_is_the_squared_weight_surrogate_with_q_held_fixed():
    model = _model()
    _, dreg = _grads(model, DREG, seed=7)
    # The definition, written out: sum_i w_i^2 log w_i with q's parameters fixed in log q.
    torch.manual_seed(7)
    x = _x()
    out = model(x, n_samples=K)
    q_fixed = DiagonalGaussian(out.mu.detach(), out.logvar.detach())
    log_w = model.log_px_given_z(x, out.x_params) + standard_normal_log_prob(out.z)
    log_w = log_w - q_fixed.log_prob(out.z)  # (K, B)
    w = torch.softmax(log_w.detach(), dim=0)
    surrogate = -(w**2 * log_w).sum(0).mean()
    names = _encoder_names(model)
    params = dict(model.named_parameters())
    expected = torch.autograd.grad(surrogate, [params[n] for n in names])
    for name, grad in zip(names, expected, strict=True):
        torch.testing.assert_close(dreg[name], grad, rtol=1e-9, atol=1e-12)


def test_dreg_encoder_gradient_is_unbiased_and_less_noisy_than_iwae():
    model = _model()
    name = _encoder_names(model)[0]

    def draws(cfg: ObjectiveConfig) -> torch.Tensor:
        return torch.stack([_grads(model, cfg, seed)[1][name].flatten() for seed in range(600)])

    iwae, dreg = draws(IWAE), draws(DREG)  # (600, P) each
    stderr = ((iwae.var(0) + dreg.var(0)) / len(iwae)).sqrt()
    noisy = stderr > 1e-12  # weights fed by always-zero pixels get no gradient at all
    z_scores = (iwae.mean(0) - dreg.mean(0)).abs()[noisy] / stderr[noisy]
    assert noisy.sum() > 50
    assert z_scores.median() < 1.5 and z_scores.max() < 5.0  # same expectation
    assert dreg.var(0).sum() < 0.8 * iwae.var(0).sum()
