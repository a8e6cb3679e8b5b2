"""``vaepipe prepare SRC --out DIR``: convert any source to sharded Parquet, atomically."""

from __future__ import annotations

import argparse
import logging

from jobs.progress import ProgressLine

log = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 64x64, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", help="Parquet/IDX/image folder/.npy path or URI, or digits|shapes|mnist"
    )
    parser.add_argument("--out", required=True, help="output directory (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--column", help="data column of a Parquet source (default: detect)")
    parser.add_argument("--image-size", type=_size, help="HxW that images are resized to")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="at most this many rows per split")
    parser.add_argument("--shapes-rows", type=int, default=20_000, help="rows of `shapes`")
    parser.add_argument("--shapes-resolution", type=int, default=64, help="side of `shapes`")


def run(args: argparse.Namespace) -> int:
    from pipeline.config.data import DataConfig
    from pipeline.data.prepare import prepare

    cfg = DataConfig(
        source=args.src,
        column=args.column,
        image_size=args.image_size,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        limit=args.limit,
        shapes_rows=args.shapes_rows,
        shapes_resolution=args.shapes_resolution,
    )
    with ProgressLine("prepare") as progress:
        result = prepare(cfg, args.out, overwrite=args.overwrite, progress=progress)
    rows = ", ".join(f"{k} {v}" for k, v in result.rows.items())
    print(
        f"wrote {result.out} ({len(result.files)} files; {rows}); read it with --data {result.out}"
    )
    return 0
