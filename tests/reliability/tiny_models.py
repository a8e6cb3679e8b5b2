"""Tiny registered VAEs and the MLflow store holding them, for the bad-input and encode tests."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.tracking import mlflow_store, registry
from vae_core.config import ModelConfig
from vae_core.model import VAE

STORE_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def register(name: str, layout: XLayout, experiment: str, source: str) -> None:
    """An untrained VAE of ``layout`` (fixed seed), registered as ``name`` in the current store."""
    torch.manual_seed(0)
    vae = VAE(ModelConfig(input_shape=layout.shape, latent_dim=3, hidden_sizes=(16,))).eval()
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id(experiment)):
        registry.log_vae(vae, Preprocessor(layout).to_dict(), name, 1.0, source)


def open_store(root: Path, models: dict[str, XLayout], experiment: str) -> str:
    """A SQLite store under ``root`` holding ``models`` (name → layout); its URI."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        for var in STORE_VARS:
            mp.setenv(var, uri)
        mp.setenv("VAEPIPE_ARTIFACT_ROOT", str(root / "mlartifacts"))
        for name, layout in models.items():
            register(name, layout, experiment, experiment)
    mlflow.set_tracking_uri(None)
    return uri


def versions() -> list[tuple[str, str]]:
    """(name, version) of every registered model version in the current store."""
    return sorted((v.name, v.version) for v in mlflow.MlflowClient().search_model_versions())
