"""``output_bias_init: data_mean``: the decoder's output starts at the data mean."""

from __future__ import annotations

import pytest
import torch

from vae_core import VAE, ModelConfig
from vae_core.config import ConfigError
from vae_core.model import BIAS_MEAN_CLIP

SHAPE = (1, 4, 4)


def _vae(**kw) -> VAE:
    torch.manual_seed(0)
    kw.setdefault("output_bias_init", "data_mean")
    return VAE(ModelConfig(input_shape=SHAPE, latent_dim=3, hidden_sizes=(8,), **kw))


def _mean() -> torch.Tensor:
    mean = torch.rand(SHAPE)
    mean.view(-1)[:2] = torch.tensor([0.0, 1.0])  # an always-off and an always-on pixel
    return mean


def test_bernoulli_bias_is_the_clipped_logit_of_the_mean_for_any_z():
    vae, mean = _vae(), _mean()
    vae.init_output_bias(mean)
    clipped = mean.clamp(BIAS_MEAN_CLIP, 1 - BIAS_MEAN_CLIP)
    torch.testing.assert_close(vae.decoder.output_layer.bias, torch.logit(clipped).flatten())
    # With the output weights at zero only the bias speaks: p(x|z) is the mean whatever z is.
    with torch.no_grad():
        vae.decoder.output_layer.weight.zero_()
    z = torch.randn(5, 3) * 10
    probs = vae.mean(vae.decode(z))  # (5, *SHAPE)
    torch.testing.assert_close(probs, clipped.expand(5, *SHAPE))
    assert torch.isfinite(vae.decode(z)).all()


def test_only_the_output_bias_changes():
    before, after = _vae(), _vae()
    after.init_output_bias(_mean())
    changed = [
        k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])
    ]
    assert changed == ["decoder.net.2.bias"]  # Linear, ReLU, Linear


def test_gaussian_bias_is_the_mean_itself():
    vae, mean = _vae(likelihood="gaussian"), torch.randn(SHAPE)
    vae.init_output_bias(mean)
    torch.testing.assert_close(vae.decoder.output_layer.bias, mean.flatten())


def test_bad_uses_are_refused():
    with pytest.raises(ConfigError, match="output_bias_init"):
        ModelConfig(input_shape=SHAPE, decoder="conv", output_bias_init="data_mean")
    with pytest.raises(ValueError, match="not 'data_mean'"):
        _vae(output_bias_init="default").init_output_bias(_mean())
    with pytest.raises(ValueError, match="shape"):
        _vae().init_output_bias(torch.rand(16))
