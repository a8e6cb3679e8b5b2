"""Shared fixtures: MLflow in a temporary SQLite store, a local Ray kept across modules, real MNIST,
and a private PostgreSQL cluster for the tracking servers of the e2e and reliability tiers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pg_cluster
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"
MNIST_DIR = Path(os.environ.get("VAEPIPE_MNIST_DIR", _SHARED_MNIST))


@pytest.fixture(autouse=True)
def mlflow_tmp_store(tmp_path, monkeypatch):
    """Every test gets its own SQLite tracking store and artifact dir; no run is left open."""
    import sys

    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    # mlflow.set_registry_uri (called by mlflow_store.configure) exports MLFLOW_REGISTRY_URI and
    # keeps a module global: pin both to this test's store, so neither this process nor the
    # subprocesses it starts register into an earlier test's store.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{db}")
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_registry_uri(f"sqlite:///{db}")
    monkeypatch.setenv("VAEPIPE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    yield f"sqlite:///{db}"

    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray for the module, with its own temp dir.

    4 logical CPUs on a 2-core machine so training workers and Ray Data both get a share.
    The instance is kept for the next module that asks (a start costs 4-8 s here, over a
    dozen modules) unless that module's workers need ``AWS_*`` variables it lacks (workers
    inherit the driver's at start) or a module left CPUs held; ``no_ray`` stops it.
    """
    import ray

    env = _worker_env()
    kept_env = _KEPT_RAY.get("env")
    # A module needing no AWS_* variables can use workers that have some (they are unused).
    if ray.is_initialized() and not (
        kept_env is not None and env.items() <= kept_env.items() and _all_cpus_free(ray)
    ):
        ray.shutdown()
    if not ray.is_initialized():
        temp_dir = tempfile.mkdtemp(prefix="vp_ray_")
        ray.init(num_cpus=4, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
        _KEPT_RAY["env"] = env
    yield ray


_KEPT_RAY: dict = {}


def _worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


def _all_cpus_free(ray, wait_s: float = 5.0) -> bool:
    """Whether nothing holds the kept Ray's CPUs (dead actors release theirs within moments)."""
    import time

    deadline = time.monotonic() + wait_s
    total = ray.cluster_resources().get("CPU", 0.0)
    while ray.available_resources().get("CPU", 0.0) < total:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)  # polling Ray's state, not timing a test
    return True


@pytest.fixture
def no_ray():
    """For a test that checks nothing started Ray in this process: stop the kept instance."""
    import ray

    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _ray_down_at_the_end():
    yield
    import sys

    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST IDX files; tests that need them skip where they are absent."""
    needed = ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    if not all((MNIST_DIR / n).exists() for n in needed):
        pytest.skip(f"real MNIST IDX files not found in {MNIST_DIR} (set VAEPIPE_MNIST_DIR)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto) on a free 127.0.0.1 port; stopped by its pid.

    Yields the settings a client needs (the standard AWS variables, to be set by the test).
    """
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    # The moto of this interpreter's environment (another on PATH may speak an older S3).
    server = str(Path(sys.executable).parent / "moto_server")
    if not Path(server).exists():
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "wb")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "AWS_"))}
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start (see {log.name})")
            time.sleep(0.2)
    yield {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def s3_env(s3_server):
    """The AWS variables pointing at the loopback S3 server, for one test module (a module's
    Ray workers must inherit them: request this before ``ray_local``)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_server.items():
            mp.setenv(key, value)
        yield s3_server


@pytest.fixture
def bucket(s3_env) -> str:
    """A new, empty bucket on the loopback S3 server: ``s3://NAME``."""
    import uuid

    import pyarrow.fs as pafs

    name = f"vp-{uuid.uuid4().hex[:12]}"
    fs, _ = pafs.FileSystem.from_uri(f"s3://{name}?allow_bucket_creation=true")
    fs.create_dir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def postgres() -> pg_cluster.PgCluster:
    """One private PostgreSQL cluster per session; tests that need it skip where it can't run."""
    reason = pg_cluster.missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = pg_cluster.start()
    yield cluster
    pg_cluster.stop(cluster)
