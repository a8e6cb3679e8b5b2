"""Online-scoring benchmark: ``vaepipe serve`` vs ``mlflow models serve`` vs a plain ASGI app.

Three servers of one registered MNIST model, each started alone on loopback:
  (a) ``vaepipe serve`` (Ray Serve, 1 replica answering HTTP itself, ``--max-batch 64
      --batch-wait-ms 5``; ``--vaepipe-args "--ingress proxy"`` measures Serve's proxy path),
  (b) ``mlflow models serve --env-manager local`` (its uvicorn app, 1 worker),
  (c) ``bench/serve_plain.py``: uvicorn + Starlette holding the torch model, with the same
      micro-batching by hand and the same parse/score/answer functions as (a).
A closed-loop load generator in its own process (aiohttp, keep-alive; each client sends one
MNIST test row, waits for the answer, sends the next) runs each concurrency level for at most
``--seconds`` and ``--max-requests``; requests/s, p50 and p99 latency per level. Then (a) again,
paced at half its peak throughput, for ``p99_ms_at_half_peak``. Every server gets 1 torch
thread; the client shares the machine's cores with the server, as it would on one host. Per
level also the CPU each request cost: the client's, and the server's by process (every process
in the server's session: for (a) Ray's GCS, raylet, Serve's controller, proxy and replica), so
where the time goes is measured, not guessed.

The model: the mnist config's architecture (784-512-256-32 MLP, Bernoulli), trained for
``--train-steps`` Adam steps on real MNIST with plain vae_core (a quick model: throughput does
not depend on how well it is trained), registered with the validation rows' threshold.

    python bench/serve.py [--levels 1,4,16,32] [--seconds 6] [--model models:/NAME@ALIAS]
Last line: one JSON object (``ratio_vs_plain``: vaepipe/plain throughput at the concurrency
where plain peaks; ``p99_ms_at_half_peak``; per-level figures for every server).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NAME = "bench-serve"

from common import MNIST  # noqa: E402

# ----------------------------------------------------------------------------- load generator


async def _client(session, url, bodies, stop_at, max_requests, counter, lat, pace_s):
    import aiohttp

    i = counter[0]
    next_send = time.perf_counter()
    while time.perf_counter() < stop_at and counter[0] < max_requests:
        counter[0] += 1
        if pace_s:
            wait = next_send - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            next_send += pace_s
        t0 = time.perf_counter()
        async with session.post(
            url, data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
        ) as resp:
            await resp.read()
            if resp.status != 200:
                raise aiohttp.ClientError(f"status {resp.status}")
        lat.append(time.perf_counter() - t0)
        i += 1


async def _load(url: str, concurrency: int, seconds: float, max_requests: int, rate: float):
    import aiohttp

    bodies = [json.dumps({"inputs": [row.tolist()]}).encode() for row in mnist_rows(256)]
    lat: list[float] = []
    counter = [0]
    pace_s = concurrency / rate if rate else 0.0
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        for body in bodies[:20]:  # warm-up: connections, the server's first batches
            async with session.post(url, data=body) as resp:
                await resp.read()
        start, cpu0 = time.perf_counter(), time.process_time()
        stop_at = start + seconds
        await asyncio.gather(
            *[
                _client(session, url, bodies, stop_at, max_requests, counter, lat, pace_s)
                for _ in range(concurrency)
            ]
        )
        elapsed = time.perf_counter() - start
        cpu_s = time.process_time() - cpu0
    ms = np.array(lat) * 1000.0
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "client_cpu_ms_per_req": round(1000.0 * cpu_s / max(len(lat), 1), 3),
    }


def run_load(url: str, concurrency: int, seconds: float, max_requests: int, rate: float = 0.0):
    """The load generator in its own process; its last stdout line is the result."""
    cmd = [sys.executable, __file__, "--load", url, "--concurrency", str(concurrency)]
    cmd += ["--seconds", str(seconds), "--max-requests", str(max_requests), "--rate", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- server CPU


def _component(pid: str) -> str:
    """A process's part in a server: Ray's worker title (``ray::ProxyActor``), the script or
    module a Python process runs, or the program's name (``raylet``, ``gcs_server``)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    args = [a.decode(errors="replace") for a in argv if a]
    if not args:
        return "?"
    if args[0].startswith("ray::"):
        return (
            args[0].split()[0].split(":")[2]
            if args[0].startswith("ray::ServeReplica")
            else args[0].split()[0]
        )
    if "python" in Path(args[0]).name:
        for i, a in enumerate(args[1:], 1):
            if a == "-m" and i + 1 < len(args):
                return args[i + 1]
            if a.endswith(".py"):
                return Path(a).name
    return Path(args[0]).name


