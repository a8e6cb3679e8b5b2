"""``vaepipe encode``: latent Parquet for a dataset with a registered model, exactly once."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from jobs.data_flags import add_data_flags, data_overrides
from jobs.progress import ProgressLine
from pipeline.inference.encode import DEFAULT_BATCH_SIZE, encode_dataset
from pipeline.tracking import mlflow_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION, m-ID or runs:/…"
    )
    add_data_flags(parser, data_required=True, data_help="dataset: path, pyarrow URI or builtin")
    parser.add_argument("--out", required=True, help="output directory (created; committed last)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--with-z", action="store_true", help="also write a posterior sample z")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a complete earlier vaepipe output"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads per actor")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")


def run(args: argparse.Namespace) -> int:
    mlflow_store.configure()
    with ProgressLine("encode") as progress:
        result = encode_dataset(
            args.model,
            args.data,
            args.out,
            data_overrides=data_overrides(args),
            batch_size=args.batch_size,
            with_z=args.with_z,
            overwrite=args.overwrite,
            threads=args.threads,
            progress=progress,
        )
    if args.json:
        print(json.dumps(asdict(result)))
    elif result.skipped:
        print(f"{result.out} is already complete ({result.rows} rows); --overwrite to redo")
    else:
        print(
            f"wrote {result.rows} rows in {len(result.files)} file(s) to {result.out} "
            f"in {result.seconds:.1f}s"
        )
    return 0
