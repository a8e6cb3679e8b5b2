"""The ``vaepipe`` command: one subcommand per module in ``jobs/``.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported lazily so ``vaepipe --help`` does not pay for importing Ray, MLflow or torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

DESCRIPTION = "Train VAEs with Ray and MLflow; encode datasets to latent Parquet."

# subcommand -> (module in jobs/, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("jobs.demo", "train on built-in digits, register, encode and evaluate, all locally"),
    "prepare": ("jobs.prepare", "convert any source to sharded Parquet in vaepipe's layout"),
    "train": ("jobs.train", "train a VAE with Ray Train, tracked in MLflow, model registered"),
    "encode": ("jobs.encode", "write latent Parquet for a dataset with a registered model"),
    "evaluate": ("jobs.evaluate", "IS-NLL, ELBO terms, active units and anomaly AUROC of a model"),
    "sample": ("jobs.sample", "image grid of prior samples or reconstructions"),
    "submit": ("jobs.submit", "run a vaepipe command as a Ray job on a cluster"),
    "jobs": ("jobs.jobs_cmd", "list, follow or stop Ray jobs"),
    "ui": ("jobs.ui", "start the MLflow UI on the configured tracking store"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaepipe", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        # The command's own parser (built after its module is imported) handles -h.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Parse only the command name first, then let the command's module add its own arguments.
    known, _ = parser.parse_known_args(argv)
    module = importlib.import_module(COMMANDS[known.command][0])
    sub_parser = argparse.ArgumentParser(
        prog=f"vaepipe {known.command}", description=COMMANDS[known.command][1]
    )
    module.add_arguments(sub_parser)
    rest = argv[argv.index(known.command) + 1 :]
    args = sub_parser.parse_args(rest)
    logging.basicConfig(
        level=logging.DEBUG if known.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGTERM, _raise_terminated)
    return run_command(module, args)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``ray job stop``, Kubernetes, ``kill``): stop like Ctrl-C, so runs end KILLED."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def run_command(module, args: argparse.Namespace) -> int:
    """Run one subcommand; user errors become one line on stderr and exit code 2."""
    from pipeline.errors import UserError

    try:
        return int(module.run(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"vaepipe: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("vaepipe: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("vaepipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