def session_cpu(sid: int) -> dict[int, tuple[str, float]]:
    """pid → (component, CPU seconds so far, user + system) of every live process in session
    ``sid``: the server and everything it started (Ray's GCS, raylet, proxy, replicas)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            if int(fields[3]) == sid:  # stat's 6th field: the session id
                out[int(pid)] = (_component(pid), (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, ValueError):
            continue  # gone meanwhile
    return out


def cpu_per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    """Server CPU ms per answered request, by component (those over 0.01 ms) and in all."""
    per: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        spent = cpu - before.get(pid, (name, 0.0))[1]
        per[name] = per.get(name, 0.0) + 1000.0 * spent / max(requests, 1)
    parts = {k: round(v, 3) for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.01}
    return {"total": round(sum(per.values()), 3), **parts}


# ----------------------------------------------------------------------------- data and model


def mnist_rows(n: int, prefix: str = "t10k", skip: int = 0) -> np.ndarray:
    """(n, 784) uint8 rows of real MNIST, as stored."""
    with gzip.open(MNIST / f"{prefix}-images-idx3-ubyte.gz", "rb") as f:
        f.read(16 + skip * 784)
        return np.frombuffer(f.read(n * 784), np.uint8).reshape(n, 784)


def train_and_register(steps: int) -> str:
    """The mnist config's model, ``steps`` Adam steps on 10k real rows, registered."""
    import mlflow
    import torch

    from pipeline.config.job import load_job_config
    from pipeline.data.batches import Preprocessor
    from pipeline.data.schema import XLayout
    from pipeline.tracking import mlflow_store, registry
    from vae_core.model import VAE
    from vae_core.training import build_optimizer, train_step

    cfg = load_job_config("mnist", [])
    model_cfg = cfg.model.__class__(**{**cfg.model.to_dict(), "input_shape": (1, 28, 28)})
    torch.manual_seed(0)
    vae = VAE(model_cfg)
    opt = build_optimizer(vae, cfg.optim)
    pre = Preprocessor(XLayout((1, 28, 28), "uint8"), binarize="dynamic")
    train = torch.from_numpy(mnist_rows(10_000, "train").reshape(-1, 1, 28, 28).copy())
    for step in range(steps):
        idx = torch.randint(0, len(train), (128,))
        train_step(vae, pre(train[idx]), opt, cfg.objective, step)
    vae.eval()
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("bench-serve")):
        val = mnist_rows(3000, "train", skip=57_000)
        registry.log_vae(vae, pre.to_dict(), NAME, 0.0, "mnist", val_rows=val)
    return f"models:/{NAME}@champion"


# ----------------------------------------------------------------------------- servers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server at {url} not ready in {timeout}s")


