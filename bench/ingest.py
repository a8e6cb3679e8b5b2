"""Ingest throughput: vaepipe's Ray Data pipeline vs a raw pyarrow scan of the same files.

Both produce the same thing, (B, 1, 28, 28) float32 torch batches scaled to [0, 1] with ids and
labels, at the same batch size: the pipeline as training reads it (``open_training_source``, then
each pass is one epoch of ``TrainOrder.epoch_data`` + ``iter_torch_batches``: a hot split is
gathered in a fresh whole-split permutation, a streamed one read in a fresh row-group order and
mixed in the read tasks), the baseline through ``pq.ParquetFile.iter_batches`` +
``np.frombuffer`` → torch in file order. Runs are interleaved (ABBA), the first round is warm-up
and discarded, and medians are reported. Steady state counts rows/s from each pass's first batch
on; the whole pass also pays the start-up (Ray Data's ~0.2 s per streamed pass). A hot split's
one-time read (``hot_setup_s``) is reported apart: training pays it once per run.
Datasets: MNIST train (60k) and 1M procedural shapes at 28×28, both made by ``vaepipe prepare``
and cached under ``./.vaepipe/bench``; the 1M set runs twice, with ``--cache-share`` (default
``data.cache_share``) and forced to stream (``cache_share=0``). Peak memory: this process's max
RSS (it is the consumer, as a training worker is) and the hot blocks' bytes in the object store.
It also measures the storage-layout choice: decoding fixed_size_binary vs fixed_size_list /
list<uint8> columns from Parquet.

Usage: python bench/ingest.py [--rounds 4] [--batch-size 256] [--shapes-rows 1000000]
       [--cache-share 0.25]
Last line: one JSON object.
"""

from __future__ import annotations

import io
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import MNIST, abba, median, parser, run  # noqa: E402

from jobs.cli import main as cli_main  # noqa: E402
from pipeline.config.data import DataConfig  # noqa: E402
from pipeline.data.batches import Preprocessor, iter_torch_batches  # noqa: E402
from pipeline.data.schema import XLayout, decode_x  # noqa: E402
from pipeline.data.train_order import open_training_source  # noqa: E402


def prepared(cache: Path, name: str, argv: list[str]) -> Path:
    """``vaepipe prepare`` once; reuse the cached output afterwards."""
    out = cache / name
    if not (out / "_SUCCESS").exists():
        t0 = time.perf_counter()
        if cli_main(["prepare", *argv, "--out", str(out), "--overwrite"]) != 0:
            raise SystemExit(f"prepare {name} failed")
        print(f"prepared {name} in {time.perf_counter() - t0:.1f}s", flush=True)
    return out


def raw_scan(files: list[Path], batch_size: int, shape: tuple[int, ...]) -> int:
    """The baseline: same files, same outputs (float x, ids, labels), no Ray."""
    rows, nbytes, first = 0, int(np.prod(shape)), None
    for f in files:
        for rb in pq.ParquetFile(f).iter_batches(batch_size=batch_size):
            col = rb.column("x")
            arr = np.frombuffer(col.buffers()[1], np.uint8, len(col) * nbytes, col.offset * nbytes)
            x = torch.from_numpy(arr.reshape(len(col), *shape)).to(torch.float32) * (1 / 255)
            ids = rb.column("id").to_numpy()
            labels = torch.from_numpy(np.array(rb.column("label").to_numpy(), dtype=np.int64))
            rows += x.shape[0] + 0 * (len(ids) + len(labels))
            first = first or time.perf_counter()
    return rows, first


class Pipeline:
    """The training split as training reads it; each ``scan`` is the next epoch."""

    def __init__(self, directory: Path, cache_share: float) -> None:
        t0 = time.perf_counter()
        cfg = DataConfig(source=str(directory), cache_share=cache_share)
        self.source, self.order = open_training_source(cfg, seed=0)
        self.setup_s = time.perf_counter() - t0
        self.pre = Preprocessor(self.source.layout)
        self.epoch = 0

    def scan(self, batch_size: int) -> tuple[int, float]:
        data = self.order.epoch_data(self.source.splits["train"], self.epoch)
        self.epoch += 1
        rows, first = 0, None
        for b in iter_torch_batches(data, batch_size, self.pre):
            rows += b.x.shape[0]
            first = first or time.perf_counter()
        return rows, first


def timed(fn, *args) -> tuple[float, float]:
    """(whole-pass rows/s, steady rows/s after the first batch): Ray Data pays a fixed start-up
    per pass (planning, scheduling the first reads) that dominates a small set's pass."""
    t0 = time.perf_counter()
    rows, first = fn(*args)
    t1 = time.perf_counter()
    return rows / (t1 - t0), rows / (t1 - first)


