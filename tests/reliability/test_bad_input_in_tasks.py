"""The bad-input catalogue (issue #12, item 9), part 2: problems only a Ray task can see (a
flipped bit in a page, null or duplicate ids, NaN/Inf, rows of the wrong width).

Each command (prepare, train, encode, evaluate) must still answer with one line naming the file
and the problem, exit 2, with no output, no staging and no model version left. In-process under
one module-wide Ray (capsys sees Ray's driver-side console handlers), plus one real subprocess
per command: the proof that the whole of a terminal's stderr is that one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bad_files
import pytest
import tiny_models

from jobs.cli import main
from pipeline.data.schema import XLayout

pytestmark = [pytest.mark.reliability, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
MODELS = {"pixels": "models:/tiny@champion", "features": "models:/tab@champion"}
COMMANDS = ("prepare", "train", "encode", "evaluate")


def argv(command: str, data: Path, out: Path, model: str) -> list[str]:
    return {
        "prepare": ["prepare", str(data), "--out", str(out)],
        "train": ["train", "--data", str(data), "--set", "train.epochs=1"],
        "encode": ["encode", "--model", model, "--data", str(data), "--out", str(out)],
        "evaluate": ["evaluate", "--model", model, "--data", str(data)],
    }[command]


@pytest.fixture(scope="module")
def model_store(tmp_path_factory) -> str:
    """One store per module with a pixel model and a float-features model."""
    models = {
        "tiny": XLayout(bad_files.SHAPE, "uint8"),
        "tab": XLayout((bad_files.WIDTH,), "float32"),
    }
    return tiny_models.open_store(tmp_path_factory.mktemp("store"), models, "catalogue")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("catalogue")
    return {
        name: (*build(root), MODELS[kind]) for name, (build, kind) in bad_files.TASK_CASES.items()
    }


def check_refusal(code: int, err: str, needles: list[str], run_dir: Path, before) -> None:
    assert code == 2, err[-3000:]
    assert len(err.splitlines()) == 1, err[-3000:]  # the whole of stderr
    assert err.startswith("vaepipe: error: ")
    for word in needles:
        assert word in err, (word, err)
    assert [p.name for p in run_dir.iterdir()] == []  # no output, no staging, no lock
    assert tiny_models.versions() == before


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", sorted(bad_files.TASK_CASES))
def test_refused_from_a_task(case, command, catalogue, store, ray_local, tmp_path, capsys):
    data, needles, model = catalogue[case]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    before = tiny_models.versions()
    capsys.readouterr()
    code = main(argv(command, data, run_dir / "out", model))
    check_refusal(code, capsys.readouterr().err, needles, run_dir, before)


# One real process per command: Ray's workers, its C++ side and its log handlers all write to
# this stderr; nothing but the one line may reach it.
SUBPROCESS_CASES = {
    "prepare": "duplicate_ids",
    "train": "nan",
    "encode": "bit_flip",
    "evaluate": "null_ids",
}


@pytest.mark.parametrize("command", sorted(SUBPROCESS_CASES))
def test_the_whole_of_stderr_is_one_line(command, catalogue, store, ray_local, tmp_path):
    import ray

    data, needles, model = catalogue[SUBPROCESS_CASES[command]]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    before = tiny_models.versions()
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    if command == "prepare":  # one of them starts its own local Ray, as a laptop run does
        env.pop("RAY_ADDRESS")
    cmd = [sys.executable, "-m", "jobs", *argv(command, data, run_dir / "out", model)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    print(proc.stderr)
    # Ray's C++ notice about the actor pool's constructor arguments (ray-project/ray#53727)
    # included: pipeline.cluster.native_stderr drops it.
    check_refusal(proc.returncode, proc.stderr, needles, run_dir, before)
