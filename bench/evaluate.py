"""Evaluation benchmark: `evaluate_model` on Ray actors vs a plain single-process loop.

Both sides run the same `RowScorer` over the same rows (the MNIST test split, or `--rows` of it)
with the same k importance samples and torch thread count: the plain loop reads the Parquet
file with pyarrow and calls the scorer on the driver; the pipeline reads with Ray Data and
scores on an actor pool, streaming, and sums on the driver. Both sides are timed from the model
URI to the sums (model loading included; Ray is started once, before). Rounds alternate ABBA;
the ratio is the median of per-round rows/s ratios (pipeline ÷ plain), target >= 0.9. The two
sides' IS-NLL must agree to 1e-4 relative (they score each row with the same seeded samples).

``--two-node``: scaling instead, on a simulated cluster on loopback (``local_stack``: a head with
1 CPU, then a second 1-CPU node added; ``evaluate`` puts one scoring actor on each CPU node):
pipeline rows/s on 2 nodes ÷ on 1 (``scaling``). Both nodes share this machine's cores.

    python bench/evaluate.py [--rows 2000] [--iw-samples 1000] [--rounds 3] [--two-node]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import MNIST, abba, median, on_one_then_two_nodes, parser, run  # noqa: E402


def test_rows(out: Path, rows: int) -> Path:
    """The MNIST test split as ingested Parquet (id, x, label), ``rows`` of it, in a folder
    with split subfolders (``train/`` is required; ``test/`` is what both sides read)."""
    from pipeline.config.data import DataConfig
    from pipeline.data import schema
    from pipeline.data.ingest import open_source

    src = open_source(DataConfig(source=str(MNIST), binarize="dynamic", limit=rows))
    table = pa.concat_tables(src.splits["test"].iter_batches(batch_format="pyarrow"))
    # Ray Data's batches drop the schema metadata that names the sample shape: put it back.
    layout = schema.ingest_schema(src.layout.shape, src.layout.dtype).metadata
    table = table.replace_schema_metadata(layout)
    # ``train/`` only has to exist: one row, under an id of its own (ids must be distinct
    # across the input's splits).
    at, id_type = table.schema.get_field_index(schema.ID), table.schema.field(schema.ID).type
    own_id = pa.array(["train-only"] if pa.types.is_string(id_type) else [-1], id_type)
    train = table.slice(0, 1).set_column(at, table.schema.field(schema.ID), own_id)
    for split, rows_of in (("train", train), ("test", table)):
        (out / "data" / split).mkdir(parents=True)
        pq.write_table(rows_of, out / "data" / split / "part-0.parquet", row_group_size=1000)
    return out / "data"


def register(store: Path) -> str:
    """A small MNIST-shaped VAE, registered (untrained: the cost is the same)."""
    import mlflow
    import torch

    from pipeline.data.batches import Preprocessor
    from pipeline.data.schema import XLayout
    from pipeline.tracking import mlflow_store, registry
    from vae_core.config import ModelConfig
    from vae_core.model import VAE

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    torch.manual_seed(0)
    shape = (1, 28, 28)
    vae = VAE(ModelConfig(input_shape=shape, latent_dim=32, hidden_sizes=(512, 256))).eval()
    pre = Preprocessor(XLayout(shape, "uint8"), binarize="dynamic").to_dict()
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("bench-evaluate")):
        registry.log_vae(vae, pre, "bench-eval", 1.0, "bench")
    return "models:/bench-eval/1"


def plain(path: Path, model_uri: str, k: int, threads: int) -> tuple[float, float]:
    """(rows/s, mean IS-NLL) of the scorer in this process over the file.

    Timed from the model URI, as the pipeline side is: both load the model from the registry.
    """
    from pipeline.inference.latent_encoder import ModelPayload
    from pipeline.inference.model_data import model_preprocessor
    from pipeline.inference.row_scorer import RowScorer
    from pipeline.tracking.registry import load_vae

    t0, rows, total = time.perf_counter(), 0, 0.0
    loaded = load_vae(model_uri)
    payload = ModelPayload.from_vae(loaded.vae, model_preprocessor(loaded), {})
    scorer = RowScorer(payload, k, threads=threads)
    for batch in pq.ParquetFile(path / "test" / "part-0.parquet").iter_batches(batch_size=256):
        out = scorer(pa.Table.from_batches([batch]))
        rows += out.num_rows
        total += float(np.sum(out.column("is_nll").to_numpy()))
    return rows / (time.perf_counter() - t0), total / rows


def pipeline(path: Path, model_uri: str, k: int) -> tuple[float, float]:
    from pipeline.inference.evaluate import evaluate_model

    t0 = time.perf_counter()
    res = evaluate_model(model_uri, str(path), split="test", iw_samples=k, log_to_mlflow=False)
    return res.rows / (time.perf_counter() - t0), res.metrics["is_nll"]


def two_node(path: Path, uri: str, k: int, rounds: int) -> dict:
    """Pipeline rows/s on a loopback cluster of one 1-CPU node, then of two."""
    child = [sys.executable, __file__, "--on-cluster", str(path), uri, str(k), str(rounds)]
    one, two = on_one_then_two_nodes(child)
    return {
        "iw_samples": k,
        "one_node_rows_per_s": median(one),
        "two_node_rows_per_s": median(two),
        "scaling": round(median(two) / median(one), 3),
    }


def on_cluster(path: str, uri: str, k: str, rounds: str) -> None:
    """The child of ``two_node``: joins the cluster named by ``RAY_ADDRESS``; prints rows/s."""
    from pipeline.cluster.ray_session import ensure_ray

    ensure_ray()
    print(json.dumps([pipeline(Path(path), uri, int(k))[0] for _ in range(int(rounds))]))


def main() -> dict:
    p = parser(__doc__)
    p.add_argument("--rows", type=int, default=2000, help="MNIST test rows (10000 = all)")
    p.add_argument("--iw-samples", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--two-node", action="store_true", help="measure 1 -> 2 node scaling")
    args = p.parse_args()
    if not (MNIST / "t10k-images-idx3-ubyte.gz").exists() and not any(MNIST.glob("t10k*")):
        raise FileNotFoundError(f"MNIST not found in {MNIST} (set VAEPIPE_MNIST_DIR)")
    if args.two_node:
        with tempfile.TemporaryDirectory() as tmp:
            path, uri = test_rows(Path(tmp), args.rows), register(Path(tmp))
            import ray

            ray.shutdown()  # reading the rows started a local Ray; the cluster is another one
            return {"rows": args.rows, **two_node(path, uri, args.iw_samples, args.rounds)}
    from pipeline.cluster.ray_session import ensure_ray
    from pipeline.inference.latent_encoder import plan_for_cluster

    ensure_ray()
    threads = plan_for_cluster().threads
    with tempfile.TemporaryDirectory() as tmp:
        path, uri = test_rows(Path(tmp), args.rows), register(Path(tmp))
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "ray": []}
        for r in range(args.rounds):
            for name in abba(["plain", "ray"], r):
                fn = plain if name == "plain" else pipeline
                extra = (threads,) if name == "plain" else ()
                runs[name].append(fn(path, uri, args.iw_samples, *extra))
                print(f"round {r} {name}: {runs[name][-1][0]:.1f} rows/s", file=sys.stderr)
    ratios = [a[0] / b[0] for a, b in zip(runs["ray"], runs["plain"], strict=True)]
    nll_plain, nll_ray = runs["plain"][0][1], runs["ray"][0][1]
    return {
        "rows": args.rows,
        "iw_samples": args.iw_samples,
        "torch_threads": threads,
        "plain_rows_per_s": median([r[0] for r in runs["plain"]]),
        "ray_rows_per_s": median([r[0] for r in runs["ray"]]),
        "ratio_vs_plain": median(ratios),
        "pairs": [round(x, 3) for x in ratios],
        "is_nll_plain": nll_plain,
        "is_nll_ray": nll_ray,
        "is_nll_rel_diff": abs(nll_ray - nll_plain) / abs(nll_plain),
    }


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--on-cluster":
        on_cluster(*sys.argv[2:])
    else:
        run(main)
