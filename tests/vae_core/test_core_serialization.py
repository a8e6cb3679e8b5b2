"""Save -> load gives bitwise-equal outputs; sampling helpers; the import layering."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vae_core import (
    VAE,
    ModelConfig,
    latent_traversal,
    load_model,
    reconstruct,
    sample_prior,
    save_model,
)
from vae_core.serialization import EXTRA_FILE


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(input_shape=(1, 28, 28), latent_dim=4, encoder="conv", hidden_sizes=(16,)),
        ModelConfig(
            input_shape=(9,), latent_dim=3, hidden_sizes=(8,), likelihood="gaussian", learn_std=True
        ),
        ModelConfig(input_shape=(9,), latent_dim=3, likelihood="gaussian", gaussian_std=0.3),
    ],
)
def test_save_load_gives_bitwise_equal_outputs(tmp_path, cfg):
    torch.manual_seed(0)
    model = VAE(cfg).eval()
    if model.cfg.learn_std:
        with torch.no_grad():
            model.log_std.uniform_(-1, 1)  # a trained value, not the initial one
    extra = {"preprocessor": {"kind": "scale", "divisor": 255.0}}
    save_model(model, tmp_path / "m", extra=extra)
    loaded, loaded_extra = load_model(tmp_path / "m")
    assert loaded.cfg == cfg and loaded_extra == extra and not loaded.training
    x = torch.rand(5, *cfg.input_shape)
    z = torch.randn(5, cfg.latent_dim)
    for a, b in zip(model.encode(x), loaded.encode(x), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(model.decode(z), loaded.decode(z))
    xp = model.decode(z)
    assert torch.equal(model.log_px_given_z(x, xp), loaded.log_px_given_z(x, xp))


def test_save_without_extra_removes_stale_extra_and_config_is_json(tmp_path):
    model = VAE(ModelConfig(input_shape=(4,), latent_dim=2))
    save_model(model, tmp_path, extra={"a": 1})
    save_model(model, tmp_path)
    assert not (tmp_path / EXTRA_FILE).exists()
    assert load_model(tmp_path)[1] == {}
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model"]["input_shape"] == [4]


def test_sampling_helpers_shapes_and_ranges():
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=(1, 8, 8), latent_dim=3, hidden_sizes=(16,)))
    samples = sample_prior(model, 5, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (5, 1, 8, 8)
    assert samples.min() >= 0 and samples.max() <= 1
    x = torch.rand(4, 1, 8, 8)
    assert reconstruct(model, x).shape == reconstruct(model, x, sample=True).shape == x.shape
    grid = latent_traversal(model, x[0], dims=[0, 2], steps=5)
    assert grid.shape == (2, 5, 1, 8, 8)
    assert latent_traversal(model, x[:1]).shape == (3, 7, 1, 8, 8)


def test_vae_core_imports_no_infrastructure():
    code = (
        "import sys, vae_core\n"
        "bad = [m for m in ('ray', 'mlflow', 'pyarrow') if m in sys.modules]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
