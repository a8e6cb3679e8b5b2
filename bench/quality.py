"""Benchmark: model quality — test IS-NLL (nats) of a shipped config, and the wall time.

Trains a shipped config (``--config``: ``mnist`` by default, ``mnist-best`` the quality recipe;
dynamically binarized MNIST, real IDX files) through the full pipeline (Ray Train, MLflow,
registry) and reports the importance-sampled test NLL with k=5000.
Anchor: the IWAE paper's VAE (784-200-200-50, 3280 epochs) reaches 86.76 nats.

    python bench/quality.py [--config mnist] [--epochs N] [--k 5000] [--nll-examples N]
                            [--set key=value ...]

Measured on 2 CPU cores: early stopping ended the 200 epochs at 185 after about 20 minutes;
test IS-NLL 86.39 nats (k=5000, all 10,000 test digits), 85.41 on the first 1,000 alone (the
first test digits are the cleaner ones, so a subset flatters). ``mnist-best`` (net [1024, 512],
data-mean output bias, IWAE k=5 with DReG, 150 epochs, no early stopping): 84.81 and 84.66 nats
on all 10,000 test digits (seeds 0 and 1; ``--set train.seed=1``) after 3,134 s and 2,104 s of
training (the IWAE paper's k=50 IWAE: 84.78). The k=5000 pass over the whole test split costs
a quarter to as much again as the training; the JSON names the store and the model, so
``vaepipe evaluate --model URI --data DIR --iw-samples 5000`` can redo it later.

The last line is one JSON object: ``test_is_nll`` (nats), ``train_wall_s`` (start to the last
epoch's end: the training without the final test pass), ``wall_s`` (all of it), ``epoch_s_median``
(the median epoch, first excluded), ``config``, the store and the model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import MNIST, parser, private_mlflow_store, run

ANCHOR_NATS = 86.76


def parse() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--config", default="mnist", help="shipped config name or YAML path (mnist)")
    p.add_argument("--epochs", type=int, default=None, help="train.epochs (the config's)")
    p.add_argument("--k", type=int, default=5000, help="importance samples per test example")
    p.add_argument(
        "--nll-examples", type=int, default=None, help="test examples for the IS-NLL (all)"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p.parse_args()


class EpochClock:
    """Progress callback: prints each epoch's end and keeps the times they arrived at."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def __call__(self, event: dict) -> None:
        if event["event"] == "epoch":
            self.ends.append(time.perf_counter())
            print(f"epoch {event['epoch']}", flush=True)

    def median_epoch_s(self) -> float | None:
        gaps = [b - a for a, b in zip(self.ends[:-1], self.ends[1:], strict=True)]
        return statistics.median(gaps) if gaps else None


def main() -> dict:
    args = parse()
    from pipeline.config.job import load_job_config
    from pipeline.train.trainer import run_training

    tmp = private_mlflow_store("vp_bench_quality_")
    nll_examples = "null" if args.nll_examples is None else str(args.nll_examples)
    epochs = [] if args.epochs is None else [f"train.epochs={args.epochs}"]
    cfg = load_job_config(
        args.config,
        [
            f"data.source={MNIST}",
            *epochs,
            f"train.nll_samples={args.k}",
            f"train.nll_examples={nll_examples}",
            f"tracking.storage_path={tmp}/ray_results",
            "tracking.experiment=bench-quality",
            *args.overrides,
        ],
    )
    clock = EpochClock()
    start = time.perf_counter()
    result = run_training(cfg, progress=clock)
    wall = time.perf_counter() - start
    figures = {
        "config": args.config,
        "test_is_nll": result.metrics.get("test/is_nll"),
        "k": args.k,
        "nll_examples": args.nll_examples,
        "test_neg_elbo_nats": result.metrics.get("test/neg_elbo"),
        "epochs_completed": result.metrics["epochs_completed"],
        "train_wall_s": (clock.ends[-1] - start) if clock.ends else None,
        "wall_s": wall,
        "epoch_s_median": clock.median_epoch_s(),
        "anchor_nats": ANCHOR_NATS,
        "mlflow_tracking_uri": os.environ["MLFLOW_TRACKING_URI"],
        "model_uri": f"models:/{result.model_name}/{result.version}",
    }
    return figures


if __name__ == "__main__":
    run(main)
