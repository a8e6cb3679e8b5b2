"""Reliability tier fixtures: an MLflow tracking server per test, on a fresh PostgreSQL database."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # servers.py, beside the tests

import servers  # noqa: E402


@pytest.fixture
def tracking_server(postgres, tmp_path, monkeypatch):
    """A real ``mlflow server`` on its own database; this process's client points at it."""
    import mlflow

    with servers.mlflow_server(postgres.create_database(), tmp_path / "server") as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", server.uri)  # set_registry_uri exports it
        # Process-wide URIs (mlflow_store.configure sets both) must not outlive the server.
        mlflow.set_tracking_uri(server.uri)
        mlflow.set_registry_uri(server.uri)
        try:
            yield server
        finally:
            mlflow.set_registry_uri(None)
            mlflow.set_tracking_uri(None)


@pytest.fixture
def store(model_store, mlflow_tmp_store, monkeypatch) -> str:
    """The requesting module's ``model_store`` as this test's store (tracking and registry)."""
    import mlflow
    import tiny_models

    for var in tiny_models.STORE_VARS:
        monkeypatch.setenv(var, model_store)
    mlflow.set_registry_uri(model_store)
    yield model_store
    mlflow.set_tracking_uri(None)
