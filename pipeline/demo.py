"""The demo: train on the built-in digits, register, encode everything, evaluate, draw samples.

Everything is local and needs no network: a local Ray, the MLflow store in force (by default
``./mlflow.db`` and ``./mlartifacts``), outputs under ``./outputs/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.tracking import mlflow_store

DATA = "digits"
DEMO_IW_SAMPLES = 500


@dataclass
class DemoResult:
    tracking_uri: str
    run_id: str
    model_uri: str
    aliases: tuple[str, ...]
    latent_dir: str
    rows: int
    images: list[str]
    metrics: dict[str, float]
    seconds: float


def run_demo(
    out_dir: str | Path = "outputs",
    epochs: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    say: Callable[[str], None] = print,
    iw_samples: int = DEMO_IW_SAMPLES,
) -> DemoResult:
    from pipeline.config.job import load_job_config
    from pipeline.inference.encode import encode_dataset
    from pipeline.inference.evaluate import evaluate_model
    from pipeline.inference.sample_grid import write_grid
    from pipeline.train.trainer import run_training

    start = time.perf_counter()
    out = Path(out_dir).absolute()
    uri = mlflow_store.configure()
    overrides = [f"train.epochs={epochs}"] if epochs is not None else []
    cfg = load_job_config(DATA, overrides)
    say(f"[1/4] training on {DATA} (MLflow store: {uri})")
    trained = run_training(cfg, progress=progress)
    model_uri = f"models:/{trained.model_name}/{trained.version}"
    say(f"[2/4] encoding every row of {DATA} with {model_uri}")
    encoded = encode_dataset(model_uri, DATA, out / f"{DATA}-latent", overwrite=True)
    say(f"[3/4] evaluating on the test split (IS-NLL with {iw_samples} samples)")
    evaluated = evaluate_model(model_uri, DATA, iw_samples=iw_samples)
    say("[4/4] drawing prior samples and reconstructions")
    images = [
        write_grid(model_uri, out / f"{DATA}-prior.png", n=64).out,
        write_grid(model_uri, out / f"{DATA}-reconstructions.png", n=16, reconstruct_data=DATA).out,
    ]
    return DemoResult(
        uri, trained.run_id, model_uri, trained.aliases, encoded.out, encoded.rows, images,
        _plain(evaluated.metrics), time.perf_counter() - start,
    )  # fmt: skip


def _plain(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}
