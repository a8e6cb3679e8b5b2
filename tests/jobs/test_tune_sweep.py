"""`vaepipe tune` end to end: Ctrl-C mid-sweep, a rerun whose driver is killed (SIGKILL), then
the same command resumes and finishes.

One grid sweep of two digits trials run one at a time: a short one (2 epochs) and a longer one
(8 epochs). Ctrl-C arrives once the short trial has finished and the long one has logged an
epoch; the rerun's driver is killed -9 once the long trial has logged a further epoch (nothing
closes its runs: they stay RUNNING). The last rerun must keep the finished trial (not re-run
it), continue the other in the same MLflow run, leave no run RUNNING, and register the best
trial's model.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.ray  # the command starts its own local Ray

SPACE = "train.epochs: {grid: [2, 8]}\noptim.lr: {choice: [0.002]}\n"
START_TIMEOUT_S = 240
PARENT_TAG = "mlflow.parentRunId"


def _command(tmp_path) -> list[str]:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    cmd = [sys.executable, "-m", "jobs.cli", "tune", "--config", "digits", "--space", str(space)]
    cmd += ["--scheduler", "fifo", "--max-concurrent", "1", "--name", "sweep1", "--json"]
    cmd += ["--set", "tracking.experiment=tune", "--set", "tracking.model_name=tuned"]
    cmd += ["--set", "train.early_stopping_patience=null"]
    return cmd + ["--set", f"tracking.storage_path={tmp_path / 'ray_results'}"]


def _runs(client: MlflowClient):
    exp = client.get_experiment_by_name("tune")
    if exp is None:
        return None, []
    found = client.search_runs([exp.experiment_id])
    parents = [r for r in found if PARENT_TAG not in r.data.tags]
    children = [r for r in found if PARENT_TAG in r.data.tags]
    return (parents[0] if parents else None), children


def _short_done_long_started(client: MlflowClient) -> bool:
    _, children = _runs(client)
    by_epochs = {r.data.params.get("train.epochs"): r for r in children}
    short, long = by_epochs.get("2"), by_epochs.get("8")
    return (
        short is not None
        and short.info.status == "FINISHED"
        and long is not None
        and long.data.metrics.get("epoch", 0) >= 1
    )


def _long_epoch(client: MlflowClient) -> float:
    _, children = _runs(client)
    long = next((r for r in children if r.data.params.get("train.epochs") == "8"), None)
    return long.data.metrics.get("epoch", 0) if long is not None else 0


def _signal_when(proc: subprocess.Popen, ready, sig: int) -> str:
    """Send ``sig`` to the sweep's driver once ``ready()``; its stderr."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if ready():
            proc.send_signal(sig)
            return proc.communicate(timeout=120)[1]
        time.sleep(0.5)
    pytest.fail(f"the sweep did not reach the point to interrupt within {START_TIMEOUT_S} s")


def _run_until(tmp_path, ready, sig: int) -> tuple[int, str]:
    proc = subprocess.Popen(
        _command(tmp_path),
        cwd=tmp_path,
        text=True,
        stderr=subprocess.PIPE,
        # Ctrl-C's default action, whatever this process inherited (see test_train_interrupt).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        stderr = _signal_when(proc, ready, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr


def test_ctrl_c_then_rerun_resumes_the_sweep_and_registers_the_best(tmp_path, mlflow_tmp_store):
    client = MlflowClient(mlflow_tmp_store)
    code, stderr = _run_until(tmp_path, lambda: _short_done_long_started(client), signal.SIGINT)
    assert code == 130, stderr[-3000:]
    parent, children = _runs(client)
    assert parent.info.status == "KILLED"
    statuses = {r.data.params["train.epochs"]: r.info.status for r in children}
    assert statuses == {"2": "FINISHED", "8": "KILLED"}
    short = next(r for r in children if r.data.params["train.epochs"] == "2")
    assert client.search_registered_models(filter_string="name = 'tuned'") == []

    # Resumed, then the driver killed -9 once the long trial has gone on by an epoch.
    at_ctrl_c = _long_epoch(client)
    code, stderr = _run_until(tmp_path, lambda: _long_epoch(client) > at_ctrl_c, signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr[-3000:]
    parent_killed, children_killed = _runs(client)
    assert parent_killed.info.status == "RUNNING"  # nobody was left to close it
    statuses = {r.data.params["train.epochs"]: r.info.status for r in children_killed}
    assert statuses == {"2": "FINISHED", "8": "RUNNING"}
    assert {r.info.run_id for r in children_killed} == {r.info.run_id for r in children}

    done = subprocess.run(_command(tmp_path), cwd=tmp_path, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    parent_again, children_again = _runs(client)
    assert parent_again.info.run_id == parent.info.run_id == result["run_id"]
    assert parent_again.info.status == "FINISHED"
    assert sorted(r.info.run_id for r in children_again) == sorted(r.info.run_id for r in children)
    assert {r.info.status for r in children_again} == {"FINISHED"}
    # The finished trial was not re-run: its run is untouched, two epochs logged once each.
    short_again = client.get_run(short.info.run_id)
    assert short_again.info.end_time == short.info.end_time
    assert [m.step for m in client.get_metric_history(short.info.run_id, "epoch")] == [1, 2]
    # The long trial went on from its checkpoint to its last epoch (an epoch cut short by
    # Ctrl-C or the kill between its log and its checkpoint is logged again).
    long_id = next(r.info.run_id for r in children if r.data.params["train.epochs"] == "8")
    steps = [m.step for m in client.get_metric_history(long_id, "epoch")]
    assert sorted(set(steps)) == list(range(1, 9))
    # The best trial's model is registered from its run, as candidate (and first champion).
    assert result["best"]["trial_id"] == parent_again.data.tags["best.trial_id"]
    version = client.get_model_version_by_alias("tuned", "candidate")
    assert version.run_id == result["best"]["run_id"]
    assert result["aliases"] == ["candidate", "champion"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/trials.png", "sweep/space.yaml", "sweep/best_config.json"} <= artifacts
