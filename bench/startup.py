"""Benchmark: seconds from ``vaepipe train`` to the first training step, and where they go.

Each repeat runs the real command (``jobs.cli.main(["train", ...])``) in a fresh Python process
with a fresh MLflow store and working folder, as a first run in a new project would. The child
wraps the driver's steps in timers from outside (no product code changes): imports, MLflow
set-up, Ray start, data planning, the preprocessing pass, row counting, the MLflow run, building
the trainer, the worker group's start (until ``train_func`` runs on rank 0) and the worker's
set-up until its first batch (the loop's own ``first_step_at``). Phases are medians over
repeats; ``unaccounted`` is what falls between them (argument parsing, config loading, Ray
Train's controller). The last line is one JSON object with ``seconds_to_first_step``.

``--baseline DIR`` (another checkout, e.g. main before a change) runs the same command from
that code too, the two taking turns (ABBA) so both see the same machine; its figures are given
under ``baseline``.

    python bench/startup.py [--repeats 2] [--baseline DIR] [-- TRAIN ARGS]
    (default TRAIN ARGS: --config digits --epochs 1)
"""

from __future__ import annotations

import time

T_CHILD = time.time()  # this process's start (meaningful in the child)

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from common import abba, median, parser, run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRAIN_ARGS = ["--config", "digits", "--epochs", "1"]
CHILD_TIMEOUT_S = 600


# ---- the child: one `vaepipe train` with timers around the driver's steps ----------------------


