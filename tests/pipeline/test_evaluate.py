"""evaluate (IS-NLL, ELBO terms, active units, AUROC logged on the model's run) and sample."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.errors import UserError
from pipeline.inference.evaluate import auroc, evaluate_model
from pipeline.inference.sample_grid import write_grid
from pipeline.tracking import mlflow_store, registry
from vae_core.config import ModelConfig
from vae_core.model import VAE

SHAPE = (1, 8, 8)


def register() -> str:
    torch.manual_seed(0)
    vae = VAE(ModelConfig(input_shape=SHAPE, latent_dim=3, hidden_sizes=(16,))).eval()
    pre = Preprocessor(XLayout(SHAPE, "uint8"), binarize="dynamic").to_dict()
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("ev")) as run:
        registry.log_vae(vae, pre, "tiny", 1.0, "digits", data_config={"source": "digits"})
    return run.info.run_id


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    positive = rng.random(300) < 0.3
    assert auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
    assert auroc(np.array([1.0, 2.0, 3.0]), np.array([False, False, True])) == 1.0
    assert auroc(np.array([1.0, 2.0]), np.array([True, True])) != auroc(
        np.array([1.0, 2.0]), np.array([True, True])
    )  # NaN: one class only


@pytest.mark.ray
def test_evaluate_logs_metrics_on_the_models_run(ray_local):
    run_id = register()
    seen: list[tuple[int, int | None]] = []
    res = evaluate_model(
        "models:/tiny@champion",
        "digits",
        iw_samples=20,
        anomaly_class=0,
        progress=lambda done, total: seen.append((done, total)),
    )
    m = res.metrics
    assert seen[-1] == (res.rows, res.rows) and len(seen) >= 1
    assert res.rows > 100 and res.split == "test"
    for key in ("is_nll", "neg_elbo", "reconstruction", "kl", "elbo", "auroc_class_0"):
        assert np.isfinite(m[key]), key
    assert m["is_nll"] <= m["neg_elbo"] + 1.0  # the IS estimate is a tighter bound
    assert 0.0 <= m["active_units"] <= 3 and 0.0 <= m["auroc_class_0"] <= 1.0
    logged = mlflow.MlflowClient().get_run(run_id).data.metrics
    assert logged["eval_test_is_nll"] == pytest.approx(m["is_nll"])
    with pytest.raises(UserError, match="class 42"):
        evaluate_model("models:/tiny/1", "digits", iw_samples=2, anomaly_class=42)


@pytest.mark.ray
def test_sample_writes_prior_and_reconstruction_grids(ray_local, tmp_path):
    from PIL import Image

    register()
    prior = write_grid("models:/tiny@champion", tmp_path / "prior.png", n=16)
    recon = write_grid(
        "models:/tiny@champion", tmp_path / "recon.png", n=8, reconstruct_data="digits"
    )
    assert Image.open(prior.out).size == (4 * 48, 4 * 48)  # 4x4 grid of 8px upscaled x6
    assert Image.open(recon.out).size == (8 * 48, 2 * 48)  # inputs above reconstructions
    with pytest.raises(UserError, match=r"\.png"):
        write_grid("models:/tiny@champion", tmp_path / "x.jpg")
