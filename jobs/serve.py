"""``vaepipe serve --model models:/NAME@ALIAS``: online scoring over HTTP until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading

from pipeline.errors import UserError
from pipeline.serving import ingress
from pipeline.serving.app import ServeOptions, start, stop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS (followed) or /VERSION")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--replicas", default="1", help="a count, or 'auto' to autoscale")
    parser.add_argument("--min-replicas", type=int, default=1, help="with --replicas auto")
    parser.add_argument("--max-replicas", type=int, default=4, help="with --replicas auto")
    parser.add_argument("--max-batch", type=int, default=64, help="rows per forward pass")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="wait to fill a batch")
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument(
        "--gpus-per-replica", type=float, default=None, help="default: 1 if the cluster has GPUs"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    parser.add_argument(
        "--poll-s", type=float, default=5.0, help="how often replicas check the alias"
    )
    parser.add_argument(
        "--ingress",
        choices=ingress.CHOICES,
        default=ingress.AUTO,
        help="auto: one replica on a local Ray answers HTTP itself (fastest); "
        "proxy: always through Ray Serve's proxy",
    )


def options(args: argparse.Namespace) -> ServeOptions:
    if args.replicas == "auto":
        replicas = None
    elif args.replicas.isdigit():
        replicas = int(args.replicas)
    else:
        raise UserError(f"--replicas takes a count or 'auto', not {args.replicas!r}")
    return ServeOptions(
        model=args.model,
        host=args.host,
        port=args.port,
        replicas=replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        cpus=args.cpus_per_replica,
        gpus=args.gpus_per_replica,
        threads=args.threads,
        poll_s=args.poll_s,
        ingress=args.ingress,
    )


def run(args: argparse.Namespace) -> int:
    opts = options(args)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    url = start(opts)
    try:
        print(
            f'serving {opts.model} at {url} (POST JSON {{"inputs": [[row], ...]}}); Ctrl-C stops',
            flush=True,
        )
        done.wait()
    finally:
        stop()
    print("stopped", flush=True)
    return 0
