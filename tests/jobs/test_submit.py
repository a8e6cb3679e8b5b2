"""Fast tests of `vaepipe submit`, `vaepipe jobs` and `vaepipe ui`: arguments, env, exit codes."""

from __future__ import annotations

import argparse
import shlex
import socket

import pytest

from jobs import cli, jobs_cmd, submit, ui
from pipeline.cluster import submission
from pipeline.errors import UserError


def parse(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["--", "train", "--epochs", "2"],
        ["train", "--epochs", "2"],
    ],
)
def test_command_after_separator_is_passed_through(argv):
    args = parse(submit, ["--address", "http://h:1", *argv])
    assert args.address == "http://h:1"
    assert submit.vaepipe_args(args) == ["train", "--epochs", "2"]


def test_options_after_separator_belong_to_the_job():
    args = parse(submit, ["--no-wait", "--", "encode", "--address", "x", "--no-wait"])
    assert args.no_wait and args.address is None
    assert submit.vaepipe_args(args) == ["encode", "--address", "x", "--no-wait"]


def test_entrypoint_runs_the_cli_module_with_quoted_args():
    entry = submission.entrypoint(["train", "--data", "/data/my set", "--set", "a.b=1"])
    assert shlex.split(entry) == [
        "python", "-m", "jobs.cli", "train", "--data", "/data/my set", "--set", "a.b=1",
    ]  # fmt: skip


@pytest.mark.parametrize("argv", [[], ["ui"], ["submit", "train"], ["nope"]])
def test_entrypoint_rejects_commands_that_do_not_run_on_a_cluster(argv):
    with pytest.raises(UserError, match="submit runs one of train, encode, evaluate"):
        submission.entrypoint(argv)


def test_submittable_commands_are_real_cli_commands():
    assert set(submission.SUBMITTABLE) <= set(cli.COMMANDS)


@pytest.mark.parametrize(
    ("status", "driver_code", "expected"),
    [
        ("SUCCEEDED", 0, 0),
        ("SUCCEEDED", None, 0),
        ("FAILED", None, 1),
        ("FAILED", 1, 1),
        ("FAILED", 2, 2),  # a UserError in the job keeps its exit code
        ("FAILED", -9, 1),  # killed by a signal: still a failure
        ("STOPPED", None, 130),
    ],
)
def test_exit_code_mirrors_the_final_status(status, driver_code, expected):
    assert submission.exit_code(status, driver_code) == expected


@pytest.mark.parametrize("status", ["PENDING", "RUNNING"])
def test_exit_code_refuses_a_status_that_is_not_final(status):
    with pytest.raises(ValueError, match=status):
        submission.exit_code(status)


def test_address_precedence(monkeypatch):
    for var in submission.ADDRESS_VARS:
        monkeypatch.delenv(var, raising=False)
    assert submission.resolve_address(None) == submission.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a GCS address is not the Jobs API
    assert submission.resolve_address(None) == submission.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert submission.resolve_address(None) == "http://head:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "https://api:443")
    assert submission.resolve_address(None) == "https://api:443"
    assert submission.resolve_address("http://flag:1") == "http://flag:1"


@pytest.fixture
def no_token_env(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_token_precedence(no_token_env, monkeypatch):
    assert submission.resolve_token() is None
    default = no_token_env / "home" / ".ray" / "auth_token"
    default.parent.mkdir(parents=True)
    default.write_text("from-home\n")
    assert submission.resolve_token() == submission.Token("from-home", str(default))
    custom = no_token_env / "custom_token"
    custom.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(custom))
    assert submission.resolve_token().value == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert submission.resolve_token() == submission.Token("from-env", "RAY_AUTH_TOKEN")


def test_missing_token_path_is_a_user_error(no_token_env, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(no_token_env / "absent"))
    with pytest.raises(UserError, match="RAY_AUTH_TOKEN_PATH=.*absent does not exist"):
        submission.resolve_token()


SUBMITTER_ENV = {
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "MLFLOW_EXPERIMENT_NAME": "exp",
    "VAEPIPE_MNIST_DIR": "/data/mnist",
    "MLFLOW_TRACKING_PASSWORD": "hunter22hunter22",
    "MLFLOW_TRACKING_TOKEN": "tok",
    "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "RAY_AUTH_TOKEN": "secret",
    "HOME": "/home/me",
}


def test_forwarded_env_is_an_allow_list_without_credentials():
    assert submission.forwarded_env(SUBMITTER_ENV) == {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLFLOW_EXPERIMENT_NAME": "exp",
        "VAEPIPE_MNIST_DIR": "/data/mnist",
    }


def test_withheld_variables_are_named_not_shown():
    withheld = submission.withheld_vars(SUBMITTER_ENV)
    assert withheld == [
        "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN", "RAY_AUTH_TOKEN",
    ]  # fmt: skip
    note = submission.forwarding_note(submission.forwarded_env(SUBMITTER_ENV), withheld)
    assert "\n" not in note and "hunter22" not in note and "aws-secret" not in note
    assert note.startswith("forwarding MLFLOW_EXPERIMENT_NAME, MLFLOW_TRACKING_URI, ")


def test_forwarded_env_always_names_the_tracking_store(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    env = submission.forwarded_env({})
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_runtime_env_uploads_the_project_without_local_state():
    renv = submission.runtime_env(submission.PROJECT_ROOT, {"A": "1"})
    assert renv["working_dir"] == str(submission.PROJECT_ROOT)
    assert {".venv", "mlflow.db", "mlartifacts", "outputs", ".git"} <= set(renv["excludes"])
    assert renv["env_vars"] == {"A": "1"}
    assert "working_dir" not in submission.runtime_env(None, {})


def test_cli_rejects_a_non_submittable_command_in_one_line(capsys):
    assert cli.main(["submit", "--", "ui"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "vaepipe: error: submit runs one of train, encode, evaluate, prepare, sample, tune "
        "on the cluster, got ui"
    ]


def test_cli_reports_an_unreachable_cluster_in_one_line(capsys, monkeypatch):
    # RAY_ADDRESS pointing elsewhere must not override --address (Ray's client would let it).
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")
    url = f"http://127.0.0.1:{closed_port()}"
    assert cli.main(["submit", "--address", url, "--", "train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"vaepipe: error: Ray cluster at {url} is unreachable")


def test_jobs_actions_take_an_address():
    args = parse(jobs_cmd, ["logs", "raysubmit_1", "--follow", "--address", "http://h:1"])
    assert (args.action, args.job_id, args.follow, args.address) == (
        "logs", "raysubmit_1", True, "http://h:1",
    )  # fmt: skip
    assert parse(jobs_cmd, ["list"]).address is None
    assert parse(jobs_cmd, ["stop", "j"]).no_wait is False


def test_ui_binds_loopback_on_the_local_store(mlflow_tmp_store, monkeypatch, tmp_path):
    cmd = ui.ui_command("127.0.0.1", 5000)
    assert cmd[1:4] == ["ui", "--backend-store-uri", mlflow_tmp_store]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    root = cmd[cmd.index("--default-artifact-root") + 1]
    assert root == (tmp_path / "mlartifacts").as_uri()
    assert parse(ui, []).host == "127.0.0.1"


def test_ui_on_a_tracking_server_points_at_it(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert ui.ui_command("127.0.0.1", 5000) is None
    assert cli.main(["ui"]) == 0
    assert "http://mlflow.example:5000" in capsys.readouterr().out


def test_entrypoint_runs_a_sweep():
    entry = submission.entrypoint(["tune", "--config", "mnist", "--space", "mnist"])
    assert shlex.split(entry)[3:5] == ["tune", "--config"]
