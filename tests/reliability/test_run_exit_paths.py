"""Item 11 (exit paths): every way a training launch ends leaves its MLflow run truthful.

Normal end FINISHED; exception and ``sys.exit(1)`` FAILED; SIGTERM (what ``ray job stop`` and
Kubernetes send) KILLED; SIGKILL leaves the run RUNNING until the next launch against the same
store finds its owner process gone and marks it FAILED. Failed or killed runs register nothing.
Item 4: the SIGKILLed job, submitted again, resumes from its last checkpoint into the same run.
The tracking server is real (PostgreSQL-backed); faults are signals sent once the run has
logged its first epoch (observed in MLflow), never timed.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import servers
from mlflow import MlflowClient

from pipeline.cluster import secrets_files
from pipeline.tracking import run_owner, runs

pytestmark = pytest.mark.reliability

MODEL = "exit_paths_vae"
EXPERIMENT = "exit-paths"


def _train_args(tmp: Path, run_name: str, epochs: int) -> list[str]:
    return [
        "train", "--data", "digits", "--config", "digits", "--epochs", str(epochs),
        "--workers", "1", "--experiment", EXPERIMENT, "--model-name", MODEL,
        "--run-name", run_name, "--set", "data.limit=300", "--set", "train.nll_samples=10",
        "--set", "train.early_stopping_patience=null", "--set", "train.log_images=false",
        "--set", f"tracking.storage_path={tmp / 'ray_results'}",
    ]  # fmt: skip


def _wait_first_epoch(proc: subprocess.Popen, client: MlflowClient, name: str) -> str:
    return servers.wait_first_epoch(proc, client, EXPERIMENT, name)


def _versions(client: MlflowClient) -> list:
    return client.search_model_versions(f"name = '{MODEL}'")


ENDINGS = [
    ("ok", "FINISHED", 0),
    ("exit0", "FINISHED", 0),
    ("raise", "FAILED", 1),
    ("exit1", "FAILED", 1),
]


def test_run_status_follows_how_the_driver_ends(tracking_server, tmp_path):
    """Normal end, ``sys.exit(0)``, an exception, ``sys.exit(1)``: one driver process each."""
    env = servers.isolated_env(
        tmp_path, secrets.token_hex(8), MLFLOW_TRACKING_URI=tracking_server.uri
    )
    driver = Path(__file__).with_name("lifecycle_driver.py")
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    for how, status, code in ENDINGS:
        proc = subprocess.run(
            [sys.executable, str(driver), how, EXPERIMENT],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == code, (how, proc.stderr[-3000:])
        run = client.get_run(proc.stdout.split()[0])
        assert run.info.status == status, how
        assert all(run.data.tags.get(t) for t in run_owner.OWNER_TAGS)


def test_sigkilled_driver_resubmitted_resumes_into_the_same_run(tracking_server, tmp_path):
    """Item 4, and item 11's SIGKILL: the driver is killed once epoch 1 is checkpointed (and in
    MLflow); its run stays RUNNING until the same job is submitted again, which marks it FAILED,
    then resumes it from that checkpoint into the same run and finishes it."""
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    args = _train_args(tmp_path, "killed", 2)
    held = tmp_path / "held"
    marker = secrets.token_hex(8)
    env = servers.isolated_env(tmp_path, marker, MLFLOW_TRACKING_URI=tracking_server.uri)
    driver = Path(__file__).with_name("held_cli.py")
    killed = subprocess.Popen(
        [sys.executable, str(driver), str(held), "--", *args], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        dead_id = _wait_first_epoch(killed, client, "killed")
        while not held.exists():  # rank 0 holds after epoch 1's checkpoint: observed state
            assert killed.poll() is None, killed.communicate()[1][-3000:]
            time.sleep(0.2)
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
    finally:
        servers.kill_marked(marker)  # its local Ray, orphaned by the SIGKILL
    assert client.get_run(dead_id).info.status == "RUNNING"  # nobody could say otherwise yet

    marker = secrets.token_hex(8)
    env = servers.isolated_env(tmp_path, marker, MLFLOW_TRACKING_URI=tracking_server.uri)
    started = time.monotonic()
    again = servers.vaepipe_popen(env, tmp_path, *args)  # the same job, submitted again
    try:
        _, stderr = again.communicate(timeout=600)
    finally:
        servers.kill_marked(marker)
    print(f"the resubmitted job took {time.monotonic() - started:.1f}s")
    assert again.returncode == 0, stderr[-3000:]
    assert f"run {dead_id} was left RUNNING: owner process gone (pid " in stderr
    assert "; marked FAILED" in stderr
    assert f"resuming MLflow run {dead_id} after epoch 1, from checkpoint " in stderr
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.run_id == dead_id
    assert run.info.status == "FINISHED"
    assert runs.END_TAG not in run.data.tags  # the earlier attempt's end no longer applies
    epochs = sorted(m.step for m in client.get_metric_history(dead_id, "epoch"))
    assert epochs == [1, 2]
    assert [v.run_id for v in _versions(client)] == [dead_id]


def test_sigterm_ends_the_run_killed_and_registers_nothing(tracking_server, tmp_path):
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    marker = secrets.token_hex(8)
    env = servers.isolated_env(tmp_path, marker, MLFLOW_TRACKING_URI=tracking_server.uri)
    proc = servers.vaepipe_popen(env, tmp_path, *_train_args(tmp_path, "terminated", 500))
    try:
        run_id = _wait_first_epoch(proc, client, "terminated")
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
        print(f"exit {time.monotonic() - signalled:.1f}s after SIGTERM")
    finally:
        servers.kill_marked(marker)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "vaepipe: terminated (SIGTERM)"
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[runs.END_TAG] == "Terminated"
    assert _versions(client) == []
    # The token the local ray.init used was written 0600 from the start (item 13).
    assert secrets_files.is_private(tmp_path / "home" / ".ray" / "auth_token")
