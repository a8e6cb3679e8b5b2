"""``run_training``: one training job from config to registered model.

Order matters: the MLflow store is checked first (an unreachable server fails in seconds, before
Ray starts), then Ray and the data, then the job's MLflow run (found by its tag, so a rerun of a
named job or a restarted worker group logs into the same run), then ``TorchTrainer.fit`` in a
background thread while this thread relays the progress the workers send (in-epoch and per
epoch, ``pipeline.train.progress``), and last the registration. The run's status is set from how
this ends: FINISHED, FAILED, or KILLED on Ctrl-C; a failed or killed run registers nothing.

Workers get a typed ``WorkerConfig``; MLflow logging and progress join the loop as hooks
(``pipeline.train.hooks``), and so do the caller's own ``hooks`` (tests, benchmarks).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cluster.ray_session import ensure_ray
from pipeline.config.job import TrainJobConfig
from pipeline.data.batches import Preprocessor, compute_standardization
from pipeline.data.schema import XLayout
from pipeline.errors import UserError
from pipeline.tracking import mlflow_store, runs
from pipeline.train import checkpoints
from pipeline.train.hooks import TrainHook
from pipeline.train.mlflow_hook import MlflowEpochLogging
from pipeline.train.progress import POLL_S, Progress, ProgressChannel
from pipeline.train.resources import WorkerPlan, plan_workers
from pipeline.train.worker_config import WorkerConfig

log = logging.getLogger(__name__)

CHECKPOINTS_KEPT = 3  # the latest plus fallbacks for a corrupt or missing one
# A worker group that cannot be placed (a node lost for good) is a *controller* failure, retried
# forever by default (Ray waited > 500 s here): bounded to this many retries, each waiting
# RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S for resources (a share of train.placement_timeout_s),
# then one "not enough resources" line (pipeline.train.failures).
CONTROLLER_FAILURE_LIMIT = 2
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
_USER_SET_START_TIMEOUT = START_TIMEOUT_ENV in os.environ
# Ray Train's controller takes a worker's report from a one-slot queue when it polls the
# workers, every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default), so an epoch shorter than
# that waits for the poll: digits epochs took 1.8 s wall for 0.4 s of work (bench/startup.py).
# Ray Train passes the variable from the driver to its controller; a user's own value wins.
REPORT_POLL_ENV, REPORT_POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25"
# Ray Train's own barrier in every ``ray.train.report`` waits forever by default: a rank hung
# between the metric all-reduce and its report would hold the others there, out of reach of
# torch's process-group timeout. Both get ``train.hang_timeout_s`` unless the user set this.
COLLECTIVE_TIMEOUT_ENV = "RAY_TRAIN_COLLECTIVE_TIMEOUT_S"
_USER_SET_COLLECTIVE_TIMEOUT = COLLECTIVE_TIMEOUT_ENV in os.environ


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    run_name: str = ""
    history: tuple[dict[str, float], ...] = ()
    """Per-epoch metrics rank 0 reported in the last attempt (not before a restart)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite metrics become null (JSON has no inf/nan)."""
        metrics = {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()}
        out = dataclasses.asdict(self) | {"aliases": list(self.aliases), "metrics": metrics}
        out.pop("history")
        return out


def storage_root(cfg: TrainJobConfig) -> str:
    path = cfg.tracking.storage_path or str(Path.cwd() / "ray_results")
    return path if "://" in path else str(Path(path).resolve())


def with_input_shape(cfg: TrainJobConfig, layout: XLayout) -> TrainJobConfig:
    """Fill model.input_shape from the data; a shape given in the config must match it."""
    shape = tuple(layout.shape)
    given = tuple(cfg.model.input_shape)
    if given and given != shape:
        raise UserError(f"model.input_shape={list(given)} but the data's samples are {list(shape)}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_shape=shape))


def build_preprocessor(cfg: TrainJobConfig, source) -> Preprocessor:
    mean = std = None
    if cfg.data.standardize:
        mean, std = compute_standardization(source.splits["train"], source.layout)
    return Preprocessor(
        layout=source.layout,
        binarize=cfg.data.binarize,
        binarize_seed=cfg.data.seed,
        mean=mean,
        std=std,
    )


def output_mean(
    cfg: TrainJobConfig, source, preprocessor: Preprocessor
) -> tuple[float, ...] | None:
    """The training split's per-feature mean in model-input space, when the decoder's output
    bias starts there (``model.output_bias_init: data_mean``); None otherwise. The mean of the
    [0, 1] intensities is also the binarized pixels' mean (dynamic or static, both draw x < u)."""
    if cfg.model.output_bias_init != "data_mean":
        return None
    if preprocessor.mean is not None:
        return (0.0,) * source.layout.numel  # standardized inputs have mean 0 by construction
    mean, _ = compute_standardization(
        source.splits["train"], source.layout, preprocessor.scale_to_unit
    )
    return tuple(mean)


