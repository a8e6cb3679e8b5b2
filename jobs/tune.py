"""``vaepipe tune``: a hyperparameter sweep of training jobs on Ray Tune, tracked in MLflow.

Progress goes to stderr; with ``--json`` the last stdout line is one JSON object (the sweep's
run, every trial, the best one and its registered version). Rerunning with the same ``--name``
resumes an interrupted sweep without re-running its finished trials.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from jobs.config_flags import add_config_flags

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, "override one base config key, e.g. --set train.epochs=9 (repeatable)")
    parser.add_argument(
        "--space",
        required=True,
        help="search space YAML: a file, or a shipped name (digits, mnist)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        help="samples of the space (default 8; 1 when it has a grid, which runs whole)",
    )
    parser.add_argument("--scheduler", choices=("asha", "fifo"), default="asha")
    parser.add_argument("--time-budget", help="stop the sweep after this long, e.g. 30m, 2h, 90s")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: fit)")
    parser.add_argument("--name", help="sweep name; rerunning a name resumes the sweep")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")


def parse_duration(text: str | None) -> float | None:
    """``30m`` → 1800.0 seconds; None stays None."""
    if text is None:
        return None
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"--time-budget must look like 90s, 30m or 2h, got {text!r}")
    return float(match.group(1)) * UNIT_S[match.group(2)]


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from pipeline.config.job import load_job_config
    from pipeline.tune.space import load_space
    from pipeline.tune.sweep import SweepSettings, run_sweep

    cfg = load_job_config(args.config, args.overrides)
    space = load_space(args.space, args.config, args.overrides)
    settings = SweepSettings(
        name=args.name or f"{cfg.tracking.model_name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        trials=args.trials or (1 if space.has_grid() else 8),
        scheduler=args.scheduler,
        time_budget_s=parse_duration(args.time_budget),
        max_concurrent=args.max_concurrent,
    )
    result = run_sweep(cfg, space, settings, progress=progress)
    best = result.best
    if best is None:
        summary = f"sweep {result.name}: no trial produced a validation loss"
    else:
        summary = (
            f"sweep {result.name}: best trial {best.trial_id} ({best.best_val:.3f} nats) "
            f"{json.dumps(best.params)}; registered {result.model_name} version "
            f"{result.version} ({', '.join(result.aliases) or 'no aliases'})"
        )
    print(summary, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    return 0 if best is not None else 1
