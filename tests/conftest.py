"""Shared fixtures: MLflow in a temporary SQLite store, one local Ray per module, real MNIST,
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
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("VAEPIPE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    yield f"sqlite:///{db}"
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray for the whole module, with its own temp dir.

    4 logical CPUs on a 2-core machine so training workers and Ray Data both get a share.
    """
    import ray

    temp_dir = tempfile.mkdtemp(prefix="vp_ray_")
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST IDX files; tests that need them skip where they are absent."""
    needed = ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    if not all((MNIST_DIR / n).exists() for n in needed):
        pytest.skip(f"real MNIST IDX files not found in {MNIST_DIR} (set VAEPIPE_MNIST_DIR)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def postgres() -> pg_cluster.PgCluster:
    """One private PostgreSQL cluster per session; tests that need it skip where it can't run."""
    reason = pg_cluster.missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = pg_cluster.start()
    yield cluster
    pg_cluster.stop(cluster)
