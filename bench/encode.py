"""Encoding benchmark: ``encode_dataset`` vs a plain loop, and peak memory on a big dataset.

1. Throughput: rows/s of the pipeline function
   (``pipeline.inference.encode.encode_dataset``: registry load, Ray Data read, LatentEncoder
   actor, staged write, commit) ÷ rows/s of a plain loop
   (``pq.ParquetFile.iter_batches`` → the same ``LatentEncoder`` on the driver → one
   ``pq.ParquetWriter``) over the same rows with the same torch thread count and batch size.
   Runs interleave (order alternating), the first round is warm-up and dropped; medians.
   Target ≥ 0.8.
2. Memory: peak PSS of this process and every process it started (the local Ray: raylet,
   workers, object store mappings), sampled while the pipeline runs, on a dataset ≥ 10× the
   object store (``--object-store-mb``). PSS counts shared pages once, so the object store is
   not counted per mapping. Target ≤ 3 GiB.

Both use one dataset (1.7M rows, 1.26 GiB, 12.9× a 100 MiB store), so the pipeline's fixed
cost per run (actor start, planning, commit: a few seconds) is amortized as it would be on a
real job; on much smaller inputs that fixed cost dominates the ratio.

Synthetic data in ingest's layout (id, x: fixed_size_binary 784 uint8 as (1, 28, 28)) is made
once under ``--cache``; the model is a small random MLP VAE registered in a temporary MLflow
store (what it computes does not matter, that it computes the same thing in both does).

    python bench/encode.py [--rows 1700000] [--rounds 3] [--object-store-mb 100]
Last line: one JSON object.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import abba, median, parser, run  # noqa: E402

from pipeline.data import schema  # noqa: E402
from pipeline.data.schema import encode_x  # noqa: E402

SHAPE = (1, 28, 28)
ROW_GROUP = 20_000


# ----------------------------------------------------------------------------- data and model


def make_dataset(path: Path, rows: int) -> Path:
    """``rows`` random 28x28 uint8 images in files of 200k rows, row groups of 20k (cached)."""
    done = path / "_done"
    if done.exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sch = schema.ingest_schema(SHAPE, "uint8", pa.int64(), labels=True)
    per_file = 200_000
    for f, start in enumerate(range(0, rows, per_file)):
        n = min(per_file, rows - start)
        with pq.ParquetWriter(path / f"part-{f:04d}.parquet", sch, compression="none") as w:
            for s in range(0, n, ROW_GROUP):
                m = min(ROW_GROUP, n - s)
                ids = np.arange(start + s, start + s + m, dtype=np.int64)
                x = rng.integers(0, 256, (m, *SHAPE), dtype=np.uint8)
                labels = (ids % 10).astype(np.int64)
                table = pa.table({"id": ids, "x": encode_x(x), "label": labels}, schema=sch)
                w.write_table(table, row_group_size=ROW_GROUP)
    done.write_text(str(rows))
    return path


def register_model(hidden: int, latent: int) -> str:
    import mlflow
    import torch

    from pipeline.data.batches import Preprocessor
    from pipeline.data.schema import XLayout
    from pipeline.tracking import mlflow_store
    from pipeline.tracking.registry import log_vae
    from vae_core.config import ModelConfig
    from vae_core.model import VAE

    torch.manual_seed(0)
    cfg = ModelConfig(input_shape=SHAPE, latent_dim=latent, hidden_sizes=(hidden,))
    vae = VAE(cfg).eval()
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("bench-encode")):
        pre = Preprocessor(XLayout(SHAPE, "uint8")).to_dict()
        rv = log_vae(vae, pre, "bench-encode", 1.0, "synthetic")
    return rv.uri


# ----------------------------------------------------------------------------- contenders


def run_pipeline(uri: str, data: Path, out: Path, batch: int, threads: int) -> int:
    from pipeline.inference.encode import encode_dataset

    res = encode_dataset(uri, str(data), out, batch_size=batch, overwrite=True, threads=threads)
    return res.rows


def run_plain(uri: str, data: Path, out: Path, batch: int, threads: int) -> int:
    """What someone would write by hand: read, encode, write; same model code and threads."""
    from pipeline.inference.latent_encoder import LatentEncoder, ModelPayload
    from pipeline.inference.model_data import model_preprocessor
    from pipeline.tracking.registry import load_vae

    loaded = load_vae(uri)
    payload = ModelPayload.from_vae(loaded.vae, model_preprocessor(loaded), {})
    enc = LatentEncoder(payload, False, threads)
    out.mkdir(parents=True, exist_ok=True)
    rows, writer = 0, None
    for f in sorted(data.glob("*.parquet")):
        for rb in pq.ParquetFile(f).iter_batches(batch_size=batch):
            table = enc(pa.Table.from_batches([rb]))
            if writer is None:
                writer = pq.ParquetWriter(out / "part-0.parquet", table.schema)
            writer.write_table(table)
            rows += table.num_rows
    writer.close()
    return rows


# ----------------------------------------------------------------------------- memory


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_pss_bytes(root: int) -> int:
    """Sum of PSS over ``root`` and all its descendants."""
    kids, total, stack = _children(), 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(kids.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


class PeakSampler(threading.Thread):
    """Peak tree PSS, sampled only while ``active`` (the pipeline's runs)."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_flag = interval, 0, threading.Event()
        self.active = False

    def run(self) -> None:
        while not self._stop_flag.is_set():
            if self.active:
                self.peak = max(self.peak, tree_pss_bytes(os.getpid()))
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_flag.set()
        self.join()
        return self.peak


# ----------------------------------------------------------------------------- main


def main() -> dict:
    p = parser(__doc__)
    p.add_argument("--rows", type=int, default=1_700_000, help="rows of the dataset")
    p.add_argument("--rounds", type=int, default=3, help="rounds per contender, incl. warm-up")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: plan's)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--object-store-mb", type=int, default=100)
    p.add_argument("--cpus", type=int, default=None, help="logical CPUs for the local Ray")
    p.add_argument("--cache", default=str(REPO / ".vaepipe" / "bench"))
    args = p.parse_args()

    import ray

    from pipeline.inference.latent_encoder import plan_for_cluster

    work = Path(tempfile.mkdtemp(prefix="vp_bench_encode_"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["VAEPIPE_ARTIFACT_ROOT"] = str(work / "mlartifacts")
    t0 = time.perf_counter()
    cache = Path(args.cache)
    data = make_dataset(cache / f"encode-{args.rows}", args.rows)
    print(f"data ready in {time.perf_counter() - t0:.0f}s", flush=True)
    uri = register_model(args.hidden, args.latent)
    ray.init(
        num_cpus=args.cpus,
        object_store_memory=args.object_store_mb * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(work / "ray"),
    )
    plan = plan_for_cluster(args.threads)
    threads = plan.threads
    print(f"plan {plan}, batch {args.batch_size}", flush=True)

    rates: dict[str, list[float]] = {"pipeline": [], "plain": []}
    contenders = {"pipeline": run_pipeline, "plain": run_plain}
    sampler = PeakSampler()
    sampler.start()
    for r in range(args.rounds):
        for name in abba(list(contenders), r):
            sampler.active = name == "pipeline"
            start = time.perf_counter()
            rows = contenders[name](uri, data, work / f"out-{name}", args.batch_size, threads)
            rate = rows / (time.perf_counter() - start)
            print(f"round {r} {name}: {rate:,.0f} rows/s", flush=True)
            if r > 0 or args.rounds == 1:
                rates[name].append(rate)
    peak = sampler.stop()
    pipeline_rate = median(rates["pipeline"])
    plain_rate = median(rates["plain"])
    data_bytes = sum(f.stat().st_size for f in data.glob("*.parquet"))
    result = {
        "pipeline_rows_per_s": round(pipeline_rate),
        "plain_rows_per_s": round(plain_rate),
        "ratio": round(pipeline_rate / plain_rate, 3),
        "ratio_target": 0.8,
        "threads": threads,
        "batch_size": args.batch_size,
        "rows": rows,
        "dataset_gib": round(data_bytes / 2**30, 2),
        "object_store_mib": args.object_store_mb,
        "dataset_over_object_store": round(data_bytes / (args.object_store_mb * 2**20), 1),
        "peak_pss_gib": round(peak / 2**30, 2),
        "peak_target_gib": 3.0,
        "cpus": os.cpu_count(),
        "seconds": round(time.perf_counter() - t0),
    }
    ray.shutdown()
    return result


if __name__ == "__main__":
    run(main)
