"""Items 1, 2 and 5 of the reliability tier: a training worker killed, killed for good, or hung.

1. A worker SIGKILLed mid-training resumes from the last checkpoint; the job ends as one
   FINISHED run whose ``epoch`` metric has every step exactly once, and one model version.
2. A worker that dies on every attempt exhausts ``train.max_failures``: ``vaepipe train`` exits
   non-zero soon after the last death with one line naming the rank and the cause; the run is
   FAILED and nothing is registered.
5. A worker that hangs (alive, no progress) is detected within ``train.hang_timeout_s`` and the
   job restarts from its checkpoint and finishes: shown with a single worker, which no peer's
   collective timeout can catch (its own watchdog, ``pipeline.train.watchdog``, ends it).

Faults are hooks that act at a fixed point of the loop and leave a marker file (``fault_hooks``),
never timed. One local Ray for the module; each test has its own MLflow server (PostgreSQL),
storage and model name. Tiny model, 300 rows per split.
"""

from __future__ import annotations

import time

import fault_hooks
import pytest
from hooked_training import cli_with_hook, tiny_options
from mlflow import MlflowClient

from pipeline.config.job import load_job_config
from pipeline.train.trainer import run_training

pytestmark = [pytest.mark.reliability, pytest.mark.ray]

EXPERIMENT = "worker-faults"


def _options(tmp_path, run_name: str, *extra: str) -> list[str]:
    return tiny_options(tmp_path, run_name, EXPERIMENT, 2, *extra)


def _run_named(client: MlflowClient, name: str):
    exp = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
    return run


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """Every logged step of ``key``, duplicates kept, in step order."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_sigkilled_worker_resumes_into_one_run_with_each_epoch_once(
    ray_local, tracking_server, tmp_path
):
    marker = tmp_path / "sigkill-fired"
    cfg = load_job_config("digits", _options(tmp_path, "sigkill", "train.epochs=3"))
    fault_hooks.by_value()
    # Rank 0 dies once epoch 2 is in MLflow, before epoch 2 is checkpointed: the restart redoes
    # epoch 2, which must not reach MLflow twice.
    hook = fault_hooks.SigkillOnce(str(marker), rank=0, epoch=1, tracking_uri=tracking_server.uri)
    result = run_training(cfg, hooks=[hook])

    assert marker.exists()  # the fault fired
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert [r.info.run_id for r in runs] == [result.run_id]
    assert runs[0].info.status == "FINISHED"
    steps = _steps(client, result.run_id, "epoch")
    print(f"epoch steps logged: {steps}")
    assert steps == [1, 2, 3]
    assert _steps(client, result.run_id, "val/neg_elbo") == [1, 2, 3]
    # The restarted attempt redid epoch 2 (from the epoch-1 checkpoint) and ran epoch 3.
    assert [h["epoch"] for h in result.history] == [2.0, 3.0]
    # The epoch-2 figures kept in MLflow are the first attempt's; the redo computed the same.
    (logged,) = [m for m in client.get_metric_history(result.run_id, "val/neg_elbo") if m.step == 2]
    assert logged.value == pytest.approx(result.history[0]["val/neg_elbo"], rel=1e-4)
    assert result.metrics["epochs_completed"] == 3.0
    versions = client.search_model_versions(f"name = '{cfg.tracking.model_name}'")
    assert [(v.version, v.run_id) for v in versions] == [("1", result.run_id)]


def test_spent_failure_budget_fails_fast_in_one_line(
    ray_local, tracking_server, tmp_path, monkeypatch, capfd
):
    kills = tmp_path / "kills"
    kills.mkdir()
    options = _options(tmp_path, "doomed", "train.epochs=2", "train.max_failures=1")
    sets = [arg for option in options for arg in ("--set", option)]
    hook = fault_hooks.SigkillEveryAttempt(str(kills), rank=1)
    code = cli_with_hook(monkeypatch, hook, "train", "--config", "digits", *sets)
    ended = time.time()

    err = capfd.readouterr().err
    assert sorted(p.name for p in kills.iterdir()) == ["kill-1", "kill-2"]  # both attempts died
    seconds = ended - fault_hooks.stamped_at(kills / "kill-2")
    print(f"exit {seconds:.1f}s after the last failure; stderr: {err.strip()!r}")
    assert code == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "vaepipe: error: training failed after 1 restart (train.max_failures=1): "
        "rank 1: its process died ("
    ), last
    assert seconds < 30
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    assert _run_named(client, "doomed").info.status == "FAILED"
    assert client.search_model_versions("name = 'doomed-vae'") == []


def test_hung_single_worker_is_ended_by_its_watchdog_and_the_job_resumes(
    ray_local, tracking_server, tmp_path
):
    # One worker: no peer and no collective to time out; only its watchdog can tell.
    hung, resumed = tmp_path / "hung", tmp_path / "resumed"
    timeout_s = 10
    extra = ("train.epochs=2", "scaling.workers=1", f"train.hang_timeout_s={timeout_s}")
    cfg = load_job_config("digits", _options(tmp_path, "hung", *extra))
    fault_hooks.by_value()
    hook = fault_hooks.HangOnce(str(hung), str(resumed), rank=0, epoch=1)
    result = run_training(cfg, hooks=[hook])

    restarted = fault_hooks.stamped_at(resumed) - fault_hooks.stamped_at(hung)
    print(f"hung worker ended and the group set up again after {restarted:.1f}s ({timeout_s}s)")
    # Not before the timeout; within its check interval (a quarter of it) plus a restart.
    assert timeout_s <= restarted < timeout_s * 1.25 + 60
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    assert client.get_run(result.run_id).info.status == "FINISHED"
    assert _steps(client, result.run_id, "epoch") == [1, 2]
    assert [h["epoch"] for h in result.history] == [2.0]  # resumed after epoch 1's checkpoint
