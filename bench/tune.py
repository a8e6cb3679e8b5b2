"""Benchmark: does an ASHA sweep find the grid's best VAE config for a fraction of its compute?

On an MNIST subset (real IDX files; ``--rows`` rows per split, default 8,000) the ``mnist`` config
with ``--epochs`` epochs (default 9) and a grid of 16 configurations: lr x KL warm-up x latent
size x width. Why 8,000 rows: the grid's 144 trial-epochs took 13 min on 2 cores shared with
other agents (2 trials at a time, ~100 s a trial, a third of it start-up), so grid + ASHA +
default fit in about 20 min; the full 60k rows would make the grid alone ~1.5 h. The subset
still separates the configurations: after 9 epochs the grid's validation -ELBOs span 122.6 to
167.1 nats, and the ranking at epochs 1 and 4 already puts the lr=3e-3 half ahead.

1. asha (run first): the 16 configurations under ``vaepipe tune``'s ASHA (rungs at 1 and 4 of
   9 epochs, the best quarter promoted; the grid's points in a random order fixed by the seed:
   ASHA promotes whoever reaches a rung first, and Tune's nested-loop order would hand that to
   the lr=1e-3 corner). ``asha_best_vs_grid_best`` = ASHA's best validation -ELBO / the grid's
   best (target <= 1.01); ``compute_share`` = ASHA's trial-epochs / the grid's (target <=
   0.40): epochs a trial reported, so the part of an epoch a stopped trial had begun is not
   counted.
2. grid: every configuration trained to the end (FIFO) — the reference.
3. default: the shipped ``mnist`` config trained alone on the same rows and epochs; its test
   -ELBO against the ASHA-tuned config's (both the best model of their run, same test split).

Both sweeps run ``--max-concurrent`` trials at once (default 2: a trial's start-up — actor,
controller, worker group, data — is mostly waiting, which the other trial fills). MLflow
tracks everything into a temporary store. The last line is one JSON object (also on failure).

    python bench/tune.py [--rows 8000] [--epochs 9] [--max-concurrent 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import MNIST, parser, run  # noqa: E402

GRID = """\
optim.lr: {grid: [1.0e-3, 3.0e-3]}
objective.kl_warmup_steps: {grid: [0, 500]}
model.latent_dim: {grid: [16, 32]}
model.hidden_sizes: {grid: [[256, 128], [512, 256]]}
"""


def parse_args() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--rows", type=int, default=8_000, help="rows per split (data.limit)")
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--max-concurrent", type=int, default=2)
    return p.parse_args()


def overrides(args, storage: Path) -> list[str]:
    return [
        f"data.source={MNIST}",
        f"data.limit={args.rows}",
        f"train.epochs={args.epochs}",
        "train.log_images=false",
        "tracking.experiment=bench-tune",
        "tracking.model_name=bench-tune",
        f"tracking.storage_path={storage}",
    ]


def sweep(name: str, scheduler: str, sets: list[str], space_file: Path, args):
    from pipeline.config.job import load_job_config
    from pipeline.tune.space import load_space
    from pipeline.tune.sweep import SweepSettings, run_sweep

    cfg = load_job_config("mnist", sets)
    space = load_space(str(space_file), "mnist", sets)
    settings = SweepSettings(name, 1, scheduler, None, args.max_concurrent)
    start = time.perf_counter()
    result = run_sweep(cfg, space, settings, progress=lambda line: print(line, file=sys.stderr))
    return result, time.perf_counter() - start


def default_run(sets: list[str]):
    """The shipped config on the same rows and epochs: its best model's test -ELBO."""
    from pipeline.config.job import load_job_config
    from pipeline.train.trainer import run_training

    cfg = load_job_config("mnist", [*sets, "train.nll_samples=0", "tracking.run_name=default"])
    start = time.perf_counter()
    result = run_training(cfg)
    return result, time.perf_counter() - start


def main() -> dict:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_tune_"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["VAEPIPE_ARTIFACT_ROOT"] = str(work / "mlartifacts")
    space_file = work / "grid.yaml"
    space_file.write_text(GRID)
    sets = overrides(args, work / "ray_results")

    # ASHA first: a failure in the sweep under test shows before the grid's long reference run.
    asha, asha_s = sweep("asha", "asha", sets, space_file, args)
    grid, grid_s = sweep("grid", "fifo", sets, space_file, args)
    default, default_s = default_run(sets)

    grid_best, asha_best = grid.best, asha.best
    by_config = {json.dumps(t.params, sort_keys=True): t for t in grid.trials}
    same_in_grid = by_config.get(json.dumps(asha_best.params, sort_keys=True))
    out = {
        "rows_per_split": args.rows,
        "epochs": args.epochs,
        "configs": len(grid.trials),
        "grid_best_val_neg_elbo": grid_best.best_val,
        "grid_best_config": grid_best.params,
        "asha_best_val_neg_elbo": asha_best.best_val,
        "asha_best_config": asha_best.params,
        "asha_best_in_grid_val_neg_elbo": same_in_grid.best_val if same_in_grid else None,
        "asha_best_vs_grid_best": asha_best.best_val / grid_best.best_val,
        "grid_trial_epochs": grid.trial_epochs(),
        "asha_trial_epochs": asha.trial_epochs(),
        "compute_share": asha.trial_epochs() / grid.trial_epochs(),
        "asha_trials_killed": sum(t.status == "KILLED" for t in asha.trials),
        "tuned_test_neg_elbo": asha_best.test_neg_elbo,
        "default_test_neg_elbo": default.metrics.get("test/neg_elbo"),
        "default_best_val_neg_elbo": default.metrics.get("best_val_loss"),
        "grid_wall_s": round(grid_s, 1),
        "asha_wall_s": round(asha_s, 1),
        "default_wall_s": round(default_s, 1),
        "max_concurrent": args.max_concurrent,
        "machine": f"{os.cpu_count()} cores, shared with other agents",
    }
    for t in grid.trials:
        print(json.dumps(dataclasses.asdict(t) | {"sweep": "grid"}), file=sys.stderr)
    for t in asha.trials:
        print(json.dumps(dataclasses.asdict(t) | {"sweep": "asha"}), file=sys.stderr)
    return out


if __name__ == "__main__":
    run(main)