def _count_train_rows(cfg: TrainJobConfig, source) -> int | None:
    """Rows of the training split; counting costs a pass, so only when the LR schedule needs
    it (progress then shows totals from the first epoch, else from the second)."""
    if cfg.optim.scheduler == "none":
        return None
    return source.splits["train"].count()


def _total_steps(cfg: TrainJobConfig, train_rows: int | None, plan: WorkerPlan) -> int:
    """Optimizer steps of the whole run (unused by a constant schedule, but >= 1)."""
    if train_rows is None:
        return cfg.train.epochs
    global_batch = cfg.train.batch_size * plan.num_workers
    return max(1, train_rows // global_batch) * cfg.train.epochs


def build_trainer(
    cfg, source, plan: WorkerPlan, worker: WorkerConfig, run_name: str, storage: str, callbacks=()
):
    """The job's ``TorchTrainer``; ``callbacks`` are Ray Train ``UserCallback``s (a sweep's
    trial passes Tune's report callback)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline.train.loop import train_func

    os.environ.setdefault(REPORT_POLL_ENV, REPORT_POLL_S)
    hang_timeout_s = math.ceil(cfg.train.hang_timeout_s)
    if not _USER_SET_COLLECTIVE_TIMEOUT:
        os.environ[COLLECTIVE_TIMEOUT_ENV] = str(hang_timeout_s)
    if not _USER_SET_START_TIMEOUT:
        os.environ[START_TIMEOUT_ENV] = f"{placement_attempt_s(cfg.train.placement_timeout_s):g}"
    return TorchTrainer(
        train_func,
        train_loop_config=worker,  # typed, not the dict Ray's hint names: passed through as is
        # The process group's timeout bounds every collective: a rank that stops (hung, or its
        # peer lost) raises after it, and the group restarts from the last checkpoint.
        torch_config=TorchConfig(timeout_s=hang_timeout_s),
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers,
            use_gpu=plan.use_gpu,
            resources_per_worker=plan.resources_per_worker(),
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=FailureConfig(
                max_failures=cfg.train.max_failures,
                controller_failure_limit=CONTROLLER_FAILURE_LIMIT,
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            callbacks=list(callbacks),
        ),
        datasets=streamed_splits(source, worker),
    )


def placement_attempt_s(placement_timeout_s: float) -> float:
    """Ray Train's wait for resources per worker-group start: the first try and each of its
    CONTROLLER_FAILURE_LIMIT retries share ``train.placement_timeout_s``."""
    return round(placement_timeout_s / (CONTROLLER_FAILURE_LIMIT + 1), 2)


def streamed_splits(source, worker: WorkerConfig) -> dict[str, Any]:
    """The splits Ray Train hands the workers as shards: all but a hot training split, which
    the workers gather from the object store themselves (a shard would only start an idle
    Ray Data coordinator process)."""
    hot = worker.train_order is not None and worker.train_order.hot is not None
    return {s: ds for s, ds in source.splits.items() if not (hot and s == "train")}


def worker_config(
    cfg: TrainJobConfig,
    source,
    preprocessor: Preprocessor,
    plan: WorkerPlan,
    run_name: str,
    storage: str,
    threads: int | None,
) -> WorkerConfig:
    """What every worker gets, hooks aside (the caller adds them: MLflow logging when the job
    is tracked, progress, its own)."""
    _fs, root = checkpoints.filesystem_for(storage)
    train_rows = _count_train_rows(cfg, source)
    return WorkerConfig(
        job=cfg,
        preprocessor=preprocessor,
        storage_path=storage,
        run_dir=f"{root}/{run_name}",
        total_steps=_total_steps(cfg, train_rows, plan),
        threads=threads,
        train_rows=train_rows,
        output_mean=output_mean(cfg, source, preprocessor),
    )


def _fit_with_progress(
    trainer, channel: ProgressChannel | None, progress: Progress | None, cfg, plan: WorkerPlan
):
    """``trainer.fit()`` in a thread; meanwhile relay the workers' progress events.

    In the main thread Ray Train would install its own SIGINT handler that aborts the run
    quietly; here Ctrl-C stays a KeyboardInterrupt, so the MLflow run is marked KILLED.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as exc:  # handed to the calling thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="vaepipe-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_S)
        if channel is not None and progress is not None:
            channel.relay(progress)
    if "error" in box:
        raise user_facing(box["error"], cfg.train.max_failures, resource_ask(cfg, plan))
    return box["result"]


def resource_ask(cfg: TrainJobConfig, plan: WorkerPlan):
    """What the worker group asks of the cluster (``pipeline.train.failures.ResourceAsk``)."""
    from pipeline.train.failures import ResourceAsk

    return ResourceAsk(plan.num_workers, plan.resources_per_worker(), placement_timeout_s(cfg))


def placement_timeout_s(cfg: TrainJobConfig) -> float:
    """The whole wait for resources: ``train.placement_timeout_s``, or what a user's own
    RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S makes of it."""
    if _USER_SET_START_TIMEOUT:
        return float(os.environ[START_TIMEOUT_ENV]) * (CONTROLLER_FAILURE_LIMIT + 1)
    return cfg.train.placement_timeout_s


def user_facing(exc: BaseException, max_failures: int, ask=None) -> BaseException:
    """A worker's one-line ``UserError`` (bad data, unusable checkpoints) instead of Ray's
    multi-line wrapper; a worker group that failed past ``max_failures`` restarts, or that the
    cluster could not hold (``ask``: a ``ResourceAsk``), as a one-line ``JobFailed``; anything
    else unchanged."""
    from pipeline.data.ray_errors import find_user_error
    from pipeline.train.failures import job_failure

    for failure in [exc, *getattr(exc, "worker_failures", {}).values()]:
        inner = find_user_error(failure)
        if inner is not None:
            return UserError(str(inner))
    return job_failure(exc, max_failures, ask) or exc


def say_where_it_resumes(run_id: str, storage: str, run_dir: str) -> None:
    """One line: the epoch a rerun of a job continues after, read from the checkpoint the
    workers will restore (the newest loadable one; a run with none left fails here, before
    any worker starts)."""
    fs, _ = checkpoints.filesystem_for(storage)
    state = checkpoints.load_latest_state(fs, run_dir)
    if state is None:
        log.info("continuing MLflow run %s from epoch 1: no checkpoint in %s yet", run_id, run_dir)
    else:
        log.info(
            "resuming MLflow run %s after epoch %d, from checkpoint %s",
            run_id, state["epoch"], state["path"],
        )  # fmt: skip


def _best_model(cfg: TrainJobConfig, result, storage: str, run_name: str):
    """The run's best model and its validation loss, both from its newest loadable checkpoint."""
    fs, root = checkpoints.filesystem_for(storage)
    final = result.checkpoint.path if result.checkpoint is not None else None
    return checkpoints.best_model(fs, f"{root}/{run_name}", cfg.model, final)


def run_training(
    cfg: TrainJobConfig,
    progress: Progress | None = None,
    config_file: str | None = None,
    hooks: Sequence[TrainHook] = (),
) -> TrainResult:
    """Train ``cfg``, track it in MLflow, register the best model; see the module docstring.

    ``progress(event)`` gets the workers' progress events (``pipeline.train.progress``);
    ``hooks`` run in every worker after the product's own (MLflow logging, progress).
    """
    import mlflow
    import ray

    from pipeline.data.input_ids import check_distinct_ids
    from pipeline.data.sources import plan_source
    from pipeline.data.train_order import open_training_source, split_rows
    from pipeline.tracking.datasets import log_inputs
    from pipeline.tracking.registry import log_vae

    # The driver's checks of the data (files, footers, schemas): bad input fails before Ray,
    # and before MLflow's store is touched.
    data_plan = plan_source(cfg.data)
    store_ready = (
        mlflow_store.configure_in_background(cfg.tracking.experiment)
        if cfg.tracking.enabled
        else None
    )
    try:
        ensure_ray()
        check_distinct_ids(data_plan)
        source, order = open_training_source(cfg.data, cfg.train.seed, plan=data_plan)
        cfg = with_input_shape(cfg, source.layout)
        preprocessor = build_preprocessor(cfg, source)
        plan = plan_workers(cfg.scaling, ray.cluster_resources())
    except BaseException:
        mlflow_store.settle(store_ready)
        raise
    storage = storage_root(cfg)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_name = cfg.tracking.run_name or f"{cfg.tracking.model_name}-{stamp}"
    tracking_uri = store_ready() if store_ready is not None else None
    if cfg.tracking.enabled:
        runs.fail_orphaned_runs()  # runs of SIGKILLed launches (their owner is gone)
    threads = int(cfg.scaling.cpus_per_worker) if cfg.scaling.cpus_per_worker else None
    worker = worker_config(cfg, source, preprocessor, plan, run_name, storage, threads)
    worker = dataclasses.replace(worker, train_order=order)
    channel = ProgressChannel() if progress is not None else None
    hooks = (*((channel.hook(),) if channel is not None else ()), *hooks)
    try:
        if not cfg.tracking.enabled:
            worker = dataclasses.replace(worker, hooks=hooks)
            trainer = build_trainer(cfg, source, plan, worker, run_name, storage)
            fitted = _fit_with_progress(trainer, channel, progress, cfg, plan)
            out = fitted.return_value or {}
            return _result(out, "", cfg.tracking.model_name, "", (), run_name)
        job_key = f"{storage}/{run_name}"
        run_id, resumed = runs.open_run(cfg.tracking.experiment, run_name, job_key)
        with runs.tracked_run(run_id):
            if resumed:
                say_where_it_resumes(run_id, worker.storage_path, worker.run_dir)
            runs.log_job_config(run_id, cfg.to_dict(), config_file)
            log_inputs(run_id, cfg.data.source, source.digest, split_rows(source, order))
            # MLflow first: its tracking_seconds then reach the progress events too.
            hooks = (MlflowEpochLogging(run_id, tracking_uri), *hooks)
            worker = dataclasses.replace(worker, hooks=hooks)
            trainer = build_trainer(cfg, source, plan, worker, run_name, storage)
            result = _fit_with_progress(trainer, channel, progress, cfg, plan)
            out = result.return_value or {}
            best = _best_model(cfg, result, storage, run_name)
            # The figures the registered weights were chosen by (an older checkpoint's, when
            # the final one cannot be read).
            out = {**out, "best_val_loss": best.val_loss, "best_epoch": best.epoch}
            with mlflow.start_run(run_id=run_id):
                version = log_vae(
                    best.vae,
                    preprocessor.to_dict(),
                    cfg.tracking.model_name,
                    best.val_loss,
                    cfg.data.source,
                    data_config=cfg.data.to_dict(),
                    data_digest=source.digest,
                    val_rows=validation_rows(source),
                )
    finally:
        if channel is not None:
            channel.close()
    return _result(out, run_id, version.name, str(version.version), version.aliases, run_name)


# Rows scored to choose the anomaly threshold (a 0.99 quantile is steady from a few thousand).
THRESHOLD_ROWS = 10_000


def validation_rows(source, limit: int = THRESHOLD_ROWS):
    """Up to ``limit`` raw validation samples (N, *shape), as stored; None without a val split."""
    import numpy as np

    from pipeline.data import schema

    val = source.splits.get("val")
    if val is None:
        return None
    parts = []
    for table in val.limit(limit).iter_batches(batch_format="pyarrow", batch_size=None):
        parts.append(schema.decode_x(table.column(schema.X), source.layout))
    return np.concatenate(parts) if parts else None


def _result(out: dict, run_id: str, name: str, version: str, aliases, run_name: str):
    metrics = dict(out.get("test", {}))
    metrics.update(
        best_val_loss=out["best_val_loss"],
        best_epoch=float(out["best_epoch"]),
        epochs_completed=float(out["epochs_completed"]),
    )
    return TrainResult(
        run_id=run_id,
        model_name=name,
        version=version,
        aliases=tuple(aliases),
        metrics=metrics,
        run_name=run_name,
        history=tuple(out.get("history", ())),
    )
