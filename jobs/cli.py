"""The ``vaepipe`` command: one subcommand per module in ``jobs/``.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported lazily so ``vaepipe --help`` does not pay for importing Ray, MLflow or torch.

Exit codes: 0 done; 2 bad input (a ``UserError`` or a ``ConfigError``: one line
``vaepipe: error: ...``, the whole of stderr); 1 a job that failed for a reason outside its input
(``JobFailed``: workers that kept dying or hanging past ``train.max_failures``; one line naming
the ranks and causes) or anything else (a bug or a library failure: the full traceback, then a
one-line summary, on stderr — not a file, so that ``vaepipe submit`` jobs and CI logs carry it
too); 130 Ctrl-C. Library logs (Ray, MLflow) stay quiet unless ``-v``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import traceback

DESCRIPTION = "Train VAEs with Ray and MLflow; encode datasets to latent Parquet."

# subcommand -> (module in jobs/, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("jobs.demo", "train on built-in digits, register, encode and evaluate, all locally"),
    "prepare": ("jobs.prepare", "convert any source to sharded Parquet in vaepipe's layout"),
    "train": ("jobs.train", "train a VAE with Ray Train, tracked in MLflow, model registered"),
    "tune": ("jobs.tune", "sweep hyperparameters with Ray Tune; best trial registered"),
    "encode": ("jobs.encode", "write latent Parquet for a dataset with a registered model"),
    "evaluate": ("jobs.evaluate", "IS-NLL, ELBO terms, active units and anomaly AUROC of a model"),
    "sample": ("jobs.sample", "image grid of prior samples or reconstructions"),
    "serve": ("jobs.serve", "online scoring over HTTP with Ray Serve (follows a model alias)"),
    "submit": ("jobs.submit", "run a vaepipe command as a Ray job on a cluster"),
    "jobs": ("jobs.jobs_cmd", "list, follow or stop Ray jobs"),
    "ui": ("jobs.ui", "start the MLflow UI on the configured tracking store"),
}
# The commands whose Ray Data actor pools make Ray's C++ core print its notice: it is dropped
# from their stderr unless -v (pipeline.cluster.native_stderr).
NATIVE_NOTICES_DROPPED = {"encode", "evaluate"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaepipe", description=DESCRIPTION)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, library (Ray, MLflow) logs"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        # The command's own parser (built after its module is imported) handles -h.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def program() -> None:
    """The ``vaepipe`` executable (and ``python -m jobs``): ``main`` as a whole process."""
    sys.exit(main(drop_native_notices=True))


def main(argv: list[str] | None = None, *, drop_native_notices: bool = False) -> int:
    """Run one command; its exit code. ``drop_native_notices`` only where this process is the
    command (it re-points fd 2 and ``sys.stderr``), not for a call from within another program."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Parse only the command name first, then let the command's module add its own arguments.
    known, _ = parser.parse_known_args(argv)
    if drop_native_notices and known.command in NATIVE_NOTICES_DROPPED and not known.verbose:
        from pipeline.cluster.native_stderr import drop_ray_notices

        drop_ray_notices()  # before logging's handlers take hold of sys.stderr
    configure_logging(known.verbose)  # before the command's module imports Ray or MLflow
    module = importlib.import_module(COMMANDS[known.command][0])
    sub_parser = argparse.ArgumentParser(
        prog=f"vaepipe {known.command}", description=COMMANDS[known.command][1]
    )
    module.add_arguments(sub_parser)
    rest = argv[argv.index(known.command) + 1 :]
    args = sub_parser.parse_args(rest)
    signal.signal(signal.SIGTERM, _raise_terminated)
    return run_command(module, args)


OWN_LOGGERS = ("jobs", "pipeline", "vae_core")


def configure_logging(verbose: bool) -> None:
    """vaepipe's own logs at INFO (DEBUG with -v); libraries' at WARNING (INFO with -v).

    Runs before Ray or MLflow is imported: MLflow reads ``MLFLOW_LOGGING_LEVEL`` on import, and
    ``pipeline.cluster.ray_session`` reads ``VAEPIPE_VERBOSE`` for Ray's driver log level and
    whether worker logs reach this terminal.
    """
    library_level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=library_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    # Library warnings (deprecations and the like) become log records, shown with -v.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose else logging.ERROR)
    os.environ["VAEPIPE_VERBOSE"] = "1" if verbose else "0"
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(library_level))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``ray job stop``, Kubernetes, ``kill``): stop like Ctrl-C, so runs end KILLED."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def run_command(module, args: argparse.Namespace) -> int:
    """Run one subcommand and map how it ends to an exit code (see the module docstring)."""
    from pipeline.errors import JobFailed, UserError
    from vae_core.typed_config import ConfigError

    try:
        return int(module.run(args) or 0)
    except (UserError, ConfigError) as exc:
        print(f"vaepipe: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except JobFailed as exc:
        print(f"vaepipe: error: {exc}", file=sys.stderr)
        return 1
    except Terminated:
        print("vaepipe: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("vaepipe: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - reported in full, never as bad input
        print_internal_error(exc)
        return 1


def one_line(exc: BaseException) -> str:
    """A bad-input error's message. Ray's ``RayTaskError(UserError)`` (a task's ``UserError``
    that no ``user_errors()`` unwrapped) is a ``UserError`` too, but prints the task's whole
    traceback: the original message is taken from it."""
    from pipeline.data.ray_errors import find_user_error

    text = str(exc)
    if "\n" in text:
        text = find_user_error(exc) or text.splitlines()[0]
    return text


def print_internal_error(exc: BaseException) -> None:
    """The full traceback, then one summary line: this is a bug, not a problem with the input."""
    traceback.print_exception(exc, file=sys.stderr)
    first_line = (str(exc).strip().splitlines() or [""])[0]
    print(
        f"vaepipe: internal error: {type(exc).__name__}: {first_line}\n"
        "  (not a problem with your input: a bug in vaepipe or a failure in a library; the "
        "traceback is above; -v shows library logs)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    program()
