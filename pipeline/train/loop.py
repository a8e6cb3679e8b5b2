"""``train_func``: the per-worker Ray Train loop — the only code here that talks to ``ray.train``.

Each worker: build the VAE, restore the latest loadable checkpoint, wrap in DDP
(``prepare_model``), then per epoch train on its shard, validate, all-reduce the sums so every
rank sees the same numbers (and so the same early-stopping decision), checkpoint from rank 0 and
``ray.train.report`` from every rank. The epoch passes themselves are plain torch
(``pipeline.train.epochs``). Everything else joins through the hooks of the typed
``WorkerConfig`` (``pipeline.train.hooks``): MLflow logging, progress, and what tests and
benchmarks plug in. ``WorkerConfig.train_order`` gives each epoch's training rows (hot and
reshuffled, or streamed in a per-epoch unit order). A ``Watchdog`` (``pipeline.train.watchdog``)
hears of every batch, shard and checkpoint, and ends a worker hung for ``train.hang_timeout_s``.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from pipeline.data.batches import iter_torch_batches
from pipeline.train import checkpoints
from pipeline.train.epochs import (
    EpochSums,
    importance_sampled_nll_sum,
    resolve_precision,
    train_epoch,
    validate_epoch,
)
from pipeline.train.hooks import Hooks
from pipeline.train.watchdog import Watchdog
from pipeline.train.worker_config import WorkerConfig
from vae_core.metrics import active_units
from vae_core.model import VAE
from vae_core.training import build_optimizer, build_scheduler

__all__ = ["train_func", "train_epoch", "validate_epoch", "LoopState"]

EVAL_BATCH = 512  # examples per validation/test batch (no gradients, so bigger is cheaper)


@dataclass
class LoopState:
    """What survives a restart besides the module/optimizer state dicts."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    best_val: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best validation loss
    stopped: bool = False  # early stopping fired
    best_model: dict[str, Tensor] = field(default_factory=dict)
    # Each completed epoch's metrics as computed (what rank 0 logs to MLflow), so a restart can
    # still send those its failed attempt checkpointed but never got through to MLflow.
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Per-(epoch, rank) seed: a resumed run draws exactly what an uninterrupted one would."""
    return (seed * 1_000_003 + epoch * 1009 + rank) % (2**31)


def _reseed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_state(
    state: LoopState, vae: VAE, optimizer, scheduler, scaler
) -> dict[str, Any]:  # plain values and state_dicts only: loads with weights_only=True
    return {
        "epoch": state.epoch,
        "step": state.step,
        "best_val": state.best_val,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "stopped": state.stopped,
        "model": vae.state_dict(),
        "best_model": state.best_model,
        "epoch_metrics": state.epoch_metrics,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": torch.get_rng_state(),
    }


def restore_state(saved: dict[str, Any], vae: VAE, optimizer, scheduler, scaler) -> LoopState:
    vae.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng"])
    return LoopState(
        epoch=saved["epoch"],
        step=saved["step"],
        best_val=saved["best_val"],
        best_epoch=saved["best_epoch"],
        bad_epochs=saved["bad_epochs"],
        stopped=saved["stopped"],
        best_model=saved["best_model"],
        epoch_metrics=list(saved.get("epoch_metrics", [])),  # absent before they were kept
    )


def update_early_stopping(state: LoopState, val_loss: float, vae: VAE, patience: int | None):
    """Track the best model; set ``stopped`` after ``patience`` epochs without improvement."""
    if val_loss < state.best_val:
        state.best_val, state.best_epoch, state.bad_epochs = val_loss, state.epoch, 0
        state.best_model = {k: v.detach().cpu().clone() for k, v in vae.state_dict().items()}
    else:
        state.bad_epochs += 1
    state.stopped = patience is not None and state.bad_epochs >= patience


# --- distributed helpers ---------------------------------------------------------------------


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def all_reduce_sums(sums: EpochSums, device: torch.device) -> EpochSums:
    """Sum the per-rank sums over all ranks (in place); identical result on every rank."""
    if _dist_ready():
        t = torch.tensor(sums.as_list(), dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        sums.replace_sums(t.tolist())
    return sums


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision, on every rank (early stopping must end all ranks together)."""
    if not _dist_ready():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())


# --- the loop --------------------------------------------------------------------------------


