"""The bad-input catalogue (issue #12, item 9), part 1: what the driver finds before Ray.

Every command that reads data (prepare, train, encode, evaluate) gets each broken input and
must answer with one line naming the file and the problem (the whole of stderr), exit 2, and
leave nothing: no output, no staging, no Ray started, no model version. In-process through
``jobs.cli.main`` (capsys sees Ray's console handlers too: they write to the current stderr).
The problems only Ray tasks can see: ``test_bad_input_in_tasks.py``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import bad_files
import pytest
import tiny_models

from jobs.cli import main
from pipeline.data.schema import XLayout

# no_ray: these tests check that nothing started Ray in this process.
pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("no_ray")]

MODEL = "models:/tiny@champion"
COMMANDS = ("prepare", "train", "encode", "evaluate")


def argv(command: str, data: Path, out: Path) -> list[str]:
    return {
        "prepare": ["prepare", str(data), "--out", str(out)],
        "train": ["train", "--data", str(data), "--set", "train.epochs=1"],
        "encode": ["encode", "--model", MODEL, "--data", str(data), "--out", str(out)],
        "evaluate": ["evaluate", "--model", MODEL, "--data", str(data)],
    }[command]


@pytest.fixture(scope="module")
def model_store(tmp_path_factory) -> str:
    """One store per module holding the tiny model encode and evaluate load."""
    root = tmp_path_factory.mktemp("store")
    return tiny_models.open_store(root, {"tiny": XLayout(bad_files.SHAPE, "uint8")}, "catalogue")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("catalogue")
    return {name: build(root) for name, build in bad_files.DRIVER_CASES.items()}


def refused(command: str, data: Path, tmp_path: Path, capsys) -> str:
    """Run ``command`` on ``data``; check the refusal left nothing; give the stderr line."""
    import ray

    out = tmp_path / "out"
    before = tiny_models.versions()
    capsys.readouterr()
    code = main(argv(command, data, out))
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("vaepipe: error: "), err
    assert not ray.is_initialized()
    assert not mlflow_setup_running()  # nothing left to write to a store, or to stderr, later
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []  # no staging either
    assert tiny_models.versions() == before
    return err


def mlflow_setup_running() -> bool:
    return any(t.name == "vaepipe-mlflow-setup" for t in threading.enumerate())


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", sorted(bad_files.DRIVER_CASES))
def test_refused_before_ray(case, command, catalogue, store, tmp_path, capsys):
    data, needles = catalogue[case]
    err = refused(command, data, tmp_path, capsys)
    for word in needles:
        assert word in err, (word, err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file: no error to see")
@pytest.mark.parametrize("command", COMMANDS)
def test_unreadable_file(command, store, tmp_path, capsys):
    data, needles = bad_files.unreadable(tmp_path / "in")
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    err = refused(command, data, out_dir, capsys)
    assert all(word in err for word in needles), err


@pytest.mark.parametrize("command", ["prepare", "encode"])
@pytest.mark.parametrize("where", ["inside", "dotdot", "same"])
def test_output_overlapping_the_input(where, command, store, tmp_path, capsys):
    data = tmp_path / "in"
    bad_files.write(bad_files.pixel_table(50), data / "a.parquet")
    out = {
        "inside": data / "latent",
        "dotdot": tmp_path / "elsewhere" / ".." / "in" / "latent",  # resolves into the input
        "same": data,
    }[where]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    code = main(argv(command, data, out)[:-1] + [str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "overlaps the input" in err, err
    assert str(data) in err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    import ray

    assert not ray.is_initialized()


def test_train_refusal_makes_no_default_store(catalogue, monkeypatch, tmp_path, capsys):
    """No ``MLFLOW_TRACKING_URI``: a refused ``train`` must not create ``./mlflow.db``."""
    data, _ = catalogue["directory_for_file"]
    for var in tiny_models.STORE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    code = main(argv("train", data, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not mlflow_setup_running()
    assert list(tmp_path.iterdir()) == []
