"""``vaepipe train``: train a VAE with Ray Train, track it in MLflow, register the model.

Progress goes to stderr; with ``--json`` the last stdout line is one JSON object (run id, model
name, version, aliases, final metrics).
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.config_flags import add_config_flags
from jobs.data_flags import add_data_flags, data_overrides

# Shortcut flag -> the config key it sets.
SHORTCUTS = {
    "data": "data.source",
    "epochs": "train.epochs",
    "workers": "scaling.workers",
    "batch_size": "train.batch_size",
    "latent_dim": "model.latent_dim",
    "model_name": "tracking.model_name",
    "experiment": "tracking.experiment",
    "run_name": "tracking.run_name",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_flags(
        parser, data_required=False, data_help="data source: a path, a URI, or digits|shapes|mnist"
    )
    add_config_flags(
        parser, "override one config key, e.g. --set optim.lr=3e-4 (repeatable; YAML values)"
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--workers", type=int, help="training workers (0: choose automatically)")
    parser.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker")
    parser.add_argument("--batch-size", type=int, help="examples per step per worker")
    parser.add_argument("--latent-dim", type=int)
    parser.add_argument("--model-name", help="registered model name")
    parser.add_argument("--experiment", help="MLflow experiment")
    parser.add_argument("--run-name", help="name of the run; rerunning a name resumes it")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as YAML (a valid --config file) and exit; no training",
    )


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """Shortcut flags as ``key=value`` overrides, applied before the explicit ``--set``s."""
    out = [
        f"{key}={json.dumps(getattr(args, flag))}"
        for flag, key in SHORTCUTS.items()
        if getattr(args, flag) is not None
    ]
    out += [f"data.{key}={json.dumps(value)}" for key, value in data_overrides(args).items()]
    if args.use_gpu:
        out.append("scaling.use_gpu=true")
    return out + list(args.overrides)


def print_progress(event: dict) -> None:
    """One stderr line per progress event (``pipeline.train.progress``): rows within an epoch,
    the losses at its end."""
    epoch, done, total = event["epoch"], event.get("rows_done", 0), event.get("rows_total")
    rows = f"{done:,}/{total:,} rows" if total else f"{done:,} rows"
    if event.get("event") == "batch":
        line = f"epoch {epoch}: {rows}"
    else:
        line = (
            f"epoch {epoch}: {rows}  "
            f"train loss {event.get('train/loss', float('nan')):.3f}  "
            f"val loss {event.get('val/neg_elbo', float('nan')):.3f}  "
            f"{event.get('samples_per_s', 0.0):,.0f} samples/s"
        )
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from pipeline.config.job import load_job_config, resolve_config_path

    cfg = load_job_config(args.config, overrides_from_args(args))
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from pipeline.train.trainer import run_training  # Ray and MLflow: only once the config is good

    config_file = str(resolve_config_path(args.config)) if args.config else None
    result = run_training(cfg, progress=print_progress, config_file=config_file)
    summary = (
        f"run {result.run_id}: registered {result.model_name} version {result.version} "
        f"({', '.join(result.aliases) or 'no aliases'})"
    )
    print(summary, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    return 0
