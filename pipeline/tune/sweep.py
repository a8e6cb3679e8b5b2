"""``run_sweep``: a hyperparameter sweep of training jobs on Ray Tune, tracked in MLflow.

Order: the MLflow store first (an unreachable server fails before Ray starts), then Ray, the
sweep layout (``pipeline.tune.resources``), the sweep's parent run (found by its tag, so a rerun
of the same name reopens it), then Tune: ``Tuner.restore`` when the sweep's directory holds an
earlier, interrupted state — finished trials are kept, unfinished ones continue from their
checkpoints — else a new ``Tuner``. Afterwards every trial's run gets its truthful final status
(a trial Tune stopped could not set it itself), the best trial's model is registered (as
``candidate``; ``champion`` moves by the registry's usual gate) and the parent run gets the best
config and a scatter of the trials.

Ctrl-C: Tune's own handler stops the trials and saves the sweep's state; the runs of the trials
cut short end KILLED, the parent run too, and the caller sees ``KeyboardInterrupt``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cluster.ray_session import ensure_ray
from pipeline.config.job import TrainJobConfig
from pipeline.errors import UserError
from pipeline.tracking import mlflow_store, runs
from pipeline.tune.resources import SweepPlan, plan_sweep
from pipeline.tune.space import SearchSpace, trial_params
from pipeline.tune.trial import ERROR_AT_TAG, PARENT_TAG, TRIAL_TAG, SweepContext, run_trial

METRIC = "val/neg_elbo"  # what trials are ranked and stopped on (lower is better)
TIME_ATTR = "epoch"  # ASHA's clock: every trial reports its epoch count (continues on resume)
ASHA_REDUCTION = 4  # keep the best quarter at each rung (Ray's default, as in the ASHA paper)
SCHEDULERS = ("asha", "fifo")
SWEEP_KEY_SUFFIX = "#sweep"  # the parent run's job key: the sweep directory + this

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepSettings:
    name: str
    """The sweep's name: its directory under the storage path; rerunning a name resumes it."""
    trials: int = 8
    """Samples of the space (Tune's ``num_samples``; a grid is repeated this many times)."""
    scheduler: str = "asha"
    time_budget_s: float | None = None
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"--scheduler must be one of {', '.join(SCHEDULERS)}")
        if self.trials < 1:
            raise UserError(f"--trials must be >= 1, got {self.trials}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise UserError(f"--time-budget must be positive, got {self.time_budget_s:g} s")
        if not self.name or "/" in self.name:
            raise UserError(f"--name must be a non-empty name without '/', got {self.name!r}")


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    status: str
    """FINISHED, KILLED (stopped by the scheduler, the budget or Ctrl-C) or FAILED."""
    params: dict[str, Any]
    best_val: float
    epochs: int
    """Epochs the trial trained (its compute, in trial-epochs)."""
    test_neg_elbo: float | None
    run_id: str | None


@dataclass(frozen=True)
class SweepResult:
    name: str
    run_id: str | None
    trials: tuple[TrialSummary, ...]
    best: TrialSummary | None
    model_name: str = ""
    version: str = ""
    aliases: tuple[str, ...] = ()

    def trial_epochs(self) -> int:
        return sum(t.epochs for t in self.trials)

    def to_dict(self) -> dict[str, Any]:
        def clean(t: TrialSummary | None):
            if t is None:
                return None
            d = dataclasses.asdict(t)
            d["best_val"] = t.best_val if math.isfinite(t.best_val) else None
            return d

        return {
            "name": self.name,
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "aliases": list(self.aliases),
            "trial_epochs": self.trial_epochs(),
            "best": clean(self.best),
            "trials": [clean(t) for t in self.trials],
        }


def run_sweep(
    cfg: TrainJobConfig,
    space: SearchSpace,
    settings: SweepSettings,
    progress: Progress | None = None,
) -> SweepResult:
    """Run (or resume) the sweep ``settings.name`` of ``cfg`` over ``space``."""
    import ray

    from pipeline.train.trainer import storage_root

    tracking_uri = mlflow_store.configure() if cfg.tracking.enabled else None
    ensure_ray(dashboard=True)  # see ensure_ray: frees the workers of stopped trials
    total = settings.trials * space.grid_size()
    plan = plan_sweep(cfg.scaling, ray.cluster_resources(), total, settings.max_concurrent)
    storage = storage_root(cfg)
    sweep_dir = f"{storage}/{settings.name}"
    if progress:
        progress(
            f"sweep {settings.name}: {total} trials, {plan.max_concurrent} at a time, "
            f"{plan.workers.num_workers} worker(s) x {plan.workers.cpus_per_worker:g} CPU each"
        )
    if not cfg.tracking.enabled:
        context = SweepContext(settings.name, cfg.to_dict(), plan.workers, storage, None, None)
        results, stopped_at = _fit(context, space, settings, plan, sweep_dir, cfg, progress)
        if stopped_at is not None:
            raise KeyboardInterrupt
        trials = _summaries(results, {}, context)
        return SweepResult(settings.name, None, trials, _best(trials))
    parent_id, _resumed = runs.open_run(
        cfg.tracking.experiment, settings.name, sweep_dir + SWEEP_KEY_SUFFIX
    )
    with runs.tracked_run(parent_id):
        _log_sweep_params(parent_id, cfg, space, settings, plan)
        context = SweepContext(
            settings.name, cfg.to_dict(), plan.workers, storage, parent_id, tracking_uri
        )
        results, stopped_at = _fit(context, space, settings, plan, sweep_dir, cfg, progress)
        child_runs = _close_trial_runs(parent_id, results, stopped_at)
        trials = _summaries(results, child_runs, context)
        if stopped_at is not None:
            if progress:
                progress(f"sweep {settings.name} interrupted; rerun the same command to resume")
            raise KeyboardInterrupt
        best = _best(trials)
        version = _register_best(cfg, best, context) if best is not None else None
        _log_outcome(parent_id, space, trials, best)
    if version is None:
        return SweepResult(settings.name, parent_id, trials, None)
    return SweepResult(
        settings.name, parent_id, trials, best, version.name, version.version, version.aliases
    )


# --- Tune ------------------------------------------------------------------------------------


def _trial_dirname(trial) -> str:
    # The trial's directory is its id, so a result maps back to its trial (and MLflow run).
    return trial.trial_id


def _trainable(context: SweepContext, plan: SweepPlan):
    from ray import tune

    with_context = tune.with_parameters(run_trial, sweep=context)
    return tune.with_resources(with_context, plan.trial_resources())


def _scheduler(settings: SweepSettings, cfg: TrainJobConfig):
    if settings.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = cfg.train.epochs
    # Rungs at grace x 4^k epochs below max_t (e.g. 1 and 4 of 9 epochs; 2, 8 and 32 of 36): a
    # trial must be in the best quarter of those that reached a rung before it to continue.
    # ASHA stops a trial that reaches max_t: one past the last epoch lets a trial that earned
    # it end by itself (final test metrics, FINISHED run).
    grace = max(1, round(epochs / ASHA_REDUCTION**2))
    return ASHAScheduler(
        time_attr=TIME_ATTR, max_t=epochs + 1, grace_period=grace, reduction_factor=ASHA_REDUCTION
    )


def _param_space(space: SearchSpace, settings: SweepSettings, cfg: TrainJobConfig):
    # ASHA promotes every trial that is first to reach a rung, whatever its score: in Tune's
    # nested-loop order the grid's first corner (e.g. the lowest lr and narrowest width) gets
    # all the early promotions. A seeded random order spreads them over the grid; FIFO's
    # outcome does not depend on the order, so it keeps Tune's.
    seed = cfg.train.seed if settings.scheduler == "asha" else None
    return space.param_space(shuffle_seed=seed)


def _fit(context, space, settings, plan, sweep_dir, cfg, progress):
    from ray import tune

    from pipeline.tune.progress import ProgressCallback

    trainable = _trainable(context, plan)
    param_space = _param_space(space, settings, cfg)
    if tune.Tuner.can_restore(sweep_dir):
        if progress:
            progress(f"resuming sweep {settings.name} from {sweep_dir}")
        tuner = tune.Tuner.restore(
            sweep_dir, trainable, resume_unfinished=True, param_space=param_space
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="min",
                scheduler=_scheduler(settings, cfg),
                num_samples=settings.trials,
                max_concurrent_trials=plan.max_concurrent,
                time_budget_s=settings.time_budget_s,
                trial_dirname_creator=_trial_dirname,
                trial_name_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=settings.name,
                storage_path=context.storage,
                callbacks=[ProgressCallback(progress, METRIC, TIME_ATTR)] if progress else [],
                verbose=0,
            ),
        )
    with _CtrlC() as ctrl_c:
        results = tuner.fit()
    return results, ctrl_c.pressed_at


