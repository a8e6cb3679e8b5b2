"""The training loop's plain-torch parts, without Ray: epochs, checkpoints, early stopping."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest
import torch

from pipeline.config.job import ScalingSettings
from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.tracking.images import epoch_images
from pipeline.train import checkpoints
from pipeline.train.epochs import Precision, importance_sampled_nll_sum, resolve_precision
from pipeline.train.loop import (
    LoopState,
    build_state,
    restore_state,
    train_epoch,
    update_early_stopping,
    validate_epoch,
)
from pipeline.train.resources import plan_workers
from vae_core.config import ModelConfig, ObjectiveConfig, OptimConfig
from vae_core.model import VAE
from vae_core.training import build_optimizer, build_scheduler

SHAPE = (1, 8, 8)


def _data(n: int = 256, seed: int = 0) -> torch.Tensor:
    # Two prototype images plus noise, binarized: easy to learn, so the loss must fall.
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(2, *SHAPE, generator=g) > 0.5).float()
    idx = torch.randint(0, 2, (n,), generator=g)
    flip = (torch.rand(n, *SHAPE, generator=g) < 0.05).float()
    return (protos[idx] - flip).abs()


def _batches(x: torch.Tensor, bs: int = 32):
    return [x[i : i + bs] for i in range(0, len(x), bs)]


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    vae = VAE(ModelConfig(input_shape=SHAPE, latent_dim=4, hidden_sizes=(32,)))
    opt = build_optimizer(vae, OptimConfig(lr=3e-3))
    sched = build_scheduler(opt, OptimConfig(lr=3e-3, scheduler="cosine"), total_steps=200)
    return vae, opt, sched


def test_train_epoch_lowers_the_validation_loss():
    vae, opt, sched = _parts()
    x = _data()
    before = validate_epoch(vae, _batches(x)).means()["neg_elbo"]
    step = 0
    for _ in range(5):
        sums, step = train_epoch(
            vae, _batches(x), opt, ObjectiveConfig(kl_warmup_steps=20), step, sched, 10.0
        )
    after = validate_epoch(vae, _batches(x)).means()["neg_elbo"]
    assert step == 5 * 8 and sums.examples == 256
    assert after < before - 5.0


def test_validate_epoch_sums_and_posterior_means():
    vae, _, _ = _parts()
    sums = validate_epoch(vae, _batches(_data(100)), keep_mu=True)
    m = sums.means()
    assert sums.examples == 100 and sums.mu.shape == (100, 4)
    assert m["neg_elbo"] == pytest.approx(m["reconstruction"] + m["kl"], rel=1e-5)


def test_validation_adds_the_k_sample_bound_only_for_iwae_training():
    vae, _, _ = _parts()
    plain = validate_epoch(vae, _batches(_data(100))).means()
    torch.manual_seed(1)
    iwae = validate_epoch(vae, _batches(_data(100)), iw_samples=50).means()
    assert "neg_iw_bound" not in plain
    # The 50-sample bound is tighter than the ELBO of an untrained model by a clear margin.
    assert iwae["neg_iw_bound"] < iwae["neg_elbo"] - 0.5


def test_bf16_autocast_step_on_cpu():
    vae, opt, _ = _parts()
    sums, step = train_epoch(
        vae, _batches(_data(64)), opt, ObjectiveConfig(), 0, precision=Precision(torch.bfloat16)
    )
    assert step == 2 and torch.isfinite(torch.tensor(sums.loss))


def test_precision_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).dtype is None
    assert resolve_precision("bf16", cpu).dtype == torch.bfloat16
    assert resolve_precision("fp16", cpu).needs_scaler


def test_is_nll_respects_the_example_cap():
    vae, _, _ = _parts()
    total, n = importance_sampled_nll_sum(vae, _batches(_data(100)), k=10, max_examples=40)
    assert n == 40 and total > 0


def test_early_stopping_tracks_the_best_model():
    vae, _, _ = _parts()
    state = LoopState()
    for epoch, loss in enumerate([10.0, 9.0, 9.5, 9.2]):
        state.epoch = epoch + 1
        update_early_stopping(state, loss, vae, patience=2)
    assert state.best_val == 9.0 and state.best_epoch == 2 and state.stopped
    assert set(state.best_model) == set(vae.state_dict())


def _save(tmp_path, epoch: int, vae, opt, sched, best_val: float = 1.0) -> str:
    d = tmp_path / checkpoints.checkpoint_dir_name(epoch)
    d.mkdir()
    state = LoopState(epoch=epoch, step=epoch * 8, best_val=best_val, best_epoch=epoch)
    state.best_model = {k: v.clone() for k, v in vae.state_dict().items()}
    checkpoints.save_state(build_state(state, vae, opt, sched, None), d)
    return str(d)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    vae, opt, sched = _parts()
    train_epoch(vae, _batches(_data(64)), opt, ObjectiveConfig(), 0, sched)
    _save(tmp_path, 1, vae, opt, sched)
    saved = checkpoints.load_latest_state(pafs.LocalFileSystem(), str(tmp_path))
    vae2, opt2, sched2 = _parts(seed=1)
    state = restore_state(saved, vae2, opt2, sched2, None)
    assert state.epoch == 1 and state.step == 8
    for a, b in zip(vae.state_dict().values(), vae2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert sched2.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"]


def test_corrupt_or_missing_latest_checkpoint_falls_back(tmp_path):
    vae, opt, sched = _parts()
    _save(tmp_path, 1, vae, opt, sched)
    latest = _save(tmp_path, 2, vae, opt, sched)
    fs = pafs.LocalFileSystem()
    state_pt = tmp_path / latest / checkpoints.STATE_FILE
    data = bytearray(state_pt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data: torch loads it quietly
    state_pt.write_bytes(bytes(data))
    assert checkpoints.load_latest_state(fs, str(tmp_path))["epoch"] == 1
    state_pt.write_bytes(b"truncated")
    assert checkpoints.load_latest_state(fs, str(tmp_path))["epoch"] == 1
    missing = str(tmp_path / "epoch_00009-0")  # Ray's latest, deleted from storage
    assert checkpoints.load_latest_state(fs, str(tmp_path), preferred=missing)["epoch"] == 1


def test_best_model_comes_with_its_own_checkpoints_validation_loss(tmp_path, caplog):
    """Item 6: when the final checkpoint cannot be read, the registered weights and the
    validation loss they are registered under both come from the checkpoint that was used."""
    vae, opt, sched = _parts()
    older = _save(tmp_path, 1, vae, opt, sched, best_val=90.0)
    kept = {k: v.clone() for k, v in vae.state_dict().items()}
    train_epoch(vae, _batches(_data(64)), opt, ObjectiveConfig(), 0, sched)  # new weights
    final = _save(tmp_path, 2, vae, opt, sched, best_val=80.0)
    fs, model_cfg = pafs.LocalFileSystem(), vae.cfg

    best = checkpoints.best_model(fs, str(tmp_path), model_cfg, final)
    assert (best.val_loss, best.epoch, best.checkpoint) == (80.0, 2, final)
    assert not caplog.records

    (tmp_path / final / checkpoints.STATE_FILE).write_bytes(b"truncated")
    best = checkpoints.best_model(fs, str(tmp_path), model_cfg, final)
    assert (best.val_loss, best.epoch, best.checkpoint) == (90.0, 1, older)
    for name, tensor in best.vae.state_dict().items():
        assert torch.equal(tensor, kept[name]), name
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][-1:]
    assert f"the final checkpoint {final} cannot be read" in warning
    assert "validation loss 90" in warning


def test_no_loadable_checkpoint_is_a_clear_error_not_epoch_zero(tmp_path):
    vae, opt, sched = _parts()
    only = _save(tmp_path, 1, vae, opt, sched)
    (tmp_path / only / checkpoints.STATE_FILE).write_bytes(b"")
    with pytest.raises(checkpoints.CheckpointError, match="refusing to restart"):
        checkpoints.load_latest_state(pafs.LocalFileSystem(), str(tmp_path))
    assert checkpoints.load_latest_state(pafs.LocalFileSystem(), str(tmp_path / "new")) is None


def test_epoch_images_are_uint8_grids():
    vae, _, _ = _parts()
    prep = Preprocessor(layout=XLayout(SHAPE, "uint8"))
    images = epoch_images(vae, _data(8), prep, seed=0)
    assert set(images) == {"reconstructions", "prior_samples", "latent_traversal"}
    assert images["reconstructions"].shape == (16, 64)
    assert images["prior_samples"].shape == (64, 64)
    assert images["latent_traversal"].shape == (32, 64)  # 4 dims x 8 steps
    assert all(im.dtype.name == "uint8" for im in images.values())
    assert epoch_images(vae, _data(8), Preprocessor(layout=XLayout((64,), "float32")), 0) == {}


def test_workers_leave_cpu_for_data():
    plan = plan_workers(ScalingSettings(workers=2), {"CPU": 4.0})
    assert plan.num_workers == 2 and plan.cpus_per_worker * 2 <= 3.0
    auto = plan_workers(ScalingSettings(workers=0), {"CPU": 2.0})
    assert auto.num_workers == 1 and auto.cpus_per_worker == 1.0
    two_nodes = {"CPU": 8.0, "node:10.0.0.1": 1.0, "node:10.0.0.2": 1.0}
    two_nodes["node:__internal_head__"] = 1.0
    auto = plan_workers(ScalingSettings(workers=0), two_nodes)
    assert auto.num_workers == 2 and auto.cpus_per_worker == 3.0  # one per node, 2 CPUs kept
    assert (
        plan_workers(ScalingSettings(workers=0, use_gpu=True), {"CPU": 8, "GPU": 2}).num_workers
        == 2
    )
