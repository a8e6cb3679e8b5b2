"""Benchmark: one-class anomaly detection on MNIST — per-digit and mean AUROC, and the wall time.

The standard protocol (Ruff et al., ICML 2018): for each digit c, train on the training rows of
c alone (``data.include_labels=[c]``), then score the whole MNIST test split with the model's
negative ELBO (``vaepipe evaluate --normal-labels c``: the filter shapes training only) and take
the AUROC of "not c" against "c". Anchor: Deep SVDD's mean over the ten digits, 0.948. Goal:
mean AUROC >= 0.95 with all ten runs in <= 30 minutes on this 2-core machine.

Each run is the real pipeline: Ray Data → Ray Train → MLflow run and registered model, then
``evaluate_model`` on Ray actors (one Ray instance for all ten). About 6,000 training rows a
digit, so the ``mnist`` config's schedule is shortened (``--epochs``, a KL warm-up of
``--kl-warmup`` steps instead of 10,000) and the final IS-NLL is skipped (the score is the ELBO).

    python bench/anomaly.py [--digits 0,1,...,9] [--epochs 40] [--kl-warmup 1000]

The last line is one JSON object: ``per_class_auroc``, ``mean_auroc``, ``per_class_auprc``,
``wall_s`` and the settings.
"""

from __future__ import annotations

import argparse
import os
import time

from common import MNIST, parser, private_mlflow_store, run, train_registered

DEEP_SVDD_MEAN_AUROC = 0.948


def parse() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--kl-warmup", type=int, default=1000, help="KL warm-up steps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p.parse_args()


def train_one_class(digit: int, args: argparse.Namespace, tmp: str) -> str:
    """Train the shortened ``mnist`` config on ``digit`` alone; the registered model's URI."""
    return train_registered(
        "mnist",
        [
            f"data.source={MNIST}",
            f"data.include_labels=[{digit}]",
            f"train.epochs={args.epochs}",
            "train.early_stopping_patience=8",
            "train.nll_samples=0",
            "train.log_images=false",
            f"objective.kl_warmup_steps={args.kl_warmup}",
            "optim.warmup_steps=100",
            f"tracking.storage_path={tmp}/ray_results",
            "tracking.experiment=bench-anomaly",
            f"tracking.model_name=vae-mnist-one-class-{digit}",
            *args.overrides,
        ],
    )


def score_one_class(model_uri: str, digit: int) -> tuple[float, float]:
    """(AUROC, AUPRC) of the negative ELBO, digit vs the other nine, on the whole test split."""
    from pipeline.inference.evaluate import evaluate_model

    result = evaluate_model(model_uri, str(MNIST), normal_labels=(digit,), iw_samples=1)
    name = f"normal_{digit}"
    return result.metrics[f"auroc_{name}"], result.metrics[f"auprc_{name}"]


def main() -> dict:
    args = parse()
    digits = [int(d) for d in args.digits.split(",")]
    tmp = private_mlflow_store("vp_bench_anomaly_")
    aurocs: dict[str, float] = {}
    auprcs: dict[str, float] = {}
    start = time.perf_counter()
    for digit in digits:
        t0 = time.perf_counter()
        auroc, auprc = score_one_class(train_one_class(digit, args, tmp), digit)
        aurocs[str(digit)], auprcs[str(digit)] = auroc, auprc
        print(
            f"digit {digit}: AUROC {auroc:.4f} AUPRC {auprc:.4f} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    wall = time.perf_counter() - start
    mean = sum(aurocs.values()) / len(aurocs)
    return {
        "per_class_auroc": aurocs,
        "mean_auroc": mean,
        "per_class_auprc": auprcs,
        "wall_s": wall,
        "goal_mean_auroc": 0.95,
        "goal_wall_s": 1800,
        "anchor_deep_svdd_mean_auroc": DEEP_SVDD_MEAN_AUROC,
        "epochs": args.epochs,
        "kl_warmup_steps": args.kl_warmup,
        "mlflow_tracking_uri": os.environ["MLFLOW_TRACKING_URI"],
    }


if __name__ == "__main__":
    run(main)