class _CtrlC:
    """Ctrl-C during ``tuner.fit()``: ask Tune to stop gracefully, and remember it was asked.

    Tune's own SIGINT handler stops the sweep (saving its state for a resume) but then returns
    normally, with the interrupted trials marked TERMINATED like finished ones. So Tune's
    handler is switched off and this one forwards the request through SIGUSR1, which Tune
    treats the same way; a second Ctrl-C is a plain ``KeyboardInterrupt``.
    """

    def __init__(self) -> None:
        self.pressed_at: float | None = None  # time.time() of the Ctrl-C, if there was one
        self._previous = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.pressed_at = time.time()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --- outcome ---------------------------------------------------------------------------------


def _ended_by_ctrl_c(run, stopped_at: float | None) -> bool:
    """Whether the trial's error came with or after the Ctrl-C (its error time is a tag the
    trial writes as it fails; none yet means it is still failing, so after)."""
    if stopped_at is None:
        return False
    return float(run.data.tags.get(ERROR_AT_TAG, "inf")) >= stopped_at


def _trial_id(result) -> str:
    return Path(result.path).name


def _close_trial_runs(parent_id: str, results, stopped_at: float | None = None) -> dict[str, Any]:
    """Every trial run gets the end Tune saw (a trial ends its own run only when it finishes):
    FAILED for an errored trial, KILLED for one stopped by ASHA, the time budget or Ctrl-C;
    FINISHED stays. An error that came with or after a Ctrl-C at ``stopped_at``
    (``time.time()``) is the stop reaching the trial, not a failure: KILLED. Returns the runs
    by trial id."""
    from mlflow import MlflowClient

    client = MlflowClient()
    errored = {_trial_id(r) for r in results if r.error is not None}
    by_trial = {}
    for run in _child_runs(client, parent_id):
        trial_id = run.data.tags.get(TRIAL_TAG, "")
        status = "FAILED" if trial_id in errored else "KILLED"
        if status == "FAILED" and _ended_by_ctrl_c(run, stopped_at):
            status = "KILLED"
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status=status)
            run = client.get_run(run.info.run_id)
        by_trial[trial_id] = run
    return by_trial


