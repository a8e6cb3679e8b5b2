"""Ray Jobs API client for vaepipe: address, token, runtime env, log following, exit codes.

The token travels as an ``Authorization: Bearer`` header that this module sets itself, so
submission works against a token-auth cluster whatever ``RAY_AUTH_MODE`` says on the laptop; it
never works by turning authentication off. The token is never put into the job's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserError
from pipeline.tracking import mlflow_store

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Never uploaded with the project: environments, local stores, outputs, VCS and caches.
WORKING_DIR_EXCLUDES = [
    ".venv", "mlflow.db", "mlartifacts", "outputs", ".git", ".vaepipe", "ray_results",
    "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info",
]  # fmt: skip
# The only variables a job gets from the submitter: where to track, and data settings. Never
# credentials: a job's runtime env is readable by anyone holding the Ray token, so passwords
# and tokens come from the cluster's own configuration (node env, Kubernetes Secrets).
FORWARDED_VARS = (
    "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME",
    "VAEPIPE_MNIST_DIR", "VAEPIPE_CACHE", "VAEPIPE_DOWNLOAD_TIMEOUT",
)  # fmt: skip
# Set in the submitter's shell but deliberately not forwarded: named so the user knows.
WITHHELD_PREFIXES = ("MLFLOW_", "VAEPIPE_", "AWS_", "RAY_AUTH_TOKEN")
SUBMITTABLE = ("train", "encode", "evaluate", "prepare", "sample", "tune")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
POLL_S = 1.0
# Ray's client lets these override the address it is given; vaepipe resolves them itself.
ADDRESS_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # where it came from, for error messages


def resolve_address(address: str | None) -> str:
    """``--address``, else RAY_API_SERVER_ADDRESS / RAY_ADDRESS when HTTP, else the default."""
    if address:
        return address
    for name in ADDRESS_VARS:
        env = os.environ.get(name, "")
        # RAY_ADDRESS may hold a GCS address (host:6379) for ray.init; the Jobs API needs HTTP.
        if env.startswith(("http://", "https://")):
            return env
    return DEFAULT_ADDRESS


def resolve_token() -> Token | None:
    """The token by Ray's own precedence: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return Token(os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN")
    custom = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(custom) if custom else Path.home() / ".ray" / "auth_token"
    if custom and not path.is_file():
        raise UserError(f"RAY_AUTH_TOKEN_PATH={custom} does not exist")
    if path.is_file():
        return Token(path.read_text().strip(), str(path))
    return None


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed variables that are set, plus the tracking URI in force (always set)."""
    environ = dict(os.environ if environ is None else environ)
    env = {k: environ[k] for k in FORWARDED_VARS if environ.get(k)}
    env["MLFLOW_TRACKING_URI"] = environ.get("MLFLOW_TRACKING_URI") or mlflow_store.tracking_uri()
    return env


def withheld_vars(environ: dict[str, str] | None = None) -> list[str]:
    """Names of the submitter's tracking/credential variables that the job does not get."""
    environ = dict(os.environ if environ is None else environ)
    return sorted(k for k in environ if k.startswith(WITHHELD_PREFIXES) and k not in FORWARDED_VARS)


def forwarding_note(forwarded: dict[str, str], withheld: list[str]) -> str:
    """One line for stderr: what the job receives and what it does not (names only)."""
    note = f"forwarding {', '.join(sorted(forwarded))} to the job"
    if withheld:
        note += (
            f"; not forwarded: {', '.join(withheld)} (credentials come from the cluster's "
            "own configuration)"
        )
    return note


def runtime_env(working_dir: Path | None, env_vars: dict[str, str]) -> dict:
    """Runtime env: the project as working dir (unless the image already has it) and env vars."""
    renv: dict = {"env_vars": env_vars}
    if working_dir is not None:
        renv["working_dir"] = str(working_dir)
        renv["excludes"] = list(WORKING_DIR_EXCLUDES)
    return renv


def default_working_dir() -> Path | None:
    """This source checkout, or None when vaepipe is installed (the cluster image has it)."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else None


def entrypoint(vaepipe_args: list[str]) -> str:
    """``python -m jobs.cli ARGS``: runs from the uploaded project, installed or not."""
    if not vaepipe_args or vaepipe_args[0] not in SUBMITTABLE:
        given = vaepipe_args[0] if vaepipe_args else "nothing"
        raise UserError(f"submit runs one of {', '.join(SUBMITTABLE)} on the cluster, got {given}")
    return shlex.join(["python", "-m", "jobs.cli", *vaepipe_args])


def exit_code(status: str, driver_exit_code: int | None = None) -> int:
    """The CLI exit code for a job's final status (the driver's own code when it failed)."""
    if status == "SUCCEEDED":
        return 0
    if status == "FAILED":
        return driver_exit_code if driver_exit_code and driver_exit_code > 0 else 1
    if status == "STOPPED":
        return 130
    raise ValueError(f"status {status!r} is not final")


@contextlib.contextmanager
def cluster_errors(address: str, token: Token | None) -> Iterator[None]:
    """Turn connection and authentication failures into one-line ``UserError``s."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        raise UserError(_auth_message(address, token, str(exc))) from None
    except ConnectionError as exc:
        raise UserError(
            f"Ray cluster at {address} is unreachable ({exc.__class__.__name__}); start one "
            "(deploy/local_stack.sh start) or pass --address / set RAY_ADDRESS"
        ) from None


def _auth_message(address: str, token: Token | None, detail: str) -> str:
    if token is None or "Authentication required" in detail:
        return (
            f"Ray cluster at {address} requires a token: set RAY_AUTH_TOKEN or "
            "RAY_AUTH_TOKEN_PATH, or put it in ~/.ray/auth_token"
        )
    return f"Ray cluster at {address} refused the token from {token.source}"


def connect(address: str | None = None):
    """A ``JobSubmissionClient`` for the resolved address, carrying the token if there is one."""
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    token = resolve_token()
    headers = {"Authorization": f"Bearer {token.value}"} if token else None
    with cluster_errors(url, token), _env_removed(ADDRESS_VARS):
        client = JobSubmissionClient(url, headers=headers)
    return client, url, token


@contextlib.contextmanager
def _env_removed(names: tuple[str, ...]) -> Iterator[None]:
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def submit(client, entry: str, renv: dict, submission_id: str | None = None) -> str:
    return client.submit_job(entrypoint=entry, runtime_env=renv, submission_id=submission_id)


def follow_logs(client, job_id: str, out=None) -> None:
    """Print the job's logs as they come, until the job ends."""
    out = out or sys.stdout

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())


def wait_final(client, job_id: str, timeout_s: float | None = None) -> str:
    """Poll until the job reaches a final status (tailing can end a moment before it)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id))
        status = status.rsplit(".", 1)[-1]  # JobStatus.SUCCEEDED -> SUCCEEDED
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise UserError(f"job {job_id} still {status} after {timeout_s:.0f}s")
        time.sleep(POLL_S)


def final_exit_code(client, job_id: str) -> int:
    status = wait_final(client, job_id)
    info = client.get_job_info(job_id)
    return exit_code(status, getattr(info, "driver_exit_code", None))
