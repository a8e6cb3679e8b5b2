"""``vaepipe demo`` (what ``make demo`` runs): the whole pipeline locally on built-in digits."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from jobs.train import print_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="outputs", help="where outputs go (default: ./outputs)")
    parser.add_argument("--epochs", type=int, default=None, help="override the digits config")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")


def run(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    result = run_demo(args.out, epochs=args.epochs, progress=print_progress)
    m = result.metrics
    print(
        f"\ndone in {result.seconds:.0f}s\n"
        f"  model        {result.model_uri} (aliases: {', '.join(result.aliases) or 'none'})\n"
        f"  MLflow run   {result.run_id} in {result.tracking_uri}\n"
        f"  latents      {result.latent_dir} ({result.rows} rows, _SUCCESS manifest)\n"
        f"  images       {', '.join(result.images)}\n"
        f"  test IS-NLL  {m['is_nll']:.2f} nats, ELBO {m['elbo']:.2f}, "
        f"active units {m['active_units']:.0f}\n"
        "  next         vaepipe ui   # MLflow UI on http://127.0.0.1:5000\n"
        f"               vaepipe encode --model {result.model_uri} --data digits --out DIR"
    )
    if args.json:
        print(json.dumps(asdict(result)))
    return 0
