"""Benchmark: what a 30 s MLflow outage mid-training costs the job, measured in pairs.

The same ``vaepipe train`` (the ``digits`` config, one worker) runs against a real ``mlflow
server`` twice per pair, in ABBA order: once undisturbed, once with the server stopped for
``--outage-s`` seconds after the first epoch is in MLflow and restarted on the same port. Rank 0
queues its writes while the server is away (``pipeline.tracking.outbox``), so training need not
wait. The cost is the extra wall time of the disturbed run, per pair: ``wall(outage) -
wall(undisturbed)``, against the time the server was really away (the pause plus its restart).
Goal (issue #12, item 11): extra wall <= the outage + 10 s.

    python bench/outage.py [--pairs 2] [--epochs 30] [--outage-s 30]

The last line is one JSON object: ``extra_wall_s`` and ``extra_beyond_outage_s`` (medians over
pairs), every pair's figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import abba, median, parser, run

from pipeline.cluster import stack_processes as procs

GOAL_SLACK_S = 10.0  # beyond the outage itself


def parse():
    p = parser(__doc__)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--outage-s", type=float, default=30.0)
    return p.parse_args()


class Server:
    """``mlflow server`` on a fixed loopback port over one SQLite store; stoppable, restartable."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, procs.free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.pid = 0

    def start(self) -> None:
        cmd = [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
            "--artifacts-destination", str(self.root / "mlartifacts"), "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        env = os.environ | {procs.MARKER_VAR: f"bench-outage-{self.port}"}
        self.pid = procs.spawn(cmd, env, self.root / "mlflow.log")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server not healthy; see {self.root / 'mlflow.log'}")

    def stop(self) -> None:
        procs.terminate([self.pid], f"bench-outage-{self.port}")
        procs.reap_child(self.pid)


def _first_epoch_logged(uri: str, run_name: str) -> bool:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bench-outage")
    if exp is None:
        return False
    found = client.search_runs([exp.experiment_id], f"attributes.run_name = '{run_name}'")
    return bool(found) and found[0].data.metrics.get("epoch", 0) >= 1


def train_once(
    server: Server, tmp: Path, name: str, epochs: int, outage_s: float
) -> tuple[float, float]:
    """(wall seconds of one training, seconds the server was away): with ``outage_s`` > 0 the
    server stops, stays away ``outage_s``, then restarts (its start-up counts as outage)."""
    cmd = [
        sys.executable, "-m", "jobs.cli", "train", "--data", "digits", "--config", "digits",
        "--epochs", str(epochs), "--workers", "1", "--experiment", "bench-outage",
        "--model-name", "outage-bench", "--run-name", name,
        "--set", "train.early_stopping_patience=null", "--set", "train.nll_samples=10",
        "--set", f"tracking.storage_path={tmp / 'ray_results'}",
    ]  # fmt: skip
    env = os.environ | {"MLFLOW_TRACKING_URI": server.uri}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
    away = 0.0
    if outage_s > 0:
        while not _first_epoch_logged(server.uri, name):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} ended before its first epoch (exit {proc.returncode})")
            time.sleep(0.2)
        gone = time.perf_counter()
        server.stop()
        time.sleep(outage_s)  # the fault itself
        server.start()
        away = time.perf_counter() - gone
    if proc.wait() != 0:
        raise RuntimeError(f"training {name} failed (exit {proc.returncode})")
    return time.perf_counter() - start, away


def main() -> dict:
    args = parse()
    tmp = Path(tempfile.mkdtemp(prefix="vp_bench_outage_"))
    server = Server(tmp)
    server.start()
    walls: dict[str, list[float]] = {"undisturbed": [], "outage": []}
    away: list[float] = []
    try:
        for pair in range(args.pairs):
            for kind in abba(["undisturbed", "outage"], pair):
                outage = args.outage_s if kind == "outage" else 0.0
                wall, gone = train_once(server, tmp, f"{kind}-{pair}", args.epochs, outage)
                walls[kind].append(wall)
                away += [gone] if gone else []
                print(f"pair {pair}: {kind} {wall:.1f} s", flush=True)
    finally:
        server.stop()
    extra = [o - u for o, u in zip(walls["outage"], walls["undisturbed"], strict=True)]
    beyond = [e - a for e, a in zip(extra, away, strict=True)]
    return {
        "extra_wall_s": median(extra),
        "extra_beyond_outage_s": median(beyond),
        "extra_beyond_outage_s_pairs": beyond,
        "server_away_s": away,
        "walls_s": walls,
        "outage_s": args.outage_s,
        "epochs": args.epochs,
        "goal_extra_beyond_outage_s": GOAL_SLACK_S,
    }


if __name__ == "__main__":
    run(main)
