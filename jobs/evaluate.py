"""``vaepipe evaluate``: IS-NLL, ELBO terms, active units, anomaly and disentanglement figures."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from jobs.data_flags import add_data_flags, data_overrides
from jobs.progress import ProgressLine
from pipeline.inference.evaluate import DEFAULT_IW_SAMPLES, evaluate_model
from pipeline.tracking import mlflow_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="models:/NAME@ALIAS, /VERSION, m-ID, runs:/…"
    )
    add_data_flags(parser, data_required=True, data_help="dataset: path, pyarrow URI or builtin")
    parser.add_argument("--split", default="test", help="train, val or test (default: test)")
    parser.add_argument(
        "--iw-samples", type=int, default=DEFAULT_IW_SAMPLES, help="importance samples for IS-NLL"
    )
    parser.add_argument(
        "--anomaly-class", type=int, default=None, help="AUROC of the score, this class vs rest"
    )
    parser.add_argument(
        "--normal-labels",
        type=_labels,
        default=None,
        help="comma-separated normal labels: AUROC/AUPRC of the score, normal vs the rest "
        "(default: the labels a filtered model was trained on)",
    )
    parser.add_argument(
        "--disentanglement",
        action="store_true",
        help="MIG, FactorVAE score, DCI and SAP against the data's factor columns",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--no-log", action="store_true", help="do not log to the model's run")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")


def _labels(text: str) -> tuple[int, ...]:
    try:
        labels = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 3 or 1,7, got {text!r}") from None
    if not labels:
        raise argparse.ArgumentTypeError("expected at least one label")
    return labels


def run(args: argparse.Namespace) -> int:
    mlflow_store.configure()
    with ProgressLine("evaluate") as progress:
        result = evaluate_model(
            args.model,
            args.data,
            data_overrides=data_overrides(args),
            split=args.split,
            iw_samples=args.iw_samples,
            anomaly_class=args.anomaly_class,
            normal_labels=args.normal_labels,
            disentanglement=args.disentanglement,
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
