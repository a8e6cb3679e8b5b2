"""MLflow tracking of a training job: one run per job, written by the driver and rank 0 only.

Run lifecycle (driver): :func:`open_run` finds the job's run by its tag (a rerun of a named
job, or a worker-group restart, reuses it) or creates it, and records its owner process (see
``run_owner``); :func:`tracked_run` sets its final status truthfully — FINISHED, FAILED on an
error or ``sys.exit(non-zero)``, KILLED on Ctrl-C or SIGTERM (``ray job stop``, Kubernetes) —
so no run is left RUNNING. A SIGKILLed owner can set nothing: :func:`fail_orphaned_runs`, called
at every launch, marks FAILED the RUNNING runs whose owner on this host is provably gone.

Per-epoch logging (rank 0): :class:`EpochLogger` writes through ``MlflowClient`` with the run id,
never ``mlflow.start_run``, so a worker can't end the run or change its status. Metrics go in one
``log_batch`` per epoch: a synchronous ``log_metric`` per step costs ~70% of step time on SQLite.
Its writes pass through an ``Outbox`` (a sender thread): a server outage delays them, in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import yaml

from pipeline.tracking import mlflow_store, run_owner
from pipeline.tracking.outbox import Outbox

log = logging.getLogger(__name__)

JOB_TAG = "vaepipe.job"  # storage path + run name: identifies a job across reruns
END_TAG = "vaepipe.end_reason"  # why the run ended, when not a plain finish
MAX_PARAM_LEN = 500  # MLflow's limit on one param value
PARAM_BATCH = 100  # MLflow's limit on params per log_batch


def _client(tracking_uri: str | None = None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``: nested config as MLflow params."""
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:MAX_PARAM_LEN]
    return out


def open_run(
    experiment: str, run_name: str, job_key: str, attempt_tags: tuple[str, ...] = ()
) -> tuple[str, bool]:
    """The MLflow run of job ``job_key`` (reused, set RUNNING again) or a new one.

    A reused run loses the tags that said how its earlier attempt ended: ``END_TAG`` and the
    caller's ``attempt_tags``. Returns ``(run_id, resumed)``. Call after
    :func:`pipeline.tracking.mlflow_store.configure`.
    """
    client = _client()
    exp_id = mlflow_store.experiment_id(experiment)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`{JOB_TAG}` = '{job_key}'", max_results=1
    )
    owner = run_owner.owner_tags()
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        _set_tags(client, run_id, owner)
        for tag in (END_TAG, *attempt_tags):  # how the earlier attempt ended; this one goes on
            if tag in found[0].data.tags:
                client.delete_tag(run_id, tag)
        return run_id, True
    run = client.create_run(exp_id, run_name=run_name, tags={JOB_TAG: job_key, **owner})
    return run.info.run_id, False


