"""Benchmark: what Ray Train, MLflow tracking and DDP cost the training loop.

In one run, on MNIST (real IDX files; ``--rows`` of the training split), the ``mnist`` model:

1. ray_vs_plain: training samples/s through Ray Train (1 worker, streaming Ray Data shard,
   tracking on) / a plain PyTorch loop, in a process of its own, over the same rows held in
   memory (same model, batch size, thread count, the same ``train_epoch``). Target >= 0.95.
2. tracking_on_vs_off: whole-epoch throughput (train + validate + log + checkpoint + report)
   with MLflow tracking on (metrics, images, system metrics) / off. Target >= 0.98. Also
   tracking_time_share: the part of a tracked epoch spent in MLflow calls, timed in the worker
   (the same cost by accounting, so 1 - share is the ratio without the machine's noise).
3. workers_n_vs_1: training samples/s of N DDP workers / 1 worker on the same cores, and the
   layout ``scaling.workers: 0`` (auto) picks. Target >= 1.0, or auto picks the faster one.
4. seconds_to_first_step: from the start of this process to the first training batch of the
   first Ray run (imports, Ray start, data open, MLflow run, worker start-up, first batch).

Side by side: on a shared VM the same loop swings by ±20% (up to 40%) within a minute, so runs
timed one after another compare the machine's moods. Here the compared loops take turns epoch
by epoch (``bench/epoch_gate.py``, a training hook, holds each Ray run at its epoch boundaries)
in cycles of plain, Ray on, Ray off, then off, on, plain (ABBA), ..., and later 1 worker,
N workers, then N, 1, ... Each figure is the median over cycles of the ratio within a cycle,
with every cycle's ratio listed; epoch 0 (warm-up) is discarded. The last line is one JSON object.

    python bench/train.py [--epochs 10] [--rows 54000] [--workers 2]
"""

from __future__ import annotations

import time

T_START = time.time()  # "the command": before the heavy imports

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

from common import MNIST, abba, paired, parser, run  # noqa: E402


def parse() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=10, help="per run; epoch 0 is warm-up")
    p.add_argument("--rows", type=int, default=54_000, help="training rows (data.limit)")
    p.add_argument("--workers", type=int, default=2, help="N for the N-vs-1 comparison")
    p.add_argument("--batch-size", type=int, default=128)
    return p.parse_args()


def job(args, tmp: str, *extra: str):
    from pipeline.config.job import load_job_config

    return load_job_config(
        "mnist",
        [
            f"data.source={MNIST}",
            f"data.limit={args.rows}",
            f"train.epochs={args.epochs}",
            f"train.batch_size={args.batch_size}",
            "train.nll_samples=0",
            "train.early_stopping_patience=null",
            f"tracking.storage_path={tmp}/ray_results",
            "tracking.experiment=bench-train",
            *extra,
        ],
    )


class PlainLoop:
    """``train_epoch`` over uint8 samples held in memory (no Ray, no MLflow), reshuffled every
    epoch as a plain loop (``DataLoader(shuffle=True)``) would be; one epoch per call."""

    def __init__(self, job_dict: dict, layout_dict: dict, data_path: str, threads: int) -> None:
        import numpy as np
        import torch

        from pipeline.config.job import TrainJobConfig
        from pipeline.data.batches import Preprocessor
        from pipeline.data.schema import XLayout
        from vae_core.model import VAE
        from vae_core.training import build_optimizer

        self.cfg = TrainJobConfig.from_dict(job_dict)
        layout = XLayout.from_dict(layout_dict)
        self.prep = Preprocessor(layout=layout, binarize=self.cfg.data.binarize)
        self.data = torch.from_numpy(np.load(data_path))  # (N, 1, 28, 28) uint8
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.vae = VAE(self.cfg.model)
        self.opt = build_optimizer(self.vae, self.cfg.optim)
        self.gen = torch.Generator().manual_seed(0)
        self.step = 0

    def epoch(self) -> float:
        """One pass; its training samples/s."""
        import torch

        from pipeline.train.epochs import train_epoch

        bs, n = self.cfg.train.batch_size, len(self.data)
        order = torch.randperm(n, generator=self.gen)
        starts = range(0, n - bs + 1, bs)  # drop_last, as the Ray loop does
        batches = (self.prep(self.data[order[i : i + bs]], self.gen) for i in starts)
        clip = self.cfg.optim.grad_clip_norm
        sums, self.step = train_epoch(
            self.vae, batches, self.opt, self.cfg.objective, self.step, None, clip
        )
        return sums.examples / sums.seconds


def _plain_process_main(conn, *args) -> None:
    loop = PlainLoop(*args)
    while conn.recv() == "epoch":
        conn.send(loop.epoch())


class PlainProcess:
    """The plain loop in its own process (no Ray threads in it, none of the driver's GIL),
    on the same rows the Ray run reads; ``epoch()`` runs one pass there."""

    def __init__(self, cfg, tmp: str, threads: int) -> None:
        import multiprocessing

        import numpy as np
        import torch

        from pipeline.data.batches import Preprocessor, iter_torch_batches
        from pipeline.data.ingest import open_source
        from pipeline.train.trainer import with_input_shape

        source = open_source(cfg.data)
        cfg = with_input_shape(cfg, source.layout)
        raw = Preprocessor(layout=source.layout, scale_to_unit=False)  # keep uint8 values
        batches = iter_torch_batches(source.splits["train"], cfg.train.batch_size, raw)
        data_path = f"{tmp}/plain_train.npy"
        np.save(data_path, torch.cat([b.x.to(torch.uint8) for b in batches]).numpy())
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        args = (child, cfg.to_dict(), source.layout.to_dict(), data_path, threads)
        self.process = context.Process(target=_plain_process_main, args=args, daemon=True)
        self.process.start()

    def epoch(self) -> float:
        self.conn.send("epoch")
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join()


