"""Registry: the raw-row pyfunc contract (no pickle), vae_core files beside it, aliases, URIs."""

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


def register(
    vae: VAE, val_loss: float, name: str = "tiny", val_rows: np.ndarray | None = None
) -> registry.RegisteredVersion:
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("reg")):
        return registry.log_vae(
            vae, PRE, name, val_loss, "digits", data_config={"source": "x"}, val_rows=val_rows
        )


def raw_rows(n: int, seed: int = 0) -> np.ndarray:
    """(n, 64) uint8 rows, as a digits-like source stores them."""
    return np.random.default_rng(seed).integers(0, 256, (n, 64), dtype=np.uint8)


def expected(vae: VAE, rows: np.ndarray):
    """mu, logvar of the stored preprocessing (uint8 / 255) by hand: (B, L) each."""
    x = torch.from_numpy(rows.reshape(-1, *SHAPE).astype(np.float32) / 255.0)
    with torch.no_grad():
        return [t.numpy() for t in vae.encode(x)]


def test_pyfunc_scores_raw_rows_without_pickle(monkeypatch):
    vae = tiny_vae()
    val = raw_rows(200, seed=1)
    rv = register(vae, 10.0, val_rows=val)
    assert rv.version == "1" and set(rv.aliases) == {"candidate", "champion"}
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    threshold = model.metadata.metadata["vaepipe"]["threshold"]
    # The stored threshold is the 0.99 quantile of the validation scores: 2 of 200 lie above.
    val_out = model.predict(val)
    assert int(val_out["is_anomaly"].sum()) == 2
    for batch in (1, 5):  # any batch size
        rows = raw_rows(batch, seed=batch)
        out = model.predict(rows)
        assert list(out.columns) == ["mu", "logvar", "score", "is_anomaly"]
        mu, logvar = expected(vae, rows)
        np.testing.assert_allclose(np.stack(out["mu"]), mu, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.stack(out["logvar"]), logvar, rtol=1e-5, atol=1e-6)
        assert (out["score"] > 0).all()  # nats of 64 Bernoulli pixels: positive
        assert (out["is_anomaly"] == (out["score"] > threshold)).all()
    # A request's threshold overrides the stored one; the same request gives the same scores.
    rows = raw_rows(8, seed=3)
    low = model.predict(rows, params={"threshold": -1.0})
    assert low["is_anomaly"].all()
    np.testing.assert_array_equal(low["score"], model.predict(rows)["score"])


def test_signature_and_example_describe_raw_rows():
    register(tiny_vae(), 1.0)
    info = mlflow.models.get_model_info("models:/tiny@champion")
    (spec,) = info.signature.inputs.inputs
    assert spec.type == np.dtype(np.uint8) and spec.shape == (-1, 64)
    assert info.signature.outputs.input_names() == ["mu", "logvar", "score", "is_anomaly"]
    assert [p.name for p in info.signature.params.params] == ["threshold"]
    assert info.saved_input_example_info is not None


def test_pyfunc_rejects_bad_rows():
    register(tiny_vae(), 1.0)
    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    bad = [  # MLflow's signature check names width and dtype; the model names the rest
        (np.zeros((2, 63), np.uint8), "shape"),
        (np.full((1, 64), np.nan, np.float32), "dtype"),
        (np.zeros((0, 64), np.uint8), "no rows"),
        (np.zeros((2000, 64), np.uint8), "at most"),
    ]
    for rows, words in bad:
        with pytest.raises(mlflow.exceptions.MlflowException, match=words):
            model.predict(rows)


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