def compare(directory: Path, rounds: int, batch_size: int, share: float) -> dict[str, float]:
    files = sorted((directory / "train").glob("*.parquet"))
    pipeline = Pipeline(directory, share)
    raw, pipe = [], []
    for r in range(rounds):
        for kind, out in abba([("raw", raw), ("pipe", pipe)], r):
            if kind == "raw":
                rate = timed(raw_scan, files, batch_size, (1, 28, 28))
            else:
                rate = timed(pipeline.scan, batch_size)
            if r > 0:  # round 0 is warm-up (page cache, Ray workers, imports)
                out.append(rate)
        print(f"  {directory.name} round {r}: raw {raw[-1:]} pipe {pipe[-1:]}", flush=True)

    def med(rates: list[tuple[float, float]], i: int) -> float:
        return median([r[i] for r in rates])

    hot = pipeline.order.hot
    return {
        "mode": pipeline.order.mode,
        "hot_setup_s": pipeline.setup_s if hot is not None else 0.0,
        "hot_store_mb": hot.blocks().nbytes / 2**20 if hot is not None else 0.0,
        "pipeline_rows_s": round(med(pipe, 1)),
        "pyarrow_rows_s": round(med(raw, 1)),
        "ratio": med(pipe, 1) / med(raw, 1),
        "pipeline_rows_s_whole_pass": round(med(pipe, 0)),
        "pyarrow_rows_s_whole_pass": round(med(raw, 0)),
        "ratio_whole_pass": med(pipe, 0) / med(raw, 0),
    }


def layout_decode(directory: Path, repeats: int = 5) -> dict[str, float]:
    """Seconds to read one Parquet file and decode x to (N, 784) uint8, per column layout."""
    f = sorted((directory / "train").glob("*.parquet"))[0]
    x = decode_x(pq.read_table(f, columns=["x"]).column("x"), XLayout((784,), "uint8"))
    layouts = {
        "fixed_size_binary": pq.read_table(f, columns=["x"]).column("x").combine_chunks(),
        "fixed_size_list": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 784),
        "list": pa.ListArray.from_arrays(
            pa.array(np.arange(0, x.size + 1, 784, dtype=np.int32)), pa.array(x.ravel())
        ),
    }
    times = {}
    for name, arr in layouts.items():
        buf = io.BytesIO()
        pq.write_table(pa.table({"x": arr}), buf)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            col = pq.read_table(io.BytesIO(buf.getvalue())).column("x").combine_chunks()
            if name == "fixed_size_binary":
                out = np.frombuffer(col.buffers()[1], np.uint8).reshape(len(col), 784)
            else:
                out = col.flatten().to_numpy().reshape(len(col), 784)
            samples.append(time.perf_counter() - t0)
        assert (out == x).all()
        times[name] = statistics.median(samples)
    return {f"{k}_vs_binary": round(v / times["fixed_size_binary"], 2) for k, v in times.items()}


def _rounded(v):
    return round(v, 3) if isinstance(v, float) else v


def main() -> dict:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--shapes-rows", type=int, default=1_000_000)
    ap.add_argument("--cache", type=Path, default=Path(".vaepipe/bench"))
    ap.add_argument("--cache-share", type=float, default=DataConfig().cache_share)
    args = ap.parse_args()

    import ray
    from ray.data import DataContext

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    DataContext.get_current().enable_progress_bars = False
    DataContext.get_current().print_on_execution_start = False
    n = args.shapes_rows
    sets = {
        "mnist_train": prepared(args.cache, "mnist", [str(MNIST)]),
        f"shapes28_{n}": prepared(
            args.cache, f"shapes28_{n}",
            ["shapes", "--shapes-rows", str(n), "--shapes-resolution", "28"],
        ),
    }  # fmt: skip
    runs = [(name, d, args.cache_share) for name, d in sets.items()]
    runs.append((f"shapes28_{n}_streaming", sets[f"shapes28_{n}"], 0.0))
    results = {name: compare(d, args.rounds, args.batch_size, s) for name, d, s in runs}
    layout = layout_decode(sets["mnist_train"])
    summary = {
        "ratio_vs_pyarrow": round(min(r["ratio"] for r in results.values()), 3),
        "whole_pass_ratio_mnist": round(results["mnist_train"]["ratio_whole_pass"], 3),
        "ratio_vs_pyarrow_whole_pass": round(
            min(r["ratio_whole_pass"] for r in results.values()), 3
        ),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cache_share": args.cache_share,
        "batch_size": args.batch_size,
        **{name: {k: _rounded(v) for k, v in r.items()} for name, r in results.items()},
        "layout_decode_time_vs_fixed_size_binary": layout,
    }
    return summary


if __name__ == "__main__":
    run(main)
