"""``vaepipe ui``: the MLflow UI on the configured tracking store, on 127.0.0.1 by default."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from pipeline.tracking import mlflow_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, local only)"
    )
    parser.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    parser.add_argument(
        "--print-command",
        action="store_true",
        help="print the mlflow command instead of running it",
    )


def ui_command(host: str, port: int) -> list[str] | None:
    """The ``mlflow ui`` command for a local store; None when the store is already a server."""
    uri = mlflow_store.tracking_uri()
    if not mlflow_store.is_local_store(uri):
        return None
    mlflow = str(Path(sys.executable).parent / "mlflow")
    return [
        mlflow, "ui", "--backend-store-uri", uri,
        "--default-artifact-root", mlflow_store.artifact_root(),
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    cmd = ui_command(args.host, args.port)
    if cmd is None:
        # A tracking server serves its own UI; starting a second one would show the same data.
        print(f"the tracking store is a server: open {mlflow_store.tracking_uri()} in a browser")
        return 0
    if args.print_command:
        print(" ".join(cmd))
        return 0
    print(f"vaepipe: MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)", file=sys.stderr)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
