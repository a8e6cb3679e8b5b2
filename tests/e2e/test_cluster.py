"""The cluster path against real servers: a token-auth Ray head and an MLflow server (PostgreSQL,
basic auth; jobs log with the credentials the Ray nodes carry).

One local stack for the module. Tests run in file order: train registers the model that
encode then reads (``models:/NAME@champion``).
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from cluster_helpers import (
    client_env,
    is_running,
    last_json,
    mnist_subset_ids,
    needs_modules,
    start_stack,
    stop_stack,
    vaepipe,
)

pytestmark = pytest.mark.e2e

MODEL = "e2e_vae"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres):
    state = start_stack(tmp_path_factory.mktemp("stack"), num_cpus=4, postgres=postgres)
    try:
        yield state
    finally:
        if is_running(state):  # the last test stops it; this covers a failure before that
            stop_stack(state)


@pytest.fixture
def env(stack, tmp_path):
    return client_env(stack, HOME=str(tmp_path / "home"))


def test_submission_without_a_token_is_refused(stack, env):
    env.pop("RAY_AUTH_TOKEN_PATH")
    proc = vaepipe(env, "submit", "--", "train", "--help", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"vaepipe: error: Ray cluster at {stack.dashboard_url} requires a token: set "
        "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, or put it in ~/.ray/auth_token"
    )


def test_submission_with_a_wrong_token_is_refused(stack, env):
    env["RAY_AUTH_TOKEN"] = "0" * 64
    proc = vaepipe(env, "submit", "--", "train", "--help", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"vaepipe: error: Ray cluster at {stack.dashboard_url} refused the token from "
        "RAY_AUTH_TOKEN"
    )


def test_job_succeeds_and_its_logs_are_followed(env):
    proc = vaepipe(env, "submit", "--", "train", "--help", timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "usage: vaepipe train" in proc.stdout


def test_failed_job_exit_code_is_mirrored_and_listed(env):
    # `encode` without its required flags: argparse exits 2 inside the job.
    proc = vaepipe(env, "submit", "--submission-id", "e2e-fails", "--", "encode", timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert "the following arguments are required: --model" in proc.stdout
    listed = vaepipe(env, "jobs", "list", timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "e2e-fails\tFAILED\tpython -m jobs.cli encode" in listed.stdout


def test_no_wait_then_follow_with_jobs_logs(env):
    proc = vaepipe(env, "submit", "--no-wait", "--", "evaluate", "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().splitlines()[-1]
    logs = vaepipe(env, "jobs", "logs", job_id, "--follow", timeout=180)
    assert logs.returncode == 0, logs.stderr
    assert "usage: vaepipe evaluate" in logs.stdout


def test_train_registers_a_model_on_the_server(stack, env, mnist_subset, monkeypatch):
    needs_modules("jobs.train", "pipeline.train.trainer", "pipeline.data.ingest")
    proc = vaepipe(
        env, "submit", "--", "train", "--data", str(mnist_subset), "--epochs", "1",
        "--workers", "1", "--model-name", MODEL, "--experiment", "e2e", "--json",
        "--set", "train.nll_samples=10",  # the final IS-NLL's path, not its 1000-sample cost
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    result = last_json(proc.stdout)
    from mlflow import MlflowClient

    for key, value in stack.auth().client_env().items():  # the server requires basic auth
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert str(result["version"]) == version.version
    assert version.run_id == result["run_id"]


def test_encode_commits_latents_for_every_input_id(stack, env, mnist_subset, tmp_path):
    needs_modules("jobs.encode", "pipeline.inference.encode", "pipeline.data.ingest")
    out = tmp_path / "latents"
    proc = vaepipe(
        env, "submit", "--", "encode", "--model", f"models:/{MODEL}@champion",
        "--data", str(mnist_subset), "--out", str(out), "--json",
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (out / "_SUCCESS").exists()
    table = pq.read_table(out, columns=["id", "mu"])
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert set(ids) == mnist_subset_ids()


def test_stack_stops_and_leaves_no_process(stack):
    stop_stack(stack)  # asserts that no process carrying the stack's marker is left