class Events:
    """(phase, start, end) wall-clock records, written as JSON when the child ends."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float, float]] = []
        self.extra: dict[str, float] = {}

    def timed(self, owner, attribute: str, phase: str) -> None:
        """Replace ``owner.attribute`` (a function) by one that records its span as ``phase``;
        a name the code under test lacks (another checkout, ``--baseline``) is left untimed."""
        original = getattr(owner, attribute, None)
        if original is None:
            return

        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                self.records.append((phase, start, time.time()))

        setattr(owner, attribute, wrapper)

    def imported(self, phase: str, module: str) -> None:
        start = time.time()
        __import__(module)
        self.records.append((phase, start, time.time()))


def worker_entry_marker(marker_dir: str):
    """A ``train_func`` that times rank 0's set-up steps, then runs the real one (pickled by
    value, so the worker needs nothing from this file)."""

    def train_func(config):
        entry = time.time()
        import ray.train

        import pipeline.data.hot_split as hot_split
        import pipeline.train.hooks as hooks
        import pipeline.train.loop as loop
        import pipeline.train.mlflow_hook as mlflow_hook

        rank0 = ray.train.get_context().get_world_rank() == 0
        events = Events()
        events.timed(loop._Worker, "_restore", "worker_checkpoint_lookup")
        events.timed(loop._Worker, "__init__", "worker_init_total")
        events.timed(mlflow_hook.MlflowEpochLogging, "setup", "worker_mlflow_logger")
        events.timed(hooks.Hooks, "setup", "worker_hooks_total")
        events.timed(hot_split.HotSplit, "blocks", "worker_hot_blocks")
        # Per epoch (with --epochs > 1): where an epoch's wall time goes.
        events.timed(loop, "train_epoch", "epoch_train_pass")
        events.timed(loop, "validate_epoch", "epoch_validate_pass")
        events.timed(loop._Worker, "log_epoch", "epoch_mlflow_log")
        events.timed(loop._Worker, "report", "epoch_checkpoint_report")
        events.timed(loop._Worker, "run_epoch", "epoch_total_compute")
        try:
            return loop.train_func(config)
        finally:
            if rank0:
                payload = {"entry": entry, "records": events.records}
                Path(marker_dir, "rank0").write_text(json.dumps(payload))

    return train_func


def child(out: str, train_args: list[str]) -> None:
    events = Events()
    events.imported("import_torch", "torch")
    events.imported("import_ray", "ray")
    events.imported("import_ray_train_data", "ray.train")
    events.imported("import_mlflow", "mlflow")
    events.imported("import_vaepipe", "pipeline.train.trainer")

    import pipeline.data.hot_split as hot_split
    import pipeline.data.train_order as train_order
    import pipeline.train.loop as loop
    import pipeline.train.trainer as trainer
    from jobs.cli import main
    from pipeline.tracking import datasets, mlflow_store, runs

    # MLflow's set-up runs in a thread beside Ray's start: only the wait for it is timed.
    configure_in_background = mlflow_store.configure_in_background

    def background(*args, **kwargs):
        ready = configure_in_background(*args, **kwargs)

        def timed_ready():
            start = time.time()
            try:
                return ready()
            finally:
                events.records.append(("mlflow_setup_wait", start, time.time()))

        return timed_ready

    mlflow_store.configure_in_background = background
    events.timed(trainer, "ensure_ray", "ray_start")
    events.timed(train_order, "plan_source", "data_plan")
    events.timed(train_order, "open_source", "data_plan")
    events.timed(hot_split.HotSplit, "materialize", "hot_materialize")
    events.timed(trainer, "build_preprocessor", "preprocessor_pass")
    events.timed(trainer, "_count_train_rows", "count_rows")
    events.timed(runs, "fail_orphaned_runs", "mlflow_orphan_check")
    events.timed(runs, "open_run", "mlflow_run_open")
    events.timed(runs, "log_job_config", "mlflow_log_config")
    events.timed(train_order, "split_rows", "count_split_rows")
    events.timed(datasets, "log_inputs", "mlflow_log_inputs")
    events.timed(trainer, "build_trainer", "trainer_build")
    events.timed(trainer, "_fit_with_progress", "fit")
    results = []
    real_run_training = trainer.run_training

    def run_training(*args, **kwargs):
        result = real_run_training(*args, **kwargs)
        results.append(result)
        return result

    trainer.run_training = run_training
    marker_dir = tempfile.mkdtemp(prefix="vp_startup_marker_")
    loop.train_func = worker_entry_marker(marker_dir)

    code = main(["train", *train_args])
    if code != 0:
        raise SystemExit(f"vaepipe train exited {code}")
    history = results[0].history if results else ()
    payload = {
        "child_start": T_CHILD,
        "records": events.records,
        "worker": json.loads(Path(marker_dir, "rank0").read_text()),
        "first_step_at": history[0]["first_step_at"] if history else None,
        "end": time.time(),
    }
    Path(out).write_text(json.dumps(payload))


# ---- the parent: repeats, phases, medians ------------------------------------------------------


def one_repeat(train_args: list[str], repo: Path = REPO) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="vp_bench_startup_"))
    out = work / "events.json"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # the default: ./mlflow.db, fresh, in `work`
    env["PYTHONPATH"] = str(repo)  # the code under test; this file's helpers travel by path
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out), "--", *train_args]
    t_cmd = time.time()
    proc = subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    if proc.returncode != 0 or not out.exists():
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the train run failed (exit {proc.returncode}): {tail}")
    return phases(t_cmd, json.loads(out.read_text()))


def phases(t_cmd: float, ev: dict) -> dict[str, float]:
    spans: dict[str, float] = {"interpreter_start": ev["child_start"] - t_cmd}
    fit_start = None
    for phase, start, end in ev["records"]:
        if phase == "fit":
            fit_start = start
            continue
        if start < ev["first_step_at"]:  # before the first step (not the final registration)
            spans[phase] = spans.get(phase, 0.0) + (end - start)
    worker = ev["worker"]
    spans["worker_group_start"] = worker["entry"] - fit_start
    spans |= worker_phases(worker, ev["first_step_at"])
    total = ev["first_step_at"] - t_cmd
    spans["unaccounted"] = total - sum(spans.values())
    spans["seconds_to_first_step"] = total
    spans["seconds_total"] = ev["end"] - t_cmd
    spans |= per_epoch(worker["records"])
    return spans


def worker_phases(worker: dict, first_step_at: float) -> dict[str, float]:
    """Rank 0 from ``train_func``'s entry to its first step, in consecutive parts: ``_Worker``'s
    set-up (the checkpoint lookup apart), the hooks' set-up (MLflow's apart), then the wait for
    the first batch (the hot split's first load apart)."""
    spans: dict[str, float] = {}
    for phase, start, end in worker["records"]:
        if not phase.startswith("epoch_") and start < first_step_at and phase not in spans:
            spans[phase] = end - start
    init = spans.pop("worker_init_total", 0.0)
    hooks = spans.pop("worker_hooks_total", 0.0)
    spans["worker_init_other"] = init - spans.get("worker_checkpoint_lookup", 0.0)
    spans["worker_hooks_other"] = hooks - spans.get("worker_mlflow_logger", 0.0)
    set_up_end = worker["entry"] + init + hooks
    spans["worker_first_batch"] = first_step_at - set_up_end - spans.get("worker_hot_blocks", 0.0)
    return spans


def per_epoch(records: list) -> dict[str, float]:
    """Median seconds per epoch of each epoch_* step, the first epoch (warm-up) left out, and
    the wall time between the starts of consecutive epochs."""
    out: dict[str, float] = {}
    starts = sorted(start for p, start, _ in records if p == "epoch_total_compute")
    for phase in dict.fromkeys(p for p, _, _ in records if p.startswith("epoch_")):
        spans = [end - start for p, start, end in records if p == phase][1:]
        if spans:
            out[phase] = median(spans)
    gaps = [b - a for a, b in zip(starts[1:], starts[2:], strict=False)]
    if gaps:
        out["epoch_wall"] = median(gaps)
    return out


def main() -> dict:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--baseline", metavar="DIR", help="another checkout to time the same way")
    p.add_argument("--child", metavar="OUT", help=argparse_hidden())
    p.add_argument("train_args", nargs="*", help="after --: arguments of `vaepipe train`")
    args = p.parse_args()
    train_args = args.train_args or DEFAULT_TRAIN_ARGS
    if args.child:
        child(args.child, train_args)
        return {"child": "done"}
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    repos = {"this": REPO}
    if args.baseline:
        repos["baseline"] = Path(args.baseline).resolve()
        if not (repos["baseline"] / "pipeline").is_dir():
            raise ValueError(f"--baseline {args.baseline} is not a vaepipe checkout")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in repos}
    for r in range(args.repeats):
        for name in abba(list(repos), r):
            runs[name].append(one_repeat(train_args, repos[name]))
            first = runs[name][-1]["seconds_to_first_step"]
            print(f"repeat {r} {name}: {first:.1f}s to the first step", flush=True)
    figures = summary(runs["this"])
    if args.baseline:
        figures["baseline"] = summary(runs["baseline"]) | {"repo": str(repos["baseline"])}
    return figures | {"train_args": train_args, "cpus": os.cpu_count()}


def summary(runs: list[dict[str, float]]) -> dict:
    """Medians over repeats, printed as a table; each repeat's time to the first step."""
    keys = list(dict.fromkeys(k for r in runs for k in r))
    med = {k: median([r.get(k, 0.0) for r in runs]) for k in keys}
    for k in keys:
        print(f"  {k:28s} {med[k]:6.2f}s   ({', '.join(f'{r.get(k, 0.0):.2f}' for r in runs)})")
    epoch = {k: med.pop(k) for k in keys if k.startswith("epoch_")}
    return {
        "seconds_to_first_step": med.pop("seconds_to_first_step"),
        "seconds_total": med.pop("seconds_total"),
        "phases": med,
        "per_epoch": epoch,
        "repeats": [round(r["seconds_to_first_step"], 2) for r in runs],
    }


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    run(main)
