"""Registry: pt2 pyfunc model returning mu (no pickle), vae_core files beside it, aliases, URIs."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
import torch

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.errors import UserError
from pipeline.tracking import mlflow_store, registry
from vae_core.config import ModelConfig
from vae_core.model import VAE

SHAPE = (1, 8, 8)
PRE = Preprocessor(XLayout(SHAPE, "uint8")).to_dict()


def tiny_vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(ModelConfig(input_shape=SHAPE, latent_dim=3, hidden_sizes=(16,))).eval()


def register(vae: VAE, val_loss: float, name: str = "tiny") -> registry.RegisteredVersion:
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("reg")):
        return registry.log_vae(vae, PRE, name, val_loss, "digits", data_config={"source": "x"})


def test_pyfunc_returns_mu_without_pickle(monkeypatch):
    vae = tiny_vae()
    rv = register(vae, 10.0)
    assert rv.version == "1" and set(rv.aliases) == {"candidate", "champion"}
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    for batch in (1, 5):  # the batch dimension is dynamic
        x = np.random.default_rng(batch).random((batch, *SHAPE), dtype=np.float32)
        expected = vae.encode(torch.from_numpy(x))[0].detach().numpy()
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_champion_moves_only_on_better_val_loss():
    assert set(register(tiny_vae(0), 10.0).aliases) == {"candidate", "champion"}
    assert register(tiny_vae(1), 12.0).aliases == ("candidate",)
    assert register(tiny_vae(2), math.nan).aliases == ("candidate",)
    assert set(register(tiny_vae(3), 8.0).aliases) == {"candidate", "champion"}
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "4"
    assert str(client.get_model_version_by_alias("tiny", "candidate").version) == "4"
    assert client.get_model_version("tiny", "2").tags["val_loss"] == "12.0"


def test_load_vae_accepts_every_uri_form(monkeypatch):
    vae = tiny_vae()
    rv = register(vae, 1.0)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    x = torch.rand(4, *SHAPE)
    uris = [
        "models:/tiny@champion",
        "models:/tiny/1",
        "models:/tiny/latest",
        rv.model_id,
        f"models:/{rv.model_id}",
        f"runs:/{rv.run_id}/model",
    ]
    for uri in uris:
        loaded = registry.load_vae(uri)
        assert (loaded.name, loaded.version, loaded.run_id) == ("tiny", "1", rv.run_id), uri
        assert loaded.preprocessor == PRE and loaded.data_source == "digits"
        assert loaded.data_config == {"source": "x"}
        torch.testing.assert_close(loaded.vae.encode(x), vae.encode(x))


UNKNOWN = [
    ("models:/nope@champion", "nope"),
    ("models:/tiny@gold", "gold"),
    ("models:/tiny/7", "7"),
    ("models:/m-0000", "m-0000"),
    ("runs:/0123abc/model", "0123abc"),
    ("tiny", "not understood"),
]


def test_unknown_model_is_one_line_user_error():
    register(tiny_vae(), 1.0)
    for uri, words in UNKNOWN:
        with pytest.raises(UserError) as info:
            registry.load_vae(uri)
        assert words in str(info.value) and "\n" not in str(info.value), uri


def test_log_vae_needs_an_active_run():
    mlflow_store.configure()
    with pytest.raises(RuntimeError, match="active MLflow run"):
        registry.log_vae(tiny_vae(), PRE, "tiny", 1.0, "digits")