def server_command(kind: str, uri: str, port: int, args) -> tuple[list[str], str, str]:
    """(command, readiness URL, scoring URL) of one server."""
    base = f"http://127.0.0.1:{port}"
    py = sys.executable
    batching = ["--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]
    if kind == "vaepipe":
        cmd = [py, "-m", "jobs", "serve", "--model", uri, "--port", str(port), *batching]
        return cmd + args.vaepipe_args.split(), f"{base}/readyz", f"{base}/"
    if kind == "plain":
        cmd = [py, str(REPO / "bench" / "serve_plain.py"), "--model", uri, "--port", str(port)]
        return cmd + batching, f"{base}/healthz", f"{base}/"
    mlflow = str(Path(py).with_name("mlflow"))
    cmd = [mlflow, "models", "serve", "-m", uri, "--env-manager", "local", "-p", str(port)]
    return cmd + ["-h", "127.0.0.1"], f"{base}/ping", f"{base}/invocations"


def measure(kind: str, uri: str, args, env: dict, half_peak: bool) -> dict:
    import signal

    port = free_port()
    cmd, ready, url = server_command(kind, uri, port, args)
    log = open(Path(args.workdir) / f"{kind}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        wait_ready(proc, ready)
        levels = []
        for c in args.levels:
            before = session_cpu(proc.pid)
            row = run_load(url, c, args.seconds, args.max_requests)
            row["server_cpu_ms_per_req"] = cpu_per_request(before, session_cpu(proc.pid),
                                                           row["requests"])  # fmt: skip
            levels.append(row)
            rps, p50, p99 = (row[k] for k in ("rps", "p50_ms", "p99_ms"))
            print(f"{kind:8s} c={c:3d} {rps:8.1f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                  f"CPU ms/req: client {row['client_cpu_ms_per_req']}, "
                  f"server {row['server_cpu_ms_per_req']}", flush=True)  # fmt: skip
        out = {"levels": levels}
        if half_peak:
            peak = max(row["rps"] for row in levels)
            paced = run_load(url, max(args.levels), args.seconds, args.max_requests, peak / 2)
            print(f"{kind:8s} paced at {peak / 2:.0f} req/s: {paced['rps']} req/s, "
                  f"p99 {paced['p99_ms']} ms")  # fmt: skip
            out["half_peak"] = {"target_rps": round(peak / 2, 1), **paced}
        return out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def summary(results: dict) -> dict:
    plain = {r["concurrency"]: r["rps"] for r in results["plain"]["levels"]}
    ours = {r["concurrency"]: r["rps"] for r in results["vaepipe"]["levels"]}
    at = max(plain, key=plain.get)  # the concurrency where plain peaks
    return {
        "ratio_vs_plain": round(ours[at] / plain[at], 3),
        "ratio_vs_plain_at_concurrency": at,
        "ratio_vs_plain_per_level": {c: round(ours[c] / plain[c], 3) for c in plain},
        "p99_ms_at_half_peak": results["vaepipe"]["half_peak"]["p99_ms"],
        "vaepipe_peak_rps": max(ours.values()),
        **{kind: res for kind, res in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,4,16,32")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--model", default=None, help="a registered model instead of training")
    parser.add_argument("--servers", default="vaepipe,mlflow,plain")
    parser.add_argument(
        "--vaepipe-args", default="", help='more flags for vaepipe serve, e.g. "--ingress proxy"'
    )
    parser.add_argument("--load", default=None, help=argparse.SUPPRESS)  # load generator mode
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        res = asyncio.run(
            _load(args.load, args.concurrency, args.seconds, args.max_requests, args.rate)
        )
        print(json.dumps(res))
        return
    args.levels = [int(c) for c in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="vp_bench_serve_") as tmp:
        args.workdir = tmp
        env = dict(os.environ)
        if args.model is None:
            env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
            env.setdefault("VAEPIPE_ARTIFACT_ROOT", f"{tmp}/mlartifacts")
            os.environ.update(env)
        env["PYTHONPATH"] = str(REPO)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
        uri = args.model or train_and_register(args.train_steps)
        print(f"model {uri}; levels {args.levels}; {args.seconds}s each", flush=True)
        results = {}
        for kind in args.servers.split(","):
            results[kind] = measure(kind, uri, args, env, half_peak=kind == "vaepipe")
    print(json.dumps(summary(results)))


if __name__ == "__main__":
    main()
