"""Ctrl-C during `vaepipe train`: the MLflow run ends KILLED, nothing is registered, exit 130."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.ray  # the command starts its own local Ray

START_TIMEOUT_S = 180


def _first_run(client: MlflowClient):
    exp = client.get_experiment_by_name("interrupt")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return runs[0] if runs else None


def _wait_for_first_epoch(proc: subprocess.Popen, client: MlflowClient) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        run = _first_run(client)
        if run is not None and run.data.metrics.get("epoch", 0) >= 1:
            return run.info.run_id
        time.sleep(1)
    pytest.fail(f"no epoch logged within {START_TIMEOUT_S} s")


def test_ctrl_c_marks_the_run_killed_and_registers_nothing(tmp_path, mlflow_tmp_store):
    cmd = [sys.executable, "-m", "jobs.cli", "train", "--data", "digits", "--config", "digits"]
    cmd += ["--epochs", "200", "--experiment", "interrupt", "--model-name", "interrupted"]
    cmd += ["--set", f"tracking.storage_path={tmp_path / 'ray_results'}"]
    cmd += ["--set", "train.early_stopping_patience=null"]  # still training when Ctrl-C comes
    cmd += ["--set", "data.limit=300", "--set", "train.log_images=false"]  # a quick first epoch
    # The project is installed (editable) in the venv, so `jobs` imports from any cwd.
    # Ctrl-C's default action for the child, whatever this process inherited: pytest started as
    # a background job of a non-interactive shell ignores SIGINT, and so would the child
    # (Python then installs no KeyboardInterrupt handler: the job ran to its end).
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        text=True,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        client = MlflowClient(mlflow_tmp_store)
        run_id = _wait_for_first_epoch(proc, client)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert client.get_run(run_id).info.status == "KILLED"
    assert client.search_registered_models(filter_string="name = 'interrupted'") == []
