"""Benchmark: what Ray Train, MLflow tracking and DDP cost the training loop.

In one run, on MNIST (real IDX files; ``--rows`` of the training split), the ``mnist`` model:

1. ray_vs_plain: steady-state training samples/s through Ray Train (1 worker, streaming Ray Data
   shard, tracking on) / a plain PyTorch loop over the same batches held in memory (same model,
   batch size, thread count, the same ``train_epoch``). Target >= 0.95.
2. tracking_on_vs_off: whole-epoch throughput (train + validate + log + checkpoint, from the
   report timestamps) with MLflow tracking on (metrics, images, system metrics) / off.
   Target >= 0.98.
3. workers_n_vs_1: training samples/s of N DDP workers / 1 worker on the same cores, and the
   layout ``scaling.workers: 0`` (auto) picks. Target >= 1.0, or auto picks the faster one.
4. seconds_to_first_step: from the start of this process to the first training batch of run 1
   (imports, Ray start, data open, MLflow run, worker start-up, first batch).

Warm-up (epoch 1) is discarded, medians of the remaining epochs; the plain loop runs before,
between and after the Ray runs and its median over all of them is used (the first plain run's
time is left out of seconds_to_first_step). The last line is one JSON object.

    python bench/train.py [--epochs 3] [--rows 54000] [--workers 2]
"""

from __future__ import annotations

import time

T_START = time.time()  # "the command": before the heavy imports

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

MNIST = Path(
    os.environ.get("VAEPIPE_MNIST_DIR", Path(__file__).resolve().parents[2] / "shared/data/mnist")
)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rows", type=int, default=54_000, help="training rows (data.limit)")
    p.add_argument("--workers", type=int, default=2, help="N for the N-vs-1 comparison")
    p.add_argument("--batch-size", type=int, default=128)
    return p.parse_args()


def job(args, tmp: str, *extra: str):
    from pipeline.job_config import load_job_config

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


def steady(history, key: str) -> float:
    return statistics.median(h[key] for h in history[1:])


def wall_samples_per_s(history, examples: float) -> float:
    """Whole-epoch throughput from consecutive report timestamps (epochs 2..N)."""
    gaps = [b["wall_time"] - a["wall_time"] for a, b in zip(history, history[1:], strict=False)]
    return examples / statistics.median(gaps)


def plain_loop(cfg, epochs: int, threads: int) -> list[float]:
    """Samples/s per epoch of ``train_epoch`` over uint8 samples held in memory (no Ray, no
    MLflow), reshuffled every epoch as a plain loop (``DataLoader(shuffle=True)``) would be."""
    import torch

    from pipeline.batches import Preprocessor, iter_torch_batches
    from pipeline.epochs import train_epoch
    from pipeline.ingest import open_source
    from pipeline.trainer import with_input_shape
    from vae_core.model import VAE
    from vae_core.training import build_optimizer

    source = open_source(cfg.data)
    cfg = with_input_shape(cfg, source.layout)
    raw = Preprocessor(layout=source.layout, scale_to_unit=False)  # keep uint8 values
    prep = Preprocessor(layout=source.layout, binarize=cfg.data.binarize)
    bs = cfg.train.batch_size
    data = torch.cat(
        [b.x.to(torch.uint8) for b in iter_torch_batches(source.splits["train"], bs, raw)]
    )
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vae = VAE(cfg.model)
    opt = build_optimizer(vae, cfg.optim)
    gen = torch.Generator().manual_seed(0)
    rates, step = [], 0
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=gen)
        starts = range(0, len(data) - bs + 1, bs)  # drop_last, as the Ray loop does
        batches = (prep(data[order[i : i + bs]], gen) for i in starts)
        sums, step = train_epoch(vae, batches, opt, cfg.objective, step, None, 200.0)
        rates.append(sums.examples / sums.seconds)
    return rates


def main() -> None:
    args = parse()
    import ray

    from pipeline.job_config import ScalingSettings
    from pipeline.resources import plan_workers
    from pipeline.trainer import run_training

    cores = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="vp_bench_train_")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    os.environ.setdefault("VAEPIPE_ARTIFACT_ROOT", f"{tmp}/mlartifacts")
    ray.init(address="local", num_cpus=2 * cores, include_dashboard=False, log_to_driver=False)

    # A plain-loop run before, between and after the Ray runs (interleaved), so a change in the
    # machine's load during the bench shows up on both sides; warm-up epochs are dropped.
    plain: list[float] = []

    def plain_run() -> None:
        plain.extend(plain_loop(job(args, tmp), args.epochs, cores)[1:])

    startup = time.time() - T_START  # imports and Ray start
    plain_run()
    t_on = time.time()
    on = run_training(job(args, tmp, "scaling.workers=1", "tracking.run_name=track-on"))
    first_step = startup + on.history[0]["first_step_at"] - t_on
    plain_run()
    off = run_training(
        job(args, tmp, "scaling.workers=1", "tracking.enabled=false", "tracking.run_name=track-off")
    )
    plain_run()
    n = run_training(
        job(
            args,
            tmp,
            f"scaling.workers={args.workers}",
            "tracking.enabled=false",
            "tracking.run_name=n-workers",
        )
    )
    plain_run()
    plain_rate = statistics.median(plain)

    examples = (args.rows // args.batch_size) * args.batch_size
    ray1 = steady(on.history, "samples_per_s")
    auto = plan_workers(ScalingSettings(workers=0), ray.cluster_resources()).num_workers
    figures = {
        "ray_vs_plain": ray1 / plain_rate,
        "tracking_on_vs_off": wall_samples_per_s(on.history, examples)
        / wall_samples_per_s(off.history, examples),
        "workers_n_vs_1": steady(n.history, "samples_per_s") / steady(off.history, "samples_per_s"),
        "n_workers": args.workers,
        "auto_layout_workers": auto,
        "seconds_to_first_step": first_step,
        "plain_samples_per_s": plain_rate,
        "ray_1_worker_samples_per_s": ray1,
        "ray_n_workers_samples_per_s": steady(n.history, "samples_per_s"),
        "threads": cores,
        "rows": args.rows,
        "epochs": args.epochs,
    }
    for key, value in figures.items():
        print(f"{key:32s} {value:.3f}" if isinstance(value, float) else f"{key:32s} {value}")
    ray.shutdown()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
