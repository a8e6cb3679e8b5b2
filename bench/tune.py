"""Benchmark: does an ASHA sweep find the grid's best VAE config for a fraction of its compute?

On an MNIST subset (real IDX files; ``--rows`` rows per split, default 10,000: the full 60k
would make one grid take ~40 min on 2 shared cores), the ``mnist`` config with ``--epochs``
epochs (default 9) and a grid of 16 configurations: lr x KL warm-up x latent size x width.

1. grid: every configuration trained to the end (FIFO) — the reference.
2. asha: the same 16 configurations under ASHA (rungs at 1, 3, 9 epochs, best third promoted).
   ``asha_best_vs_grid_best`` = ASHA's best validation -ELBO / the grid's best (target <= 1.01);
   ``compute_share`` = ASHA's trial-epochs / the grid's (target <= 0.40).
3. default: the shipped ``mnist`` config trained alone on the same rows and epochs; its test
   -ELBO against the ASHA-tuned config's (both the best model of their run, same test split).

Both sweeps run ``--max-concurrent`` trials at once (default 2: a trial's start-up — actor,
controller, worker group, data — is mostly waiting, which the other trial fills). MLflow
tracks everything into a temporary store. The last line is one JSON object.

    python bench/tune.py [--rows 10000] [--epochs 9] [--max-concurrent 2]
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
# Next to the checkout (/work/main → /work/shared), or set VAEPIPE_MNIST_DIR.
_BESIDE = [REPO.parent / "shared" / "data" / "mnist", REPO.parents[1] / "shared" / "data" / "mnist"]
MNIST = Path(
    os.environ.get("VAEPIPE_MNIST_DIR") or next((p for p in _BESIDE if p.is_dir()), _BESIDE[0])
)

GRID = """\
optim.lr: {grid: [1.0e-3, 3.0e-3]}
objective.kl_warmup_steps: {grid: [0, 500]}
model.latent_dim: {grid: [16, 32]}
model.hidden_sizes: {grid: [[256, 128], [512, 256]]}
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000, help="rows per split (data.limit)")
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


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_tune_"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["VAEPIPE_ARTIFACT_ROOT"] = str(work / "mlartifacts")
    space_file = work / "grid.yaml"
    space_file.write_text(GRID)
    sets = overrides(args, work / "ray_results")

    grid, grid_s = sweep("grid", "fifo", sets, space_file, args)
    asha, asha_s = sweep("asha", "asha", sets, space_file, args)
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
    print(json.dumps(out))


if __name__ == "__main__":
    main()
