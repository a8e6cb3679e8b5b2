"""train_step, the optimizer and schedule, and DDP compatibility (gloo, one process)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from vae_core import (
    VAE,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    build_optimizer,
    build_scheduler,
    negative_elbo,
    train_step,
)


def _toy_data(n=64, d=20, seed=0) -> torch.Tensor:
    """Two noisy binary prototypes: a VAE learns them within a few dozen steps."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(2, d, generator=gen).round()
    flips = torch.rand(n, d, generator=gen) < 0.05
    return (protos[torch.arange(n) % 2] + flips).remainder(2)


def test_train_step_lowers_negative_elbo():
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_shape=(20,), latent_dim=2, hidden_sizes=(32,)))
    x = _toy_data()
    opt = build_optimizer(model, OptimConfig(lr=1e-2))
    before = negative_elbo(model, x).mean()
    for step in range(60):
        terms = train_step(model, x, opt, ObjectiveConfig(kl_warmup_steps=20), step, 5.0)
    assert not terms.loss.requires_grad
    assert negative_elbo(model, x).mean() < 0.6 * before


def test_build_optimizer_picks_adamw_for_weight_decay():
    model = torch.nn.Linear(2, 2)
    assert type(build_optimizer(model, OptimConfig())) is torch.optim.Adam
    assert type(build_optimizer(model, OptimConfig(weight_decay=0.01))) is torch.optim.AdamW


def test_scheduler_warms_up_then_decays_and_its_state_loads_without_pickle():
    model = torch.nn.Linear(2, 2)
    cfg = OptimConfig(lr=1.0, warmup_steps=4, scheduler="cosine")
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=14)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert lrs[9] == pytest.approx(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["last_epoch"] == 14
    constant = build_scheduler(opt, OptimConfig(), total_steps=3)
    assert constant.get_last_lr() == [1e-3] or constant.lr_lambdas[0](100) == 1.0


@pytest.mark.parametrize("iw_samples", [1, 4])
def test_train_step_under_ddp_matches_plain_model(tmp_path, iw_samples):
    """DDP with one gloo process: same result as the bare model, learned std included."""
    cfg = ModelConfig(
        input_shape=(6,), latent_dim=2, hidden_sizes=(8,), likelihood="gaussian", learn_std=True
    )
    torch.manual_seed(0)
    plain = VAE(cfg)
    wrapped_inner = copy.deepcopy(plain)
    x = torch.randn(16, 6)
    obj = ObjectiveConfig(iw_samples=iw_samples)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = DistributedDataParallel(wrapped_inner)
        opt_a = build_optimizer(plain, OptimConfig())
        opt_b = build_optimizer(ddp, OptimConfig())
        for step in range(3):
            torch.manual_seed(step)
            a = train_step(plain, x, opt_a, obj, step, grad_clip_norm=1.0)
            torch.manual_seed(step)
            b = train_step(ddp, x, opt_b, obj, step, grad_clip_norm=1.0)
            torch.testing.assert_close(a.loss, b.loss)
    finally:
        dist.destroy_process_group()
    for pa, pb in zip(plain.parameters(), ddp.module.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