class GatedRun:
    """``run_training`` in a thread, each epoch held until ``epoch(e)`` opens it."""

    def __init__(self, cfg, gate_dir: str) -> None:
        import epoch_gate  # bench/, next to this script: Ray workers get it by value
        import ray.cloudpickle

        from pipeline.train.trainer import run_training

        ray.cloudpickle.register_pickle_by_value(epoch_gate)

        self.epochs = cfg.train.epochs
        self.gate = epoch_gate.EpochGate(gate_dir)
        self.started = time.time()
        self.box: dict = {}

        def target() -> None:
            try:
                self.box["result"] = run_training(cfg, hooks=[self.gate])
            except BaseException as exc:  # re-raised in the bench thread
                self.box["error"] = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def epoch(self, e: int) -> float:
        """Run epoch ``e`` alone; its wall seconds (train, validate, log, checkpoint, report)."""
        try:
            return self.gate.run_epoch(e, self.thread.is_alive)
        except RuntimeError:
            raise self.box.get("error") or RuntimeError("the run ended early") from None

    def finish(self):
        """Let the run test, register and end; its TrainResult."""
        self.gate.open(self.epochs)
        self.thread.join()
        if "error" in self.box:
            raise self.box["error"]
        return self.box["result"]


def sps(result) -> list[float]:
    return [h["samples_per_s"] for h in result.history]


def ray_vs_plain_and_tracking(args, tmp: str, cores: int, startup: float) -> dict:
    """Plain, Ray (tracking on), Ray (tracking off), plain, ... epoch by epoch."""
    plain = PlainProcess(job(args, tmp), tmp, cores)
    runs = {}
    for name, flag in (("on", "true"), ("off", "false")):
        cfg = job(
            args,
            tmp,
            "scaling.workers=1",
            f"scaling.cpus_per_worker={cores}",  # threads = cores, as the auto layout
            f"tracking.enabled={flag}",
            f"tracking.run_name=track-{name}",
        )
        runs[name] = GatedRun(cfg, f"{tmp}/gate-{name}")
        runs[name].epoch(0)  # warm-up, alone (the first run's first step is timed here)
    plain.epoch()  # warm-up
    plain_sps, wall = [], {"on": [], "off": []}
    for e in range(1, args.epochs):
        for name in abba(("plain", "on", "off"), e - 1):
            if name == "plain":
                plain_sps.append(plain.epoch())
            else:
                wall[name].append(runs[name].epoch(e))
    on = runs["on"].finish()
    runs["off"].finish()
    plain.close()
    on_sps = sps(on)[1:]
    return {
        "ray_vs_plain": paired([r / p for r, p in zip(on_sps, plain_sps, strict=True)]),
        "tracking_on_vs_off": paired([f / n for n, f in zip(wall["on"], wall["off"], strict=True)]),
        # The same cost by accounting rather than timing two runs: the share of each tracked
        # epoch spent in MLflow calls (metrics, images), immune to the machine's swings.
        "tracking_time_share": statistics.median(
            h["tracking_seconds"] / w for h, w in zip(on.history[1:], wall["on"], strict=True)
        ),
        "seconds_to_first_step": startup + on.history[0]["first_step_at"] - runs["on"].started,
        "plain_samples_per_s": statistics.median(plain_sps),
        "ray_1_worker_samples_per_s": statistics.median(on_sps),
    }


def workers_n_vs_1(args, tmp: str, cores: int) -> dict:
    """1 worker x all cores, N workers x cores/N, epoch by epoch (tracking off)."""
    runs = {}
    for n in (1, args.workers):
        cfg = job(
            args,
            tmp,
            f"scaling.workers={n}",
            f"scaling.cpus_per_worker={cores / n:g}",
            "tracking.enabled=false",
            f"tracking.run_name=workers-{n}",
        )
        runs[n] = GatedRun(cfg, f"{tmp}/gate-workers-{n}")
        runs[n].epoch(0)  # warm-up
    for e in range(1, args.epochs):
        for n in abba((1, args.workers), e - 1):
            runs[n].epoch(e)
    one, many = (sps(runs[n].finish())[1:] for n in (1, args.workers))
    return {
        "workers_n_vs_1": paired([m / o for o, m in zip(one, many, strict=True)]),
        "ray_n_workers_samples_per_s": statistics.median(many),
    }


def main() -> dict:
    args = parse()
    import ray

    from pipeline.config.job import ScalingSettings
    from pipeline.train.resources import plan_workers

    cores = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="vp_bench_train_")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    os.environ.setdefault("VAEPIPE_ARTIFACT_ROOT", f"{tmp}/mlartifacts")
    # Logical CPUs for two runs held side by side (cores each) plus Ray Data's share.
    ray.init(address="local", num_cpus=4 * cores, include_dashboard=False, log_to_driver=False)
    startup = time.time() - T_START  # imports and Ray start
    figures = ray_vs_plain_and_tracking(args, tmp, cores, startup)
    figures |= workers_n_vs_1(args, tmp, cores)
    auto = plan_workers(ScalingSettings(workers=0), {"CPU": cores, "node:local": 1.0})
    faster = args.workers if figures["workers_n_vs_1"]["median"] > 1.0 else 1
    figures |= {
        "n_workers": args.workers,
        "auto_layout_workers": auto.num_workers,
        "auto_picks_faster": auto.num_workers == faster,
        "threads": cores,
        "rows": args.rows,
        "epochs": args.epochs,
    }
    for key, value in figures.items():
        print(f"{key:32s} {value:.3f}" if isinstance(value, float) else f"{key:32s} {value}")
    ray.shutdown()
    return figures


if __name__ == "__main__":
    run(main)
