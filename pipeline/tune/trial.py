"""One trial of a sweep: the Tune function trainable that runs a ``vaepipe train`` job.

Train V2's pattern: the trainable builds a ``TorchTrainer`` for its sampled config and fits it;
Tune's ``TuneReportCallback`` forwards every ``ray.train.report`` of rank 0 (one per epoch,
with ``val/neg_elbo`` and ``epoch``) to Tune, which is what ASHA decides on. The trial's job is
the same as ``vaepipe train``'s (``pipeline.train.trainer`` builds it), tracked in its own MLflow
run nested under the sweep's run, and checkpointed under ``<storage>/<sweep>-<trial id>``: a
trial restarted by a resumed sweep continues from its last checkpoint, in the same MLflow run.

A trial ends its MLflow run only when its job finishes (FINISHED). Any other end is the sweep
driver's to set, once ``fit()`` returns and Tune has said how each trial ended: a trial that
Tune stops (ASHA, the time budget, Ctrl-C) may still be unwinding in its actor then, and its
stop reaches it as an error — had it ended its own run FAILED, that write could land after the
driver's KILLED. So a failing trial only tags when it failed (``ERROR_AT_TAG``). A trial
registers nothing: the sweep registers the best one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.config.job import TrainJobConfig, apply_override
from pipeline.train.resources import WorkerPlan
from pipeline.train.worker_config import WorkerConfig

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
TRIAL_TAG = "vaepipe.trial_id"
SWEEP_TAG = "vaepipe.sweep"
ERROR_AT_TAG = "vaepipe.trial_error_at"  # time.time() when the trial's job raised


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares (passed to Tune with ``tune.with_parameters``)."""

    name: str
    base: dict[str, Any]
    """The base job config (``TrainJobConfig.to_dict()``) the sampled keys override."""
    workers: WorkerPlan
    storage: str
    parent_run_id: str | None
    tracking_uri: str | None

    def trial_run_name(self, trial_id: str) -> str:
        return f"{self.name}-{trial_id}"


def trial_config(base: dict[str, Any], params: dict[str, Any], run_name: str) -> TrainJobConfig:
    """The base config with the trial's sampled ``params`` (dotted keys) applied.

    Trials skip the IS-NLL (k forward passes per test example): the sweep ranks trials by
    validation -ELBO, and ``vaepipe evaluate`` measures the registered best.
    """
    import copy
    import json

    raw = copy.deepcopy(base)
    for key, value in params.items():
        apply_override(raw, f"{key}={json.dumps(value)}")
    cfg = TrainJobConfig.from_dict(raw)
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, nll_samples=0),
        tracking=dataclasses.replace(cfg.tracking, run_name=run_name),
    )


def run_trial(config: dict[str, Any], sweep: SweepContext) -> None:
    """Tune's entry point for one trial (runs in the trial's actor)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipeline.data.ingest import open_source
    from pipeline.train import trainer
    from pipeline.train.mlflow_hook import MlflowEpochLogging
    from pipeline.tune.space import trial_params

    params = trial_params(config)
    trial_id = ray.tune.get_context().get_trial_id()
    run_name = sweep.trial_run_name(trial_id)
    cfg = trial_config(sweep.base, params, run_name)
    source = open_source(cfg.data)
    cfg = trainer.with_input_shape(cfg, source.layout)
    preprocessor = trainer.build_preprocessor(cfg, source)
    worker = trainer.worker_config(
        cfg, source, preprocessor, sweep.workers, run_name, sweep.storage,
        sweep.workers.threads_per_worker,
    )  # fmt: skip

    def fit(worker: WorkerConfig) -> None:
        job = trainer.build_trainer(
            cfg, source, sweep.workers, worker, run_name, sweep.storage,
            callbacks=[TuneReportCallback()],
        )  # fmt: skip
        try:
            job.fit()
        except Exception as exc:
            ask = trainer.resource_ask(cfg, sweep.workers)
            raise trainer.user_facing(exc, cfg.train.max_failures, ask) from None

    if sweep.parent_run_id is None:
        fit(worker)
        return
    run_id = _open_trial_run(sweep, cfg, trial_id, run_name, params)
    logging = MlflowEpochLogging(run_id, sweep.tracking_uri)
    with _finished_or_tagged(run_id):
        fit(dataclasses.replace(worker, hooks=(logging,)))


@contextlib.contextmanager
def _finished_or_tagged(run_id: str) -> Iterator[None]:
    """FINISHED if the block completes; else the error's time as a tag, the run left to the
    sweep's driver (see the module docstring)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        yield
    except BaseException:
        client.set_tag(run_id, ERROR_AT_TAG, f"{time.time():.3f}")
        raise
    client.set_terminated(run_id, status="FINISHED")


def _open_trial_run(sweep: SweepContext, cfg: TrainJobConfig, trial_id: str, run_name, params):
    import mlflow
    from mlflow import MlflowClient

    from pipeline.tracking import runs

    mlflow.set_tracking_uri(sweep.tracking_uri)
    mlflow.set_registry_uri(sweep.tracking_uri)
    job_key = f"{sweep.storage}/{run_name}"
    run_id, _resumed = runs.open_run(
        cfg.tracking.experiment, run_name, job_key, attempt_tags=(ERROR_AT_TAG,)
    )
    tags = {PARENT_TAG: sweep.parent_run_id, TRIAL_TAG: trial_id, SWEEP_TAG: sweep.name}
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    runs.log_job_config(run_id, cfg.to_dict(), None)
    for key, value in params.items():
        client.set_tag(run_id, f"trial.{key}", str(value))
    return run_id
