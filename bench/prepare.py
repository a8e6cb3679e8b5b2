"""Prepare throughput: ``vaepipe prepare`` (Ray Data tasks) vs a plain single-process pyarrow
conversion of the same source.

Source: Parquet as people store it — pixels as a ``list<uint8>`` column, an int ``id`` and a
``label`` (procedural shapes, ``--rows`` rows of 28×28, cached under ``./.vaepipe/bench``). Both
contenders do the same conversion: read every row group, turn the pixel lists into vaepipe's
fixed-size-binary layout, carve val/test by id hash, and write per-split Parquet (snappy, page
checksums). ``prepare`` also verifies its output (files, rows, distinct ids) and commits it; the
plain loop does neither. Runs are interleaved (order alternating), the first round is warm-up
and discarded, medians reported; Ray is started once, before timing.

``--two-node``: scaling instead, on a simulated cluster on loopback (``local_stack``: a head with
1 CPU, then a second node with 1 CPU added): prepare rows/s on 2 nodes ÷ on 1 (``scaling``).

Usage: python bench/prepare.py [--rows 400000] [--rounds 3] [--two-node]
Last line: one JSON object (``ratio_vs_plain`` = prepare rows/s ÷ plain rows/s), also on failure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import on_one_then_two_nodes  # noqa: E402

from pipeline.config.data import DataConfig  # noqa: E402
from pipeline.data.ingest import SPLIT_CODES, Carve  # noqa: E402
from pipeline.data.parquet_files import WRITE_OPTIONS  # noqa: E402
from pipeline.data.schema import encode_x  # noqa: E402
from pipeline.data.sources import SPLITS  # noqa: E402

SIDE = 28
ROW_GROUP_ROWS = 10_000
FILE_ROWS = 100_000


def make_source(cache: Path, rows: int) -> Path:
    """Shapes as list<uint8> Parquet files (made once, then reused)."""
    from pipeline.data.sources import shapes

    out = cache / f"prepare-src-{rows}"
    if (out / "_done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for n, start in enumerate(range(0, rows, FILE_ROWS)):
        stop = min(start + FILE_ROWS, rows)
        unit = shapes.ShapesUnit(start, stop, SIDE, 0)
        table = shapes.read_unit(unit)
        x = np.frombuffer(table.column("x").combine_chunks().buffers()[1], np.uint8)
        pixels = pa.FixedSizeListArray.from_arrays(pa.array(x), SIDE * SIDE).cast(
            pa.list_(pa.uint8())
        )
        plain = pa.table({"id": table["id"], "pixels": pixels, "label": table["label"]})
        pq.write_table(plain, out / f"part-{n:03d}.parquet", row_group_size=ROW_GROUP_ROWS)
    (out / "_done").write_text("")
    return out


def plain_convert(src: Path, out: Path, carve: Carve) -> int:
    """What one would write by hand: one process, pyarrow and numpy only."""
    writers: dict[str, pq.ParquetWriter] = {}
    rows = 0
    for path in sorted(src.glob("*.parquet")):
        f = pq.ParquetFile(path)
        for rg in range(f.num_row_groups):
            t = f.read_row_group(rg)
            values = pc.list_flatten(t.column("pixels")).to_numpy(zero_copy_only=False)
            x = encode_x(values.astype(np.uint8).reshape(t.num_rows, 1, SIDE, SIDE))
            table = pa.table({"id": t["id"], "x": x, "label": t["label"]})
            codes = carve.codes(table.column("id"))
            for split in SPLITS:
                part = table.filter(pa.array(codes == SPLIT_CODES[split]))
                if split not in writers:
                    (out / split).mkdir(parents=True, exist_ok=True)
                    writers[split] = pq.ParquetWriter(
                        out / split / "part-0.parquet", part.schema, **WRITE_OPTIONS
                    )
                writers[split].write_table(part)
            rows += t.num_rows
    for w in writers.values():
        w.close()
    return rows


def run_prepare(src: Path, out: Path) -> int:
    from pipeline.data.prepare import prepare

    result = prepare(DataConfig(source=str(src), column="pixels"), str(out), overwrite=True)
    return sum(result.rows.values())


def timed_prepares(src: Path, work: Path, rounds: int, rows: int, tag: str) -> list[float]:
    """Seconds of ``rounds`` prepares after one warm-up."""
    times = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        assert run_prepare(src, work / f"{tag}-{r}") == rows
        seconds = time.perf_counter() - t0
        shutil.rmtree(work / f"{tag}-{r}", ignore_errors=True)
        print(f"{tag} round {r}: {rows / seconds:,.0f} rows/s ({seconds:.2f}s)", flush=True)
        times += [seconds] if r else []
    return times


def two_node(src: Path, rows: int, rounds: int) -> dict:
    """Prepare on a loopback cluster of one 1-CPU node, then of two (median seconds each)."""
    child = [sys.executable, __file__, "--rows", str(rows), "--rounds", str(rounds)]
    one, two = on_one_then_two_nodes([*child, "--timed-on-cluster", "cluster"])
    one, two = statistics.median(one), statistics.median(two)
    return {
        "rows": rows,
        "one_node_rows_per_s": round(rows / one),
        "two_node_rows_per_s": round(rows / two),
        "scaling": round(one / two, 3),
        "rounds": rounds,
    }


def timed_on_cluster(src: Path, rows: int, rounds: int, tag: str) -> list[float]:
    """The child of ``two_node``: joins the cluster named by ``RAY_ADDRESS``; prepare seconds."""
    from pipeline.cluster.ray_session import ensure_ray

    ensure_ray()
    work = Path(tempfile.mkdtemp(prefix="vp_bench_prepare_"))
    try:
        return timed_prepares(src, work, rounds, rows, tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=REPO / ".vaepipe" / "bench")
    parser.add_argument("--two-node", action="store_true", help="measure 1 → 2 node scaling")
    parser.add_argument("--timed-on-cluster", metavar="TAG", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from pipeline.cluster.ray_session import ensure_ray

    src = make_source(args.cache, args.rows)
    if args.timed_on_cluster:
        print(json.dumps(timed_on_cluster(src, args.rows, args.rounds, args.timed_on_cluster)))
        return
    if args.two_node:
        print(json.dumps(two_node(src, args.rows, args.rounds)))
        return
    ensure_ray()
    carve = Carve(0.1, 0.1, 0)
    work = Path(tempfile.mkdtemp(prefix="vp_bench_prepare_"))
    times: dict[str, list[float]] = {"plain": [], "prepare": []}
    try:
        for r in range(args.rounds + 1):  # round 0: warm-up, discarded
            order = ["plain", "prepare"] if r % 2 == 0 else ["prepare", "plain"]
            for name in order:
                out = work / f"{name}-{r}"
                t0 = time.perf_counter()
                rows = plain_convert(src, out, carve) if name == "plain" else run_prepare(src, out)
                seconds = time.perf_counter() - t0
                assert rows == args.rows, (name, rows)
                shutil.rmtree(out, ignore_errors=True)
                if r:
                    times[name].append(seconds)
                speed = f"{rows / seconds:,.0f} rows/s ({seconds:.2f}s)"
                print(f"round {r} {name}: {speed}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plain, prep = (statistics.median(times[k]) for k in ("plain", "prepare"))
    print(
        json.dumps(
            {
                "rows": args.rows,
                "plain_rows_per_s": round(args.rows / plain),
                "prepare_rows_per_s": round(args.rows / prep),
                "ratio_vs_plain": round(plain / prep, 3),
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # the last line is JSON also when the bench fails
        first = (str(exc).splitlines() or [""])[0]
        print(json.dumps({"error": f"{type(exc).__name__}: {first}"}))
        sys.exit(1)
