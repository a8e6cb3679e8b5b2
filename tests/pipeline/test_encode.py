"""Batch encoding: latent rows and metadata, exactly-once commit, kill-and-rerun, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.data import schema
from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.data.staged_output import MANIFEST
from pipeline.errors import UserError
from pipeline.inference.encode import encode_dataset
from pipeline.tracking import mlflow_store, registry
from vae_core.config import ModelConfig
from vae_core.model import VAE

REPO = Path(__file__).resolve().parents[2]
SHAPE = (1, 8, 8)
PRE = Preprocessor(XLayout(SHAPE, "uint8"))
DIGITS_ROWS = 1797


def register(seed: int = 0, val_loss: float = 1.0) -> VAE:
    torch.manual_seed(seed)
    vae = VAE(ModelConfig(input_shape=SHAPE, latent_dim=3, hidden_sizes=(16,))).eval()
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("enc")):
        registry.log_vae(vae, PRE.to_dict(), "tiny", val_loss, "digits")
    return vae


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its content (what must survive a refused command)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def hidden_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".vaepipe-" in p.name)


# ----------------------------------------------------------------------------- bad input
# All refused before Ray starts: no ray_local needed.


def test_bad_input_is_one_line_and_writes_nothing(no_ray, tmp_path):
    register()
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not read")
    np.save(tmp_path / "seven.npy", np.zeros((4, 7, 7), np.uint8))
    (tmp_path / "afile").write_text("x")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    cases = [
        ("models:/tiny@gold", "digits", tmp_path / "o1", "gold"),
        ("models:/tiny/9", "digits", tmp_path / "o2", "9"),
        ("models:/other@champion", "digits", tmp_path / "o3", "other"),
        ("models:/tiny@champion", str(tmp_path / "seven.npy"), tmp_path / "o4", "shape"),
        ("models:/tiny@champion", str(images), images / "latent", "overlaps"),
        ("models:/tiny@champion", "digits", foreign, "not a vaepipe output"),
        ("models:/tiny@champion", "digits", tmp_path / "afile" / "out", "cannot write"),
        ("models:/tiny@champion", "digits", tmp_path / "afile", "not a directory"),
    ]
    before = tree(tmp_path)
    for uri, data, out, words in cases:
        with pytest.raises(UserError) as info:
            encode_dataset(uri, data, out)
        message = str(info.value)
        assert words in message and "\n" not in message, (uri, data, out, message)
    assert _user_files(tree(tmp_path)) == _user_files(before)
    assert hidden_leftovers(tmp_path) == []
    import ray

    assert not ray.is_initialized()  # every refusal came before any Ray work


def _user_files(files: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if not k.startswith(("mlartifacts", "mlflow.db"))}


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    from jobs.cli import main

    register()
    capsys.readouterr()
    code = main(["encode", "--model", "models:/tiny@nope", "--data", "digits", "--out", "o"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("vaepipe: error:") and "nope" in err
    assert len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- real Ray


def read_latents(out: Path):
    return pq.read_table(out).sort_by("id")


@pytest.mark.ray
def test_encode_rows_metadata_rerun_and_overwrite(ray_local, tmp_path):
    from sklearn.datasets import load_digits

    vae = register()
    out = tmp_path / "latent"
    res = encode_dataset("models:/tiny@champion", "digits", out, with_z=True, batch_size=500)
    assert res.rows == DIGITS_ROWS and not res.skipped
    table = read_latents(out)
    assert table.column("id").to_pylist() == list(range(DIGITS_ROWS))
    assert table.column_names == ["id", "mu", "logvar", "z", "score", "label"]
    digits = load_digits()
    assert table.column("label").to_pylist() == digits.target.tolist()
    # mu and logvar are the model's, on the stored preprocessing of the same pixels.
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    mu, logvar = vae.encode(PRE(torch.from_numpy(pixels)))
    got_mu = np.stack(table.column("mu").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got_mu, mu.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert np.isfinite(table.column("score").to_numpy()).all()
    meta = pq.read_schema(out / res.files[0]).metadata
    model = json.loads(meta[schema.META_MODEL])
    assert (model["name"], model["version"]) == ("tiny", "1")
    assert meta[schema.META_LATENT_DIM] == b"3" and meta[schema.META_SOURCE] == b"digits"
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["rows"] == DIGITS_ROWS and [f["path"] for f in manifest["files"]] == res.files

    again = encode_dataset("models:/tiny@champion", "digits", out, with_z=True)
    assert again.skipped and again.rows == DIGITS_ROWS

    register(seed=1, val_loss=0.5)  # version 2 becomes champion
    before = tree(out)
    with pytest.raises(UserError, match="--overwrite"):
        encode_dataset("models:/tiny@champion", "digits", out, with_z=True)
    assert tree(out) == before
    seen: list[tuple[int, int | None]] = []
    res2 = encode_dataset(
        "models:/tiny@champion",
        "digits",
        out,
        overwrite=True,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (DIGITS_ROWS, DIGITS_ROWS)
    assert (
        json.loads(pq.read_schema(out / res2.files[0]).metadata[schema.META_MODEL])["version"]
        == "2"
    )
    assert read_latents(out).num_rows == DIGITS_ROWS and hidden_leftovers(tmp_path) == []


def _encode_killed_at(point: str, out: Path, overwrite: bool) -> None:
    """``vaepipe encode`` in a subprocess that dies (like kill -9) at ``point``."""
    import ray

    env = dict(os.environ, VAEPIPE_FAULT=point, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    cmd = [sys.executable, "-m", "jobs", "encode", "--model", "models:/tiny@champion"]
    cmd += ["--data", "digits", "--out", str(out)] + (["--overwrite"] if overwrite else [])
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr[-2000:]


@pytest.mark.ray
@pytest.mark.reliability
def test_killed_at_any_step_then_rerun_gives_the_same_rows(ray_local, tmp_path):
    """A kill at each commit step of ``StagedOutput.commit``, in order; after each, a plain
    rerun leaves one complete output with the reference rows and nothing hidden beside it."""
    register()
    out = tmp_path / "latent"
    # Killed after the data files were written, before the manifest: nothing is visible.
    _encode_killed_at("encode:written", out, overwrite=False)
    assert not out.exists() and hidden_leftovers(tmp_path) != []
    res = encode_dataset("models:/tiny@champion", "digits", out)
    reference = read_latents(out)
    assert res.rows == reference.num_rows == DIGITS_ROWS
    assert hidden_leftovers(tmp_path) == []
    # The later steps, each in an --overwrite of that complete output:
    #   staged: the new manifest is in staging, the old output still in place (rerun: kept);
    #   mid-commit: the old output moved aside, staging not yet in (rerun: finishes the commit);
    #   swapped: staging is the output, the old one not yet deleted (rerun: deletes it).
    for point, visible, left in [
        ("encode:staged", True, ["staging"]),
        ("encode:mid-commit", False, ["old", "staging"]),
        ("encode:swapped", True, ["old"]),
    ]:
        _encode_killed_at(point, out, overwrite=True)
        assert out.exists() == visible, point
        kinds = sorted(n.split(".vaepipe-")[1].split("-")[0] for n in hidden_leftovers(tmp_path))
        assert kinds == sorted(["lock", *left]), (point, kinds)  # a killed writer's lock file
        res = encode_dataset("models:/tiny@champion", "digits", out)
        assert res.skipped, point  # the recovered output is complete and from the same model
        table = read_latents(out)
        assert table.column("id").equals(reference.column("id")), point
        assert table.column("mu").equals(reference.column("mu")), point
        assert hidden_leftovers(tmp_path) == [], point