def _child_runs(client, parent_id: str) -> list:
    exp = client.get_run(parent_id).info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent_id}'"
    return client.search_runs([exp], filter_string=query, max_results=10_000)


def _summaries(results, child_runs: dict[str, Any], context: SweepContext):
    out = []
    for result in results:
        trial_id = _trial_id(result)
        frame = result.metrics_dataframe
        vals = frame[METRIC].dropna() if frame is not None and METRIC in frame else []
        run = child_runs.get(trial_id)
        status = run.info.status if run is not None else ("FAILED" if result.error else "KILLED")
        metrics = result.metrics or {}
        out.append(
            TrialSummary(
                trial_id=trial_id,
                status=status,
                params=trial_params(result.config or {}),
                best_val=float(min(vals)) if len(vals) else float("inf"),
                epochs=int(metrics.get(TIME_ATTR, 0)),
                test_neg_elbo=_test_metric(run),
                run_id=run.info.run_id if run is not None else None,
            )
        )
    return tuple(sorted(out, key=lambda t: t.trial_id))


def _test_metric(run) -> float | None:
    return None if run is None else run.data.metrics.get("test/neg_elbo")


def _best(trials) -> TrialSummary | None:
    scored = [t for t in trials if math.isfinite(t.best_val) and t.status != "FAILED"]
    return min(scored, key=lambda t: t.best_val) if scored else None


