"""``vaepipe evaluate``: IS-NLL, ELBO terms, active units and anomaly AUROC of a model."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from jobs.progress import ProgressLine
from pipeline.inference.evaluate import DEFAULT_IW_SAMPLES, evaluate_model
from pipeline.tracking import mlflow_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="models:/NAME@ALIAS, /VERSION, m-ID, runs:/…"
    )
    parser.add_argument("--data", required=True, help="dataset: path, pyarrow URI or builtin")
    parser.add_argument("--split", default="test", help="train, val or test (default: test)")
    parser.add_argument(
        "--iw-samples", type=int, default=DEFAULT_IW_SAMPLES, help="importance samples for IS-NLL"
    )
    parser.add_argument(
        "--anomaly-class", type=int, default=None, help="AUROC of the score, this class vs rest"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--no-log", action="store_true", help="do not log to the model's run")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")


def run(args: argparse.Namespace) -> int:
    mlflow_store.configure()
    with ProgressLine("evaluate") as progress:
        result = evaluate_model(
            args.model,
            args.data,
            split=args.split,
            iw_samples=args.iw_samples,
            anomaly_class=args.anomaly_class,
            batch_size=args.batch_size,
            limit=args.limit,
            log_to_mlflow=not args.no_log,
            progress=progress,
        )
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    print(f"{args.model} on {result.source} [{result.split}], {result.rows} rows:")
    for name, value in sorted(result.metrics.items()):
        print(f"  {name:<22} {value:.4f}")
    return 0
