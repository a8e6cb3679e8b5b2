"""Where MLflow data lives: the tracking URI, the artifact root, and experiments.

No ``MLFLOW_TRACKING_URI``: a SQLite store ``./mlflow.db`` with artifacts in ``./mlartifacts``
(MLflow 3 refuses a bare ``./mlruns`` file store). Both are resolved to absolute paths here, on
the driver, so Ray workers with another working directory write to the same store.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import UserError

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
REACHABLE_TIMEOUT_S = 10.0


def tracking_uri() -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` or the local SQLite default."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:")


def artifact_root() -> str:
    """Artifact root for experiments created in a local store (a server chooses its own)."""
    root = os.environ.get("VAEPIPE_ARTIFACT_ROOT") or str(Path.cwd() / DEFAULT_ARTIFACTS)
    return Path(root).resolve().as_uri()


def check_reachable(uri: str, timeout_s: float = REACHABLE_TIMEOUT_S) -> None:
    """Fail fast, with one line, when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (user's URI)
            if resp.status != 200:
                raise UserError(f"MLflow server {uri} answered /health with HTTP {resp.status}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"MLflow tracking server {uri} is unreachable: {reason}") from None


def configure() -> str:
    """Point this process's MLflow client at the store in force; returns its URI.

    Also exports the URI so child processes (Ray workers started later) inherit it.
    """
    uri = tracking_uri()
    check_reachable(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    _point_mlflow_at(uri)
    return uri


def _point_mlflow_at(uri: str) -> None:
    """This process's MLflow client: tracking and registry both at ``uri``."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def configure_in_background(experiment: str) -> Callable[[], str]:
    """``configure()`` and experiment ``experiment`` made ready in a thread; returns a function
    that waits for them and gives the tracking URI.

    Importing MLflow and the first use of a SQLite store (its schema migrations) take 2-3 s;
    in a thread they overlap Ray's start-up. What must come first stays here: the reachability
    check (fail in seconds, before Ray starts) and the exported URI (Ray workers inherit it).
    The store and artifact root are read once, here: the thread must not follow a later
    change of the environment to another store.
    """
    uri = tracking_uri()
    check_reachable(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    location = artifact_root() if is_local_store(uri) else None
    box: dict[str, BaseException] = {}

    def work() -> None:
        try:
            _point_mlflow_at(uri)
            experiment_id(experiment, location)
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="vaepipe-mlflow-setup", daemon=True)
    thread.start()

    def ready() -> str:
        thread.join()
        if "error" in box:
            raise box["error"]
        return uri

    return ready


def settle(ready: Callable[[], str] | None) -> None:
    """Wait out a background ``configure`` whose caller is failing: exiting the process
    mid-migration would leave a SQLite store half-made. Its own error is not the news."""
    if ready is None:
        return
    with contextlib.suppress(Exception):
        ready()


def experiment_id(name: str, location: str | None = None) -> str:
    """Id of experiment ``name``, created if missing: with ``location`` as its artifact root,
    or in a local store by default the local artifact root."""
    import mlflow

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    if location is None and is_local_store(mlflow.get_tracking_uri()):
        location = artifact_root()
    return mlflow.create_experiment(name, artifact_location=location)
