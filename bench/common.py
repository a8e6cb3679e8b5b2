"""What every ``bench/`` script shares: the order contenders take turns in, medians and paired
ratios, and the last line of output — one JSON object, also when the benchmark fails.

A script builds its parser with ``parser(__doc__)``, returns its figures as a dict from
``main()``, and ends with ``run(main)``: the figures become the last line; any failure (a bad
argument included) becomes ``{"error": "<one line>"}`` and a non-zero exit, the traceback above
it on stderr. Imported as ``common`` (a script's own folder is first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

BAD_ARGUMENTS_EXIT = 2  # as argparse
FAILED_EXIT = 1


def _mnist_dir() -> Path:
    """The real MNIST IDX files: ``VAEPIPE_MNIST_DIR``, else ``shared/data/mnist`` beside the
    checkout (``/work/main`` → ``/work/shared``) or beside its folder (a worktree such as
    ``/work/wt/NAME`` → ``/work/shared``)."""
    if os.environ.get("VAEPIPE_MNIST_DIR"):
        return Path(os.environ["VAEPIPE_MNIST_DIR"])
    repo = Path(__file__).resolve().parents[1]
    beside = [repo.parent / "shared/data/mnist", repo.parents[1] / "shared/data/mnist"]
    return next((p for p in beside if p.is_dir()), beside[0])


# Real MNIST (IDX files): the shared data folder beside the checkout, unless told otherwise.
MNIST = _mnist_dir()


def private_mlflow_store(prefix: str) -> str:
    """A fresh folder for the run's MLflow store and artifacts (unless the environment names
    a store already); its path."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    os.environ.setdefault("VAEPIPE_ARTIFACT_ROOT", f"{tmp}/mlartifacts")
    return tmp


def train_registered(config: str, overrides: Sequence[str]) -> str:
    """Train a shipped config with ``overrides`` through the real pipeline (Ray Train, MLflow,
    registry); the registered version's ``models:/`` URI."""
    from pipeline.config.job import load_job_config
    from pipeline.train.trainer import run_training

    result = run_training(load_job_config(config, list(overrides)))
    return f"models:/{result.model_name}/{result.version}"


class BadArguments(Exception):
    """argparse's complaint, kept as an exception so it reaches the JSON line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise BadArguments(f"{self.prog}: {message}")


def on_one_then_two_nodes(child: Sequence[str]) -> tuple[Any, Any]:
    """Run ``child`` on a loopback cluster of one 1-CPU node, then of two (``local_stack``);
    the JSON of its last stdout line each time (the rest of its stdout is echoed).

    The child is a process of its own started with the cluster's address and token in its
    environment: Ray reads ``RAY_AUTH_MODE`` and caches the token when it is first used, so a
    process that used Ray already cannot switch to them.
    """
    from pipeline.cluster import local_stack

    root = Path(tempfile.mkdtemp(prefix="vp_bench_stack_"))
    state = local_stack.start(root, num_cpus=1)
    env = os.environ | {
        "RAY_ADDRESS": state.ray_address,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": state.token_path,
    }

    def last_line() -> Any:
        done = subprocess.run(list(child), env=env, check=True, stdout=subprocess.PIPE, text=True)
        print(done.stdout, end="", flush=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    try:
        one = last_line()
        local_stack.add_node(root, num_cpus=1)
        return one, last_line()
    finally:
        local_stack.stop(root)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` described by the first line of the script's docstring."""
    return _Parser(description=(doc or "").strip().splitlines()[0] if doc else None)


# ---- order and statistics ------------------------------------------------------------------------


def abba(names: Sequence, cycle: int) -> list:
    """The order of ``cycle``: reversed every other cycle, so neither contender always goes
    first (a drift in the machine's speed, or a cost of following the other, cancels)."""
    return list(names) if cycle % 2 == 0 else list(reversed(names))


def interleaved(
    contenders: dict[str, Callable[[], None]],
    rounds: int,
    steps: int,
    warmup_rounds: int,
    budget_s: float,
    min_rounds: int = 5,
) -> dict[str, list[float]]:
    """Seconds per call of each contender, one figure per kept round, in ABBA order.

    Stops early (after at least ``min_rounds`` kept rounds) once ``budget_s`` is spent, so a
    loaded machine gives fewer rounds rather than an endless run.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    start = time.perf_counter()
    for r in range(warmup_rounds + rounds):
        if r - warmup_rounds >= min_rounds and time.perf_counter() - start > budget_s:
            break
        for name in abba(list(contenders), r):
            fn = contenders[name]
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            if r >= warmup_rounds:
                times[name].append((time.perf_counter() - t0) / steps)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio_of_medians_per_round(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of a[r] / b[r]: adjacent measurements share the machine's load."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def paired(ratios: Sequence[float]) -> dict[str, Any]:
    """The median of per-pair ratios, with every pair's ratio for the record."""
    return {"median": statistics.median(ratios), "pairs": [round(r, 3) for r in ratios]}


# ---- the last line -----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Floats rounded to 4 places; inf/nan become null (JSON has neither)."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def emit(figures: dict[str, Any]) -> None:
    print(json.dumps(_jsonable(figures)), flush=True)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run(main: Callable[[], dict[str, Any]]) -> NoReturn:
    """Run ``main`` and exit: its figures as the last line, or ``{"error": ...}`` and exit != 0."""
    try:
        figures = main()
    except BadArguments as exc:
        _fail(str(exc), BAD_ARGUMENTS_EXIT)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BaseException as exc:  # noqa: BLE001 - every failure must still end with its JSON line
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise  # --help
        traceback.print_exc(file=sys.stderr)
        _fail(one_line(exc), FAILED_EXIT)
    sys.stdout.flush()
    emit(figures)
    sys.exit(0)


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.flush()
    emit({"error": message})
    sys.exit(code)
