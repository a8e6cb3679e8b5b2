"""evaluate (IS-NLL, ELBO terms, active units, AUROC logged on the model's run) and sample."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.errors import UserError
from pipeline.inference.evaluate import evaluate_model
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


def test_row_scorer_figures_do_not_depend_on_the_batch():
    import pyarrow as pa

    from pipeline.data.schema import encode_x
    from pipeline.inference.latent_encoder import ModelPayload
    from pipeline.inference.row_scorer import RowScorer

    torch.manual_seed(0)
    vae = VAE(ModelConfig(input_shape=SHAPE, latent_dim=3, hidden_sizes=(16,))).eval()
    pre = Preprocessor(XLayout(SHAPE, "uint8"), binarize="static")
    x = np.random.default_rng(0).integers(0, 17, size=(10, *SHAPE), dtype=np.uint8)
    table = pa.table({"id": pa.array(np.arange(10, dtype=np.int64)), "x": encode_x(x)})
    scorer = RowScorer(ModelPayload.from_vae(vae, pre, {}), k=50, seed=3)
    whole = scorer(table)
    parts = pa.concat_tables([scorer(table.slice(0, 3)), scorer(table.slice(3))])
    assert whole.column("is_nll").to_pylist() == parts.column("is_nll").to_pylist()
    assert whole.column("neg_elbo").to_pylist() == parts.column("neg_elbo").to_pylist()
    other_seed = RowScorer(ModelPayload.from_vae(vae, pre, {}), k=50, seed=4)(table)
    assert other_seed.column("is_nll").to_pylist() != whole.column("is_nll").to_pylist()


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
def test_same_numbers_whatever_the_batching_and_anomaly_figures(ray_local):
    run_id = register()
    small = evaluate_model(
        "models:/tiny/1", "digits", iw_samples=30, batch_size=7, log_to_mlflow=False
    )
    big = evaluate_model(
        "models:/tiny/1", "digits", iw_samples=30, batch_size=300, normal_labels=(3,)
    )
    for key in ("is_nll", "neg_elbo", "kl"):
        assert small.metrics[key] == pytest.approx(big.metrics[key], rel=1e-9), key
    assert 0.0 <= big.metrics["auroc_normal_3"] <= 1.0
    assert 0.0 < big.metrics["auprc_normal_3"] <= 1.0
    # A binarized Bernoulli model also gets the input-complexity-corrected score's figures.
    assert 0.0 <= big.metrics["auroc_normal_3_corrected"] <= 1.0
    assert big.metrics["complexity_bits"] > 0
    assert "auroc_normal_3_corrected" not in small.metrics  # no anomaly figures asked
    client = mlflow.MlflowClient()
    names = [a.path for a in client.list_artifacts(run_id, "evaluation")]
    assert "evaluation/eval_test_roc_normal_3.png" in names


@pytest.mark.ray
def test_disentanglement_on_shapes_factor_columns(ray_local):
    torch.manual_seed(0)
    shape = (1, 16, 16)
    vae = VAE(ModelConfig(input_shape=shape, latent_dim=4, hidden_sizes=(16,))).eval()
    pre = Preprocessor(XLayout(shape, "uint8"), binarize="static").to_dict()
    mlflow_store.configure()
    data = {"source": "shapes", "shapes_rows": 800, "shapes_resolution": 16}
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("ev")):
        registry.log_vae(vae, pre, "tiny-shapes", 1.0, "shapes", data_config=data)
    res = evaluate_model(
        "models:/tiny-shapes/1", "shapes", iw_samples=2, disentanglement=True, log_to_mlflow=False
    )
    for key in ("mig", "factor_vae_score", "dci_disentanglement", "sap"):
        assert 0.0 <= res.metrics[key] <= 1.0, key
    register()
    with pytest.raises(UserError, match="factor columns"):
        evaluate_model("models:/tiny/1", "digits", iw_samples=2, disentanglement=True)


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