class _Worker:
    """Everything one rank holds; methods are the steps of ``train_func``. Hooks see it as a
    ``pipeline.train.hooks.LoopView``."""

    def __init__(self, config: WorkerConfig) -> None:
        import ray.train
        import ray.train.torch

        self.config = config
        self.job = config.job
        self.train_rows = config.train_rows
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        torch.set_num_threads(config.threads or _local_threads(ctx))
        self.device = ray.train.torch.get_device()
        self.preprocessor = config.preprocessor
        torch.manual_seed(self.job.train.seed)  # same init everywhere; DDP also broadcasts it
        self.vae = VAE(self.job.model).to(self.device)
        if config.output_mean is not None:  # before a checkpoint's weights replace it
            mean = torch.tensor(config.output_mean).view(self.job.model.input_shape)
            self.vae.init_output_bias(mean)
        self.optimizer = build_optimizer(self.vae, self.job.optim)
        self.scheduler = build_scheduler(self.optimizer, self.job.optim, config.total_steps)
        self.precision = resolve_precision(self.job.scaling.precision, self.device)
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if self.precision.needs_scaler else None
        )
        self.state = self._restore(ray.train.get_checkpoint())
        self.model = ray.train.torch.prepare_model(self.vae)  # DDP when world > 1
        self.shards: dict[str, Any] = {}  # split -> Ray Train shard, asked for on first use
        self.examples: Tensor | None = None  # fixed validation examples for the image grids
        self.first_batch_at: float | None = None
        self.hooks = Hooks(config.hooks)
        self.train_order = config.train_order
        self.watchdog = Watchdog(self.job.train.hang_timeout_s, self.rank)

    @property
    def epochs_done(self) -> int:
        return self.state.epoch

    @property
    def epoch_metrics(self) -> list[dict[str, float]]:
        return self.state.epoch_metrics

    def _restore(self, latest) -> LoopState:
        fs, _ = checkpoints.filesystem_for(self.config.storage_path)
        preferred = latest.path if latest is not None else None
        saved = checkpoints.load_latest_state(fs, self.config.run_dir, preferred)
        if saved is None:
            return LoopState()
        return restore_state(saved, self.vae, self.optimizer, self.scheduler, self.scaler)

    def shard(self, split: str) -> Any:
        """This rank's Ray Train shard of ``split``, asked for when first needed: each one
        starts a Ray Data coordinator process, which on a small machine would otherwise compete
        with the first training steps (val and test are not needed until the epoch ends).
        Every rank asks at the same point of the loop, as Ray's shard barrier needs."""
        import ray.train

        if split not in self.shards:
            self.shards[split] = ray.train.get_dataset_shard(split)
            self.watchdog.beat()
        return self.shards[split]

    def batches(self, split: str, epoch: int, train: bool) -> Iterator[Tensor]:
        t = self.job.train
        if train and self.train_order is not None:
            # A hot split is gathered from the object store; Ray Train holds no shard of it.
            shard = None if self.train_order.hot is not None else self.shard(split)
            data = self.train_order.epoch_data(shard, epoch, self.rank, self.world_size)
        else:
            data = self.shard(split)
        for batch in iter_torch_batches(
            data,
            batch_size=t.batch_size if train else EVAL_BATCH,
            preprocessor=self.preprocessor,
            device=self.device,
            shuffle_buffer=t.shuffle_buffer if train else 0,
            seed=epoch_seed(t.seed, epoch, self.rank),
            drop_last=train,  # equal shards + drop_last: every rank takes the same DDP steps
            with_meta=False,
        ):
            self.watchdog.beat()  # a batch arrived
            yield batch.x
            self.watchdog.beat()  # and its step (or evaluation) is done

    def run_epoch(self, epoch: int) -> dict[str, float]:
        _reseed(epoch_seed(self.job.train.seed, epoch, self.rank))
        train_sums, self.state.step = train_epoch(
            self.model,
            _counted(
                self.batches("train", epoch, train=True),
                lambda rows: self.hooks.on_batch_end(self, epoch, rows),
            ),
            self.optimizer,
            self.job.objective,
            self.state.step,
            scheduler=self.scheduler,
            grad_clip_norm=self.job.optim.grad_clip_norm,
            precision=self.precision,
            scaler=self.scaler,
        )
        seconds = train_sums.seconds
        iw_samples = self.job.objective.iw_samples
        val_sums = validate_epoch(
            self.vae, self._val_batches(epoch), keep_mu=self.rank == 0, iw_samples=iw_samples
        )
        all_reduce_sums(train_sums, self.device)
        all_reduce_sums(val_sums, self.device)
        self.state.epoch = epoch + 1
        val = val_sums.means()
        # Select and stop on the bound being trained: the k-sample one when iw_samples > 1.
        val_loss = val.get("neg_iw_bound", val["neg_elbo"])
        update_early_stopping(
            self.state, val_loss, self.vae, self.job.train.early_stopping_patience
        )
        self.state.stopped = broadcast_flag(self.state.stopped, self.device)
        metrics = {f"train/{k}": v for k, v in train_sums.means().items()}
        metrics.update({f"val/{k}": v for k, v in val.items()})
        metrics["samples_per_s"] = train_sums.examples / max(seconds, 1e-9)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["epoch"] = float(epoch + 1)
        if val_sums.mu is not None:
            metrics["val/active_units"] = float(active_units(val_sums.mu))
        self.first_batch_at = self.first_batch_at or train_sums.first_batch_at
        return metrics

    def _val_batches(self, epoch: int) -> Iterator[Tensor]:
        for x in self.batches("val", epoch, train=False):
            if self.examples is None:
                self.examples = x[:8].detach().clone()
            yield x

    def report(self, metrics: dict[str, float]) -> dict[str, float]:
        """Checkpoint (rank 0) and report (every rank); timestamps for bench/train.py."""
        import ray.train

        metrics = {**metrics, "wall_time": time.time(), "first_step_at": self.first_batch_at or 0.0}
        name = checkpoints.checkpoint_dir_name(self.state.epoch)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if self.rank == 0:
                state = build_state(
                    self.state, self.vae, self.optimizer, self.scheduler, self.scaler
                )
                checkpoints.save_state(state, tmp)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            self.watchdog.beat()  # the checkpoint is written; reporting waits for every rank
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
        self.watchdog.beat()
        return metrics

    def test(self) -> dict[str, float]:
        """Test-split ELBO terms and IS-NLL of the best model, reduced over all ranks."""
        if self.state.best_model:
            self.vae.load_state_dict(self.state.best_model)
        t = self.job.train
        sums = all_reduce_sums(
            validate_epoch(self.vae, self.batches("test", 0, False)), self.device
        )
        metrics = {f"test/{k}": v for k, v in sums.means().items() if k != "loss"}
        if t.nll_samples > 0:
            per_rank = None if t.nll_examples is None else -(-t.nll_examples // self.world_size)
            nll = EpochSums()
            nll.loss, nll.examples = importance_sampled_nll_sum(
                self.vae, self.batches("test", 0, False), t.nll_samples, per_rank
            )
            all_reduce_sums(nll, self.device)
            metrics["test/is_nll"] = nll.loss / max(1, nll.examples)
            metrics["test/is_nll_k"] = float(t.nll_samples)
        return metrics


def _counted(batches: Iterator[Tensor], on_rows: Callable[[int], None]) -> Iterator[Tensor]:
    """``batches``, calling ``on_rows(rows so far)`` once each batch's step is done (when the
    next batch is asked for, or the epoch ends)."""
    rows = 0
    for x in batches:
        yield x
        rows += len(x)
        on_rows(rows)


def _local_threads(ctx) -> int:
    # Cores of this node shared by the workers on it (the Ray CPU reservation can be fractional
    # or larger than the cores in tests, so it is not a thread count).
    return max(1, (os.cpu_count() or 1) // max(1, ctx.get_local_world_size()))


def train_func(config: WorkerConfig) -> dict[str, Any]:
    """Ray Train worker entry point; rank 0's return value reaches the driver."""
    w = _Worker(config)
    history: list[dict[str, float]] = []  # this attempt's epochs (not those before a restart)
    w.watchdog.start()
    try:
        w.hooks.setup(w)
        for epoch in range(w.state.epoch, w.job.train.epochs):
            if w.state.stopped:
                break
            w.hooks.on_epoch_start(w, epoch)
            computed = w.run_epoch(epoch)
            w.state.epoch_metrics.append(computed)  # into the checkpoint the report writes
            metrics = w.hooks.on_epoch_end(w, epoch, computed)
            history.append(w.report(metrics))
            w.hooks.after_checkpoint(w, epoch)
        w.hooks.before_test(w)
        test_metrics = w.test()
        w.hooks.after_test(w, test_metrics)
    finally:
        w.watchdog.stop()
        w.hooks.teardown(w)
    return {
        "test": test_metrics,
        "best_val_loss": w.state.best_val,
        "best_epoch": w.state.best_epoch,
        "epochs_completed": w.state.epoch,
        "stopped_early": w.state.stopped,
        "history": history,
    }
