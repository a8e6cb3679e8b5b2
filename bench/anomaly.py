"""Benchmark: one-class anomaly detection on MNIST — per-digit and mean AUROC, and the wall time.

The standard protocol (Ruff et al., ICML 2018): for each digit c, train on the training rows of
c alone (``data.include_labels=[c]``), then score the whole MNIST test split with the model's
negative ELBO (``vaepipe evaluate --normal-labels c``: the filter shapes training only) and take
the AUROC of "not c" against "c". Anchor: Deep SVDD's mean over the ten digits, 0.948. Goal:
mean AUROC >= 0.95 with all ten runs in <= 30 minutes on this 2-core machine.

Two scores from the same model and pass: the negative ELBO, and the same in bits minus the
input's complexity (``pipeline.inference.complexity``, Serrà et al. 2020: a generic code length
fitted to nothing, so no weight is tuned on the test split).

Each run is the real pipeline: Ray Data → Ray Train → MLflow run and registered model, then
``evaluate_model`` on Ray actors (one Ray instance for all ten). About 6,000 training rows a
digit, so the ``mnist`` config's schedule is shortened (``--epochs``, a KL warm-up of
``--kl-warmup`` steps instead of 10,000) and the final IS-NLL is skipped (the score is the ELBO).

    python bench/anomaly.py [--digits 0,1,...,9] [--epochs 40] [--kl-warmup 1000]

The last line is one JSON object: ``per_class_auroc``, ``mean_auroc``, ``per_class_auprc`` (the
negative ELBO), the same three with ``_corrected`` (the complexity-corrected score), ``wall_s``
and the settings.
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


def score_one_class(model_uri: str, digit: int) -> dict[str, float]:
    """AUROC and AUPRC of the negative ELBO and of the complexity-corrected score, digit vs the
    other nine, on the whole test split."""
    from pipeline.inference.evaluate import evaluate_model

    result = evaluate_model(model_uri, str(MNIST), normal_labels=(digit,), iw_samples=1)
    name = f"normal_{digit}"
    return {
        figure + suffix: result.metrics[f"{figure}_{name}{suffix}"]
        for figure in ("auroc", "auprc")
        for suffix in ("", "_corrected")
    }


def main() -> dict:
    args = parse()
    digits = [int(d) for d in args.digits.split(",")]
    tmp = private_mlflow_store("vp_bench_anomaly_")
    per_class: dict[str, dict[str, float]] = {}  # figure → digit → value
    start = time.perf_counter()
    for digit in digits:
        t0 = time.perf_counter()
        figures = score_one_class(train_one_class(digit, args, tmp), digit)
        for figure, value in figures.items():
            per_class.setdefault(figure, {})[str(digit)] = value
        print(
            f"digit {digit}: AUROC {figures['auroc']:.4f} (corrected "
            f"{figures['auroc_corrected']:.4f}) AUPRC {figures['auprc']:.4f} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    wall = time.perf_counter() - start
    out: dict = {}
    for suffix in ("", "_corrected"):
        aurocs = per_class["auroc" + suffix]
        out["per_class_auroc" + suffix] = aurocs
        out["mean_auroc" + suffix] = sum(aurocs.values()) / len(aurocs)
        out["per_class_auprc" + suffix] = per_class["auprc" + suffix]
    return {
        **out,
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
