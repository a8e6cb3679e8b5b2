"""``vaepipe sample``: a PNG grid of prior samples, or of inputs and their reconstructions."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from jobs.data_flags import add_data_flags, data_overrides
from pipeline.errors import UserError
from pipeline.inference.sample_grid import write_grid
from pipeline.tracking import mlflow_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="models:/NAME@ALIAS, /VERSION, m-ID, runs:/…"
    )
    parser.add_argument("--n", type=int, default=64, help="number of images (default: 64)")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--reconstruct", action="store_true", help="inputs from --data above their reconstructions"
    )
    add_data_flags(parser, data_required=False, data_help="dataset for --reconstruct")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.reconstruct and not args.data:
        raise UserError("--reconstruct needs --data SRC")
    mlflow_store.configure()
    result = write_grid(
        args.model,
        args.out,
        n=args.n,
        seed=args.seed,
        reconstruct_data=args.data if args.reconstruct else None,
        data_overrides=data_overrides(args),
    )
    print(json.dumps(asdict(result)) if args.json else f"wrote {result.kind} grid to {result.out}")
    return 0
