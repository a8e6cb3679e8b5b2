"""Items 13 and 14: what the local stack exposes, probed over HTTP like an outsider would.

One real stack for the module: a token-auth Ray head and an MLflow server (basic-auth app,
PostgreSQL backend) on 127.0.0.1. Ray: the Jobs API answers 401 without the token (listing,
submitting, stopping), 403 with a wrong one, 200 with it; token files are 0600. MLflow:
nothing without credentials; a read-only user cannot register a version of, or move an alias
on, a model it does not own (MLflow lets any authenticated user create a *new* model, which
it then owns); a foreign ``Host`` and a cross-origin write are refused; artifact paths cannot
climb out of the artifact root.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.cluster import local_stack, secrets_files

pytestmark = pytest.mark.reliability

READER, READER_PASSWORD = "reader", "reader-password-1234"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres):
    root = tmp_path_factory.mktemp("exposed")
    state = local_stack.start(root, num_cpus=1, backend_store_uri=postgres.create_database())
    try:
        yield state
    finally:
        local_stack.stop(root)


def _request(url: str, method: str = "GET", body: dict | None = None, **headers: str):
    """(status, body text) of one HTTP request; errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _bearer(state) -> dict[str, str]:
    return {"Authorization": f"Bearer {Path(state.token_path).read_text().strip()}"}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _admin(state) -> dict[str, str]:
    auth = state.auth()
    return _basic(auth.username, auth.password())


# ----------------------------------------------------------------------------- Ray (item 13)


def test_ray_jobs_api_needs_the_token(stack):
    jobs = f"{stack.dashboard_url}/api/jobs/"
    assert _request(jobs)[0] == 401
    assert _request(jobs, Authorization="Bearer " + "0" * 64)[0] == 403
    assert _request(jobs, **_bearer(stack))[0] == 200


def test_ray_job_submit_and_stop_without_the_token_are_refused(stack):
    jobs = f"{stack.dashboard_url}/api/jobs/"
    status, _ = _request(jobs, "POST", {"entrypoint": "touch /tmp/vp_should_not_exist"})
    assert status == 401
    assert _request(f"{jobs}any-job/stop", "POST", {})[0] == 401
    assert _request(jobs, **_bearer(stack)) == (200, "[]")  # nothing was submitted


def test_secret_files_are_private_from_creation(stack, tmp_path):
    assert secrets_files.is_private(Path(stack.token_path))
    assert secrets_files.is_private(Path(stack.auth().password_file))
    old = os.umask(0)  # the most permissive umask cannot widen them
    try:
        path = secrets_files.write_private(tmp_path / "d" / "token", "x")
    finally:
        os.umask(old)
    assert secrets_files.is_private(path)
    assert (path.parent.stat().st_mode & 0o777) == 0o700


# ----------------------------------------------------------------------------- MLflow (14)


def test_mlflow_needs_credentials(stack):
    search = f"{stack.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _request(search)[0] == 401
    assert _request(search, **_basic(stack.auth().username, "wrong-password-123"))[0] == 401
    assert _request(search, **_admin(stack))[0] == 200
    assert _request(f"{stack.mlflow_uri}/health")[0] == 200  # probes stay open


def test_read_only_user_cannot_register_or_move_an_alias(stack, monkeypatch):
    created = _request(
        f"{stack.mlflow_uri}/api/2.0/mlflow/users/create", "POST",
        {"username": READER, "password": READER_PASSWORD}, **_admin(stack),
    )  # fmt: skip
    assert created[0] == 200, created
    auth = stack.auth()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", auth.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth.password())
    admin = MlflowClient(stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    run = admin.create_run(admin.create_experiment("guarded"))
    admin.create_registered_model("guarded")
    version = admin.create_model_version(
        "guarded", f"runs:/{run.info.run_id}/model", run.info.run_id
    )
    admin.set_registered_model_alias("guarded", "champion", version.version)

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", READER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", READER_PASSWORD)
    reader = MlflowClient(stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    assert reader.get_model_version_by_alias("guarded", "champion").version == version.version
    with pytest.raises(MlflowException, match="403|Permission denied"):
        reader.create_model_version("guarded", f"runs:/{run.info.run_id}/model", run.info.run_id)
    with pytest.raises(MlflowException, match="403|Permission denied"):
        reader.set_registered_model_alias("guarded", "champion", "1")
    with pytest.raises(MlflowException, match="403|Permission denied"):
        reader.delete_registered_model_alias("guarded", "champion")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", auth.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth.password())
    assert [v.version for v in admin.search_model_versions("name = 'guarded'")] == ["1"]
    assert admin.get_model_version_by_alias("guarded", "champion").version == "1"


def test_foreign_host_and_cross_origin_writes_are_refused(stack, monkeypatch):
    search = f"{stack.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _request(search, Host="evil.example.com", **_admin(stack))[0] == 403
    create = f"{stack.mlflow_uri}/api/2.0/mlflow/experiments/create"
    body = {"name": "from-elsewhere"}
    status, _ = _request(create, "POST", body, Origin="http://evil.example.com", **_admin(stack))
    assert status == 403
    auth = stack.auth()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", auth.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth.password())
    assert (
        MlflowClient(stack.mlflow_uri, registry_uri=stack.mlflow_uri).get_experiment_by_name(
            "from-elsewhere"
        )
        is None
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.0/mlflow-artifacts/artifacts/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/2.0/mlflow-artifacts/artifacts/%2Fetc%2Fpasswd",
        "/get-artifact?path=..%2F..%2F..%2Fetc%2Fpasswd&run_uuid=x",
    ],
)
def test_artifact_path_traversal_is_refused(stack, path):
    status, body = _request(f"{stack.mlflow_uri}{path}", **_admin(stack))
    assert 400 <= status < 500, (status, body[:300])
    assert "root:" not in body
