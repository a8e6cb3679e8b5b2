"""Distributed training on a real local Ray: DDP, MLflow tracking, registry, resuming a run.

A worker killed mid-training: tests/reliability/test_worker_faults.py.

Kept lean for 2-core CI: the built-in digits, tiny models, 1-3 epochs, one Ray per module.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from pipeline.config.job import load_job_config
from pipeline.errors import UserError
from pipeline.train import checkpoints
from pipeline.train.trainer import run_training

pytestmark = pytest.mark.ray


def _cfg(tmp_path, *extra: str):
    return load_job_config(
        "digits",
        [
            "model.hidden_sizes=[32]",
            "model.latent_dim=4",
            "train.nll_samples=20",
            "train.shuffle_buffer=256",
            f"tracking.storage_path={tmp_path / 'ray_results'}",
            "tracking.experiment=test-train",
            *extra,
        ],
    )


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _history(run_id: str, key: str) -> list[float]:
    return [
        m.value for m in sorted(_client().get_metric_history(run_id, key), key=lambda m: m.step)
    ]


def test_two_worker_ddp_tracks_and_registers(ray_local, tmp_path):
    import mlflow

    # The data-mean output bias rides along: computed on the driver, the same on both ranks.
    cfg = _cfg(
        tmp_path,
        "scaling.workers=2",
        "train.epochs=3",
        "tracking.run_name=ddp",
        "model.output_bias_init=data_mean",
    )
    events: list[dict] = []
    result = run_training(cfg, progress=events.append)

    run = _client().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    val = _history(result.run_id, "val/neg_elbo")
    assert len(val) == 3 and val[-1] < val[0]
    assert run.data.params["train.epochs"] == "3" and run.data.params["scaling.workers"] == "2"
    for key in ("train/loss", "val/kl", "val/active_units", "samples_per_s", "lr", "test/is_nll"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in _client().list_artifacts(result.run_id, "images")}
    assert any("reconstructions" in p for p in artifacts)
    assert any("latent_traversal" in p for p in artifacts)
    assert "config/config.yaml" in {
        a.path for a in _client().list_artifacts(result.run_id, "config")
    }
    # Progress comes from the workers, within each epoch and at its end, in order.
    ends = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in ends] == [1, 2, 3]
    assert all(np.isfinite(e["train/loss"]) and e["rows_done"] > 0 for e in ends)
    for epoch in (1, 2, 3):
        inside = [e for e in events if e["event"] == "batch" and e["epoch"] == epoch]
        assert inside, f"no in-epoch progress in epoch {epoch}"
        assert events.index(inside[-1]) < events.index(ends[epoch - 1])
        assert 0 < inside[0]["rows_done"] < ends[epoch - 1]["rows_done"]
    assert ends[1]["rows_total"] == ends[0]["rows_done"]  # known from the second epoch on
    assert "candidate" in result.aliases and result.version == "1"

    # The registered model reproduces the trained model's encodings.
    from vae_core.model import VAE

    fs, root = checkpoints.filesystem_for(str(tmp_path / "ray_results"))
    state = checkpoints.load_latest_state(fs, f"{root}/ddp")
    vae = VAE(cfg.model.__class__(**{**cfg.model.to_dict(), "input_shape": (1, 8, 8)}))
    vae.load_state_dict(state["best_model"])
    rows = torch.randint(0, 256, (5, 64), dtype=torch.uint8)  # raw digits rows, as stored
    x = (rows.view(5, 1, 8, 8).float() / 255.0 > 0.5).float()  # binarize at 0.5 to serve
    with torch.no_grad():
        expected = vae.eval().encode(x)[0].numpy()
    model = mlflow.pyfunc.load_model(f"models:/{result.model_name}@candidate")
    got = np.stack(model.predict(rows.numpy())["mu"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert model.metadata.metadata["vaepipe"]["threshold"] is not None  # from the val split


def test_rerun_of_a_named_run_resumes(ray_local, tmp_path):
    opts = ("tracking.run_name=again", "train.log_images=false", "train.nll_samples=0")
    opts += ("data.limit=300",)  # the cost here is two start-ups, not the rows
    first = run_training(_cfg(tmp_path, "train.epochs=1", *opts))
    second = run_training(_cfg(tmp_path, "train.epochs=2", *opts))

    assert second.run_id == first.run_id
    assert second.metrics["epochs_completed"] == 2.0
    assert _history(second.run_id, "epoch") == [1.0, 2.0]  # epoch 1 was not trained again
    assert _client().get_run(second.run_id).info.status == "FINISHED"
    assert second.version == "2"


def test_unreachable_mlflow_fails_fast_before_training(ray_local, tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(UserError, match="unreachable"):
        run_training(_cfg(tmp_path, "train.epochs=1"))
    assert time.monotonic() - start < 30
    assert not (tmp_path / "ray_results").exists()


BESIDE_SCRIPT = textwrap.dedent(
    """
    import json, os, ray
    from pipeline.cluster.ray_session import ensure_ray

    ensure_ray(dashboard=True)

    @ray.remote(num_cpus=0)
    def seen_from_a_task():
        from ray.util.state import list_nodes  # no address: as Ray Train's cleaner calls it

        return os.environ.get("RAY_ADDRESS"), list_nodes()[0].node_id

    context = ray.get_runtime_context()
    seen = ray.get(seen_from_a_task.remote())
    print(json.dumps([context.gcs_address, context.get_node_id(), *seen]))
    """
)


def test_a_local_ray_beside_another_lets_its_tasks_find_their_own_cluster(ray_local, tmp_path):
    """``ensure_ray``'s new instance while another Ray runs on the machine (``ray_local``): Ray's
    address auto-detection would find two GCS processes and fail; Ray Train's placement-group
    cleaner relies on it to free the workers of a trial Tune stopped."""
    done = subprocess.run(
        [sys.executable, "-c", BESIDE_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    gcs, node, seen_address, seen_node = json.loads(done.stdout.strip().splitlines()[-1])
    assert (seen_address, seen_node) == (gcs, node)
