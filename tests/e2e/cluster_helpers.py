"""e2e helpers: the local stack, `vaepipe` run as a real subprocess, an MNIST subset on disk."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cluster import local_stack, stack_processes

REPO_ROOT = Path(__file__).resolve().parents[2]
# Rows of the MNIST subset: enough for a real epoch, small enough for a 2-core CI machine.
TRAIN_ROWS, TEST_ROWS = 1200, 300


def start_stack(root: Path, num_cpus: int, postgres) -> local_stack.StackState:
    """The local stack with its MLflow server on a fresh database of ``postgres``."""
    return local_stack.start(root, num_cpus=num_cpus, backend_store_uri=postgres.create_database())


def stop_stack(state: local_stack.StackState) -> None:
    """Stop the stack and prove that nothing it started is left."""
    local_stack.stop(Path(state.root))
    assert stack_processes.marked_pids(state.marker) == []
    assert not any(stack_processes.is_alive(pid) for pid in state.pids())


def is_running(state: local_stack.StackState) -> bool:
    return (Path(state.root) / local_stack.STATE_FILE).exists()


def client_env(state: local_stack.StackState, **extra: str) -> dict[str, str]:
    """The environment of a user whose shell ran `local_stack.sh env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(state.env(), **extra)
    return env


def vaepipe(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (its exit code is what a user's shell would see)."""
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(stdout: str) -> dict:
    """The last stdout line that is a JSON object (`--json` output followed through the logs)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output:\n{stdout[-2000:]}")


def needs_modules(*names: str) -> None:
    """Skip, naming what is missing, when a command's implementation has not landed."""
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        pytest.skip(f"not implemented yet: {', '.join(missing)}")


def write_mnist_subset(mnist_dir: Path, out: Path) -> Path:
    """The first rows of real MNIST as raw IDX files (train and t10k), with labels."""
    for prefix, rows in (("train", TRAIN_ROWS), ("t10k", TEST_ROWS)):
        images = _read_idx_gz(mnist_dir / f"{prefix}-images-idx3-ubyte.gz", rows)
        labels = _read_idx_gz(mnist_dir / f"{prefix}-labels-idx1-ubyte.gz", rows)
        _write_idx(out / f"{prefix}-images-idx3-ubyte", images, 0x00000803)
        _write_idx(out / f"{prefix}-labels-idx1-ubyte", labels, 0x00000801)
    return out


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _read_idx_gz(path: Path, rows: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        ndim = f.read(4)[3]
        dims = [int.from_bytes(f.read(4), "big") for _ in range(ndim)]
        per_row = int(np.prod(dims[1:])) if ndim > 1 else 1
        data = np.frombuffer(f.read(rows * per_row), dtype=np.uint8)
    return data.reshape(rows, *dims[1:])


def mnist_subset_ids() -> set[int]:
    """Ids the IDX source gives the subset's rows: file code (train 0, t10k 1) << 32 | row."""
    return set(range(TRAIN_ROWS)) | {(1 << 32) | r for r in range(TEST_ROWS)}
