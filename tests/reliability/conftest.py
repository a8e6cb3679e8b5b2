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
    with servers.mlflow_server(postgres.create_database(), tmp_path / "server") as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        yield server
