"""Benchmark: model quality — test IS-NLL (nats) of the ``mnist`` config, and the wall time.

Trains the shipped ``mnist`` config (dynamically binarized MNIST, real IDX files) through the full
pipeline (Ray Train, MLflow, registry) and reports the importance-sampled test NLL with k=5000.
Anchor: the IWAE paper's VAE (784-200-200-50, 3280 epochs) reaches 86.76 nats.

    python bench/quality.py [--epochs 200] [--k 5000] [--nll-examples N] [--set key=value ...]

Measured on 2 CPU cores: early stopping ended the 200 epochs at 185 after about 20 minutes;
test IS-NLL 86.39 nats (k=5000, all 10,000 test digits), 85.41 on the first 1,000 alone (the
first test digits are the cleaner ones, so a subset flatters). The k=5000 pass over the whole test
split costs about as much time again as the training; the JSON names the store and the model, so
``vaepipe evaluate --model URI --data DIR --iw-samples 5000`` can redo it later.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import time

from common import MNIST, parser, private_mlflow_store, run

ANCHOR_NATS = 86.76


def parse() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--k", type=int, default=5000, help="importance samples per test example")
    p.add_argument(
        "--nll-examples", type=int, default=None, help="test examples for the IS-NLL (all)"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p.parse_args()


def _print_epoch_end(event: dict) -> None:
    if event["event"] == "epoch":
        print(f"epoch {event['epoch']}", flush=True)


def main() -> dict:
    args = parse()
    from pipeline.config.job import load_job_config
    from pipeline.train.trainer import run_training

    tmp = private_mlflow_store("vp_bench_quality_")
    nll_examples = "null" if args.nll_examples is None else str(args.nll_examples)
    cfg = load_job_config(
        "mnist",
        [
            f"data.source={MNIST}",
            f"train.epochs={args.epochs}",
            f"train.nll_samples={args.k}",
            f"train.nll_examples={nll_examples}",
            f"tracking.storage_path={tmp}/ray_results",
            "tracking.experiment=bench-quality",
            *args.overrides,
        ],
    )
    start = time.perf_counter()
    result = run_training(cfg, progress=_print_epoch_end)
    wall = time.perf_counter() - start
    figures = {
        "test_is_nll_nats": result.metrics.get("test/is_nll"),
        "k": args.k,
        "nll_examples": args.nll_examples,
        "test_neg_elbo_nats": result.metrics.get("test/neg_elbo"),
        "epochs_completed": result.metrics["epochs_completed"],
        "wall_s": wall,
        "anchor_nats": ANCHOR_NATS,
        "mlflow_tracking_uri": os.environ["MLFLOW_TRACKING_URI"],
        "model_uri": f"models:/{result.model_name}/{result.version}",
    }
    return figures


if __name__ == "__main__":
    run(main)
