"""Encode under faults (issue #12, item 8): a worker process that dies once changes nothing in
the output; a deterministic error in one input file fails the job naming that file, exit 2,
with nothing committed and nothing staged left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bad_files
import fault_hooks
import mlflow
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.inference.encode import encode_dataset
from pipeline.tracking import mlflow_store, registry
from vae_core.config import ModelConfig
from vae_core.model import VAE

pytestmark = [pytest.mark.reliability, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
MODEL = "models:/tiny@champion"
DIGITS_ROWS = 1797


def register_tiny() -> None:
    torch.manual_seed(0)
    vae = VAE(ModelConfig(input_shape=bad_files.SHAPE, latent_dim=3, hidden_sizes=(16,))).eval()
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("enc")):
        pre = Preprocessor(XLayout(bad_files.SHAPE, "uint8"))
        registry.log_vae(vae, pre.to_dict(), "tiny", 1.0, "digits")


def hidden_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".vaepipe-" in p.name)


def test_a_worker_that_exits_once_changes_nothing(ray_local, tmp_path):
    fault_hooks.by_value()
    register_tiny()
    opts = {"with_z": True, "batch_size": 300}  # 6 batches: the fault is mid-job
    ref = encode_dataset(MODEL, "digits", tmp_path / "reference", **opts)
    marker = tmp_path / "exited"
    hook = fault_hooks.ExitOnce(str(marker), row_id=1000)
    got = encode_dataset(MODEL, "digits", tmp_path / "faulty", batch_hook=hook, **opts)

    assert marker.exists()  # the worker did die
    print(marker.read_text().strip())
    assert got.rows == ref.rows == DIGITS_ROWS
    expected = pq.read_table(tmp_path / "reference").sort_by("id")
    table = pq.read_table(tmp_path / "faulty").sort_by("id")
    assert (
        table.column_names == expected.column_names == ["id", "mu", "logvar", "z", "score", "label"]
    )
    for name in expected.column_names:  # same ids, latents, samples and scores, bit for bit
        assert table.column(name).equals(expected.column(name)), name
    assert hidden_leftovers(tmp_path) == []


def test_a_corrupt_file_fails_the_job_naming_it(ray_local, tmp_path):
    register_tiny()
    data = tmp_path / "in"
    for i, name in enumerate(["a", "b", "c"]):
        bad_files.write(bad_files.pixel_table(200, id_start=200 * i), data / f"{name}.parquet")
    bad_files.flip_bit_in_page(data / "b.parquet")
    out = tmp_path / "latent"
    import ray

    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    cmd = [sys.executable, "-m", "jobs", "encode", "--model", MODEL]
    cmd += ["--data", str(data), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    print(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]  # the whole of stderr: no Ray traceback before
    assert lines[0].startswith("vaepipe: error: ") and str(data / "b.parquet") in lines[0]
    assert "checksum" in lines[0]
    assert not out.exists() and hidden_leftovers(tmp_path) == []
