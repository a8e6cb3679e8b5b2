"""vaepipe on an object store (a real S3 server on loopback): prepare → train → encode →
evaluate with every path an ``s3://`` URI; kill + rerun of encode; verification before commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config.data import DataConfig
from pipeline.config.job import load_job_config
from pipeline.data.batches import Preprocessor
from pipeline.data.filesystems import resolve
from pipeline.data.object_store_output import ATTEMPT_PREFIX
from pipeline.data.output_check import verify_staged
from pipeline.data.parquet_files import WrittenFile, write_file
from pipeline.data.prepare import prepare
from pipeline.data.schema import XLayout
from pipeline.data.staged_output import MANIFEST
from pipeline.errors import UserError
from pipeline.inference.encode import encode_dataset
from pipeline.inference.evaluate import evaluate_model
from pipeline.tracking import mlflow_store, registry
from pipeline.train.trainer import run_training
from vae_core.config import ModelConfig
from vae_core.model import VAE

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
DIGITS_ROWS = 1797


@pytest.fixture(scope="module")
def ray_local(s3_env, ray_local):
    """The module's Ray, started after the AWS variables are set (its workers inherit them)."""
    return ray_local


def committed_ids(uri: str) -> list[int]:
    """Ids of the files a committed output's manifest lists (what vaepipe's readers trust)."""
    where = resolve(uri)
    manifest = json.loads(where.child(MANIFEST).read_text())
    paths = [where.child(f["path"]).path for f in manifest["files"]]
    table = pq.read_table(paths, filesystem=where.fs, columns=["id"])
    return sorted(table.column("id").to_pylist())


def attempts(uri: str) -> list[str]:
    where = resolve(uri)
    children = where.fs.get_file_info(pafs.FileSelector(where.path))
    return [c.base_name for c in children if c.base_name.startswith(ATTEMPT_PREFIX)]


def test_prepare_train_encode_evaluate_all_on_s3(ray_local, bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a path mistaken for local would show up here as ./s3:
    data = f"{bucket}/digits"
    prepared = prepare(DataConfig(source="digits"), data)
    assert sum(prepared.rows.values()) == DIGITS_ROWS and committed_ids(data) == list(
        range(DIGITS_ROWS)
    )
    cfg = load_job_config(
        "digits",
        [
            f"data.source={data}",
            f"tracking.storage_path={bucket}/checkpoints",
            "model.hidden_sizes=[16]",
            "model.latent_dim=2",
            "train.epochs=1",
            "train.nll_samples=5",
            "scaling.workers=1",
            "tracking.experiment=s3",
        ],
    )
    trained = run_training(cfg)
    ckpt = resolve(f"{bucket}/checkpoints")
    saved = ckpt.fs.get_file_info(pafs.FileSelector(ckpt.path, recursive=True))
    assert any(i.base_name.startswith("checkpoint_") for i in saved)
    model = f"models:/{trained.model_name}/{trained.version}"
    encoded = encode_dataset(model, data, f"{bucket}/latent")
    assert encoded.rows == DIGITS_ROWS
    assert committed_ids(f"{bucket}/latent") == list(range(DIGITS_ROWS))
    metrics = evaluate_model(model, data, iw_samples=2, log_to_mlflow=False)
    assert metrics.rows == prepared.rows["test"]
    assert not (tmp_path / "s3:").exists()


def register_tiny() -> None:
    torch.manual_seed(0)
    vae = VAE(ModelConfig(input_shape=(1, 8, 8), latent_dim=3, hidden_sizes=(16,))).eval()
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("enc")):
        pre = Preprocessor(XLayout((1, 8, 8), "uint8"))
        registry.log_vae(vae, pre.to_dict(), "tiny", 1.0, "digits")


def encode_killed_at(point: str, out: str, overwrite: bool) -> None:
    """``vaepipe encode`` in a subprocess that dies (like kill -9) at ``point``."""
    import ray

    env = dict(os.environ, VAEPIPE_FAULT=point, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    cmd = [sys.executable, "-m", "jobs", "encode", "--model", "models:/tiny@champion"]
    cmd += ["--data", "digits", "--out", out] + (["--overwrite"] if overwrite else [])
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr[-2000:]


def test_encode_killed_then_rerun_on_s3_gives_exact_rows(ray_local, bucket):
    register_tiny()
    out = f"{bucket}/latent"
    # Killed after the files were written, before the manifest: nothing is committed.
    encode_killed_at("encode:written", out, overwrite=False)
    assert not resolve(out).child(MANIFEST).exists() and len(attempts(out)) == 1
    res = encode_dataset("models:/tiny@champion", "digits", out)
    assert res.rows == DIGITS_ROWS and committed_ids(out) == list(range(DIGITS_ROWS))
    assert attempts(out) == [res.files[0].split("/")[0]]  # the dead attempt is gone
    # Killed after the manifest of an --overwrite, before the cleanup: the rerun is complete.
    encode_killed_at("encode:mid-commit", out, overwrite=True)
    again = encode_dataset("models:/tiny@champion", "digits", out)
    assert again.skipped and committed_ids(out) == list(range(DIGITS_ROWS))
    assert len(attempts(out)) == 1


def test_verification_refuses_missing_rows_and_duplicate_ids(ray_local, bucket):
    staging = resolve(f"{bucket}/staging")
    table = pa.table({"id": pa.array([1, 2, 3, 3], pa.int64()), "v": [0.0, 1.0, 2.0, 3.0]})
    f = write_file(staging, "a.parquet", table, 2)
    with pytest.raises(UserError, match="1 duplicate ids .*nothing committed"):
        verify_staged(staging, [f], 4, "dup")
    with pytest.raises(UserError, match="4 rows written but the source has 5"):
        verify_staged(staging, [f], 5, "short")
    lying = WrittenFile(f.path, f.rows, f.bytes + 1)
    with pytest.raises(UserError, match="a.parquet has .* bytes but .* were written"):
        verify_staged(staging, [lying], 4, "size")
    with pytest.raises(UserError, match="unexpected file a.parquet"):
        verify_staged(staging, [], None, "extra")