def _register_best(cfg: TrainJobConfig, best: TrialSummary, context: SweepContext):
    """The best trial's best model, registered from its run (whose status is kept)."""
    import mlflow
    from mlflow import MlflowClient

    from pipeline.data.ingest import open_source
    from pipeline.tracking.registry import log_vae
    from pipeline.train import checkpoints, trainer
    from pipeline.tune.trial import trial_config
    from vae_core.model import VAE

    run_name = context.trial_run_name(best.trial_id)
    best_cfg = trial_config(context.base, best.params, run_name)
    source = open_source(best_cfg.data)
    best_cfg = trainer.with_input_shape(best_cfg, source.layout)
    preprocessor = trainer.build_preprocessor(best_cfg, source)
    fs, root = checkpoints.filesystem_for(context.storage)
    state = checkpoints.load_latest_state(fs, f"{root}/{run_name}", None)
    if state is None:
        raise UserError(f"the best trial {best.trial_id} left no readable checkpoint")
    vae = VAE(best_cfg.model)
    vae.load_state_dict(state["best_model"] or state["model"])
    client = MlflowClient()
    status = client.get_run(best.run_id).info.status
    with mlflow.start_run(run_id=best.run_id):
        version = log_vae(
            vae.eval(),
            preprocessor.to_dict(),
            cfg.tracking.model_name,
            best.best_val,
            best_cfg.data.source,
            data_config=best_cfg.data.to_dict(),
            val_rows=trainer.validation_rows(source),
        )
    client.set_terminated(best.run_id, status=status)  # start_run/end_run made it FINISHED
    return version


def _log_sweep_params(parent_id: str, cfg, space: SearchSpace, settings, plan: SweepPlan):
    from mlflow import MlflowClient

    sweep = dataclasses.asdict(settings) | {
        "max_concurrent_trials": plan.max_concurrent,
        "workers_per_trial": plan.workers.num_workers,
        "cpus_per_worker": plan.workers.cpus_per_worker,
    }
    runs.log_job_config(parent_id, {"sweep": sweep, "space": space.to_dict()}, None)
    client = MlflowClient()
    client.log_text(parent_id, space.source, "sweep/space.yaml")
    client.log_dict(parent_id, cfg.to_dict(), "sweep/base_config.json")


def _log_outcome(parent_id: str, space: SearchSpace, trials, best: TrialSummary | None) -> None:
    from mlflow import MlflowClient

    from pipeline.tune.plot import trials_png

    client = MlflowClient()
    counts = {s: sum(t.status == s for t in trials) for s in ("FINISHED", "KILLED", "FAILED")}
    metrics = {f"trials_{k.lower()}": float(v) for k, v in counts.items()}
    metrics["trial_epochs"] = float(sum(t.epochs for t in trials))
    if best is not None:
        metrics["best/val_neg_elbo"] = best.best_val
        for key, value in best.params.items():
            client.set_tag(parent_id, f"best.{key}", str(value))
        client.set_tag(parent_id, "best.trial_id", best.trial_id)
        client.log_dict(parent_id, best.params, "sweep/best_config.json")
    for key, value in metrics.items():
        client.log_metric(parent_id, key, value)
    client.log_dict(parent_id, [dataclasses.asdict(t) for t in trials], "sweep/trials.json")
    if trials:
        best_id = best.trial_id if best else ""
        with tempfile.TemporaryDirectory() as tmp:
            png = trials_png(trials, space.dimensions, best_id, Path(tmp) / "trials.png")
            client.log_artifact(parent_id, str(png), "sweep")
