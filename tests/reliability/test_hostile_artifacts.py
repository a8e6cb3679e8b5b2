"""Item 15: a pickle whose ``__reduce__`` would write a file is refused with one line and runs
nothing — as a training checkpoint, as a model's weights, and through `vaepipe sample` on a
registered model whose artifact was tampered with; ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
changes none of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pyarrow.fs as pafs
import pytest
import torch

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.tracking import mlflow_store, registry
from pipeline.train import checkpoints
from vae_core.config import ModelConfig
from vae_core.model import VAE
from vae_core.serialization import UnsafePickleError, load_model, save_model

pytestmark = pytest.mark.reliability

SHAPE = (1, 4, 4)
FORCE_UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


class _WritesAFile:
    """Unpickling this would run ``os.system("touch <path>")``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _hostile_pt(path: Path, marker: Path, **plain) -> Path:
    torch.save({**plain, "model": _WritesAFile(marker)}, path)
    return path


def _tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(input_shape=SHAPE, latent_dim=2, hidden_sizes=(8,))).eval()


@pytest.fixture(params=["default", "force_no_weights_only"])
def torch_env(request, monkeypatch):
    if request.param == "force_no_weights_only":
        monkeypatch.setenv(FORCE_UNSAFE, "1")
    return request.param


def test_hostile_checkpoint_stops_the_load_without_falling_back(tmp_path, torch_env):
    run_dir, marker = tmp_path / "run", tmp_path / "pwned"
    older = run_dir / "epoch_00001-1"
    older.mkdir(parents=True)
    vae = _tiny_vae()
    state = {k: 0 for k in checkpoints.REQUIRED_KEYS} | {"model": vae.state_dict()}
    checkpoints.save_state(state, older)  # a good, older checkpoint exists
    newest = run_dir / "epoch_00002-2"
    newest.mkdir()
    _hostile_pt(newest / checkpoints.STATE_FILE, marker, epoch=2)
    with pytest.raises(checkpoints.CheckpointError) as caught:
        checkpoints.load_latest_state(pafs.LocalFileSystem(), str(run_dir))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{newest}/{checkpoints.STATE_FILE}: refused to load: ")
    assert "posix.system" in message
    assert not marker.exists()


def test_hostile_model_weights_are_refused(tmp_path, torch_env):
    marker = tmp_path / "pwned"
    save_dir = save_model(_tiny_vae(), tmp_path / "vae")
    _hostile_pt(save_dir / "weights.pt", marker)
    with pytest.raises(UnsafePickleError) as caught:
        load_model(save_dir)
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_sample_refuses_a_tampered_registered_model(tmp_path, mlflow_tmp_store, torch_env):
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("hostile")):
        pre = Preprocessor(XLayout(SHAPE, "uint8")).to_dict()
        version = registry.log_vae(_tiny_vae(), pre, "hostile", 1.0, "digits")
    artifacts = Path(os.environ["VAEPIPE_ARTIFACT_ROOT"])
    (weights,) = artifacts.rglob(f"{registry.VAE_DIR}/weights.pt")
    marker = tmp_path / "pwned"
    _hostile_pt(weights, marker)
    out = tmp_path / "grid.png"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "sample", "--model", version.uri, "--out", str(out)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("vaepipe: error: ") and "weights.pt: refused to load: " in line
    assert not marker.exists() and not out.exists()
