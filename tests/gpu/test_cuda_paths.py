"""GPU paths (marker ``gpu``): skipped without CUDA, run on a lent GPU machine."""

from __future__ import annotations

import pytest
import torch

from pipeline.train.epochs import resolve_precision, train_epoch, validate_epoch
from vae_core import VAE, ModelConfig, ObjectiveConfig, OptimConfig, build_optimizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _binary_images(n: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 1, 28, 28, generator=g) > 0.5).float()
    return protos[torch.randint(0, 4, (n,), generator=g)].to(device)  # (n, 1, 28, 28)


def test_auto_precision_on_cuda_trains_and_lowers_the_loss():
    device = torch.device("cuda")
    precision = resolve_precision("auto", device)
    assert precision.dtype in (torch.bfloat16, torch.float16)
    cfg = ModelConfig(input_shape=(1, 28, 28), latent_dim=8, encoder="conv", decoder="conv")
    model = VAE(cfg).to(device)
    x = _binary_images(512, device)
    batches = [x[i : i + 128] for i in range(0, len(x), 128)]
    before = validate_epoch(model, batches).means()["neg_elbo"]
    opt = build_optimizer(model, OptimConfig(lr=2e-3))
    scaler = torch.amp.GradScaler("cuda") if precision.needs_scaler else None
    step = 0
    for _ in range(5):
        _, step = train_epoch(
            model, batches, opt, ObjectiveConfig(), step, precision=precision, scaler=scaler
        )
    after = validate_epoch(model, batches).means()["neg_elbo"]
    assert torch.isfinite(torch.tensor(after))
    assert after < before


def test_cuda_encoding_matches_cpu():
    cfg = ModelConfig(input_shape=(784,), latent_dim=4, hidden_sizes=(64,))
    model = VAE(cfg).eval()
    x = torch.rand(32, 784)
    with torch.inference_mode():
        mu_cpu, logvar_cpu = model.encode(x)
        mu_gpu, logvar_gpu = model.to("cuda").encode(x.to("cuda"))
    torch.testing.assert_close(mu_gpu.cpu(), mu_cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logvar_gpu.cpu(), logvar_cpu, atol=1e-4, rtol=1e-4)