def _set_tags(client, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


@contextlib.contextmanager
def tracked_run(run_id: str) -> Iterator[str]:
    """Sets the run's final status from how the block ends; the block's exception propagates.

    KeyboardInterrupt (Ctrl-C, and SIGTERM as the CLI maps it) → KILLED; ``sys.exit(0)`` →
    FINISHED; any other exception or exit code → FAILED.
    """
    client = _client()
    try:
        yield run_id
    except KeyboardInterrupt as exc:
        _end(client, run_id, "KILLED", type(exc).__name__)
        raise
    except SystemExit as exc:
        ok = exc.code in (0, None)
        _end(client, run_id, "FINISHED" if ok else "FAILED", f"exit code {exc.code}")
        raise
    except BaseException as exc:
        _end(client, run_id, "FAILED", type(exc).__name__)
        raise
    client.set_terminated(run_id, status="FINISHED")


def _end(client, run_id: str, status: str, reason: str) -> None:
    client.set_tag(run_id, END_TAG, reason)
    client.set_terminated(run_id, status=status)


def fail_orphaned_runs() -> list[str]:
    """Mark FAILED every RUNNING run whose owner process on this host is gone; their ids.

    Called at launch, before Ray starts: a SIGKILL (OOM killer, node loss, a job deadline)
    leaves the run RUNNING, and only a later process can tell that nobody owns it any more.
    """
    client = _client()
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    if not exp_ids:
        return []
    host = run_owner.owner_tags()[run_owner.HOST_TAG]
    query = f"attributes.status = 'RUNNING' and tags.`{run_owner.HOST_TAG}` = '{host}'"
    failed = []
    for run in client.search_runs(exp_ids, filter_string=query, max_results=1000):
        tags = run.data.tags
        if run_owner.owner_is_gone(tags):
            reason = f"owner process gone ({run_owner.describe(tags)}), found at a later launch"
            _end(client, run.info.run_id, "FAILED", reason)
            log.warning("run %s was left RUNNING: %s; marked FAILED", run.info.run_id, reason)
            failed.append(run.info.run_id)
    return failed


def log_job_config(run_id: str, config: dict[str, Any], source_file: str | None) -> None:
    """The full resolved config as params and as ``config.yaml``; the user's file as given.

    On a resumed run, params already logged are kept (MLflow forbids changing them); changed
    values are logged under ``resumed.`` tags instead.
    """
    from mlflow.entities import Param, RunTag

    client = _client()
    params = flatten(config)
    existing = client.get_run(run_id).data.params
    new = [Param(k, v) for k, v in params.items() if k not in existing]
    changed = [RunTag(f"resumed.{k}", v) for k, v in params.items() if existing.get(k, v) != v]
    for i in range(0, len(new), PARAM_BATCH):
        client.log_batch(run_id, params=new[i : i + PARAM_BATCH])
    if changed:
        client.log_batch(run_id, tags=changed)
    client.log_text(run_id, yaml.safe_dump(config, sort_keys=False), "config/config.yaml")
    if source_file:
        client.log_artifact(run_id, source_file, "config")


class EpochLogger:
    """Rank 0's MLflow writer: per-epoch metric batches, images, final test metrics."""

    def __init__(self, run_id: str, tracking_uri: str, system_metrics: bool = True) -> None:
        # The URI comes from the driver: a worker's environment predates the driver's settings.
        self.run_id = run_id
        # Importing MLflow and opening its store take seconds in a fresh worker process (3.7 s
        # of the time to the first step on 2 cores, bench/startup.py): in a thread they overlap
        # the first epoch's data start-up and steps; the first log call waits for them.
        self._setup = _in_thread(self._open, tracking_uri, system_metrics)
        self._monitor = None
        # Writes go through an outbox: an outage of the server delays them, in order, instead
        # of failing training. Its retries replace MLflow's own, which back off for ~4 minutes
        # per call (this process is a Ray worker: only this logger and its sampler use MLflow).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        self._outbox = Outbox(tracking_uri or "the default store")
        self._earlier: dict[str, set[int]] = {}  # key -> steps logged before (earlier_steps)

    def _open(self, tracking_uri: str, system_metrics: bool):
        client = _client(tracking_uri)
        self._monitor = _start_system_metrics(self.run_id, tracking_uri) if system_metrics else None
        return client

    @property
    def _client(self):
        return self._setup.result()

    def log_metrics(
        self, metrics: dict[str, float], step: int, prefix: str = "", once_by: str | None = None
    ) -> None:
        """One ``log_batch`` call for all of ``metrics`` at ``step``; with ``once_by`` (one of
        the batch's keys), none if an earlier attempt logged that key at ``step``
        (``earlier_steps``). A batch is logged whole or not at all, so one key stands for all."""
        import time

        now = int(time.time() * 1000)  # when measured, not when the outbox gets it through
        values = [(f"{prefix}{k}", float(v)) for k, v in metrics.items()]

        def write() -> None:  # the check is part of the write: a delayed or retried write redoes it
            client = self._client  # waits until the opening thread has imported MLflow
            # Importing MLflow here, not in the caller's thread: two threads importing its
            # modules at once can deadlock on Python's import locks (a restarted rank 0 logs
            # its checkpointed epochs while the client is still opening).
            from mlflow.entities import Metric

            if once_by is None or step not in self.earlier_steps(once_by):
                batch = [Metric(key, value, now, step) for key, value in values]
                client.log_batch(self.run_id, metrics=batch, synchronous=True)

        self._outbox.put(write)

    def earlier_steps(self, key: str) -> set[int]:
        """Steps of ``key`` the run had before this logger wrote it: an earlier attempt's.

        A worker group restarted from its last checkpoint redoes the epochs after it, some of
        which the failed attempt may have logged already; MLflow keeps every value logged, so
        a step logged twice would appear twice in the metric's history. Read once per key (by
        the outbox's sender, before that key's first write).
        """
        if key not in self._earlier:
            history = self._client.get_metric_history(self.run_id, key)
            self._earlier[key] = {m.step for m in history}
        return self._earlier[key]

    def log_images(
        self, images: dict[str, np.ndarray], step: int, once_by: str | None = None
    ) -> None:
        """Images ``(H, W, C)`` uint8, one MLflow image key each, stepped by epoch; with
        ``once_by`` (a metric key), none if an earlier attempt logged that key at ``step``."""
        for key, image in images.items():

            def write(key: str = key, image: np.ndarray = image) -> None:  # as in log_metrics
                if once_by is None or step not in self.earlier_steps(once_by):
                    self._client.log_image(self.run_id, image, key=key, step=step)

            self._outbox.put(write)

    def close(self) -> None:
        """Send every queued write (waiting out an outage, within the outbox's bound)."""
        try:
            self._outbox.close()
        finally:
            self._stop_monitor()

    def _stop_monitor(self) -> None:
        self._setup.result()  # a monitor still starting would otherwise outlive the logger
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None


def _in_thread(fn, *args) -> Future:
    """``fn(*args)`` started in a daemon thread; its result (or exception) as a Future."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=target, name="vaepipe-mlflow-open", daemon=True).start()
    return future


def _start_system_metrics(run_id: str, tracking_uri: str):
    """MLflow's CPU/memory/GPU sampler thread (every 10 s, batched); None if unavailable."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, resume_logging=True, tracking_uri=tracking_uri)
        monitor.start()
        return monitor
    except Exception as exc:  # psutil missing or the sampler can't start: metrics are optional
        log.warning("system metrics disabled: %s", exc)
        return None
