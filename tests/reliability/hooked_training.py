"""Tiny training jobs with a fault hook in their loop, for the worker and checkpoint tests."""

from __future__ import annotations

import signal
from pathlib import Path

import fault_hooks

from pipeline.train import trainer


def tiny_options(
    tmp_path: Path, name: str, experiment: str, workers: int, *extra: str
) -> list[str]:
    """``--set`` values of a tiny digits job named ``name``: 300 rows per split, no image grids,
    a 10-sample IS-NLL, no early stopping; its own storage under ``tmp_path``."""
    return [
        "data.limit=300",
        "model.hidden_sizes=[32]",
        "model.latent_dim=4",
        "train.nll_samples=10",
        "train.log_images=false",
        "train.early_stopping_patience=null",
        f"scaling.workers={workers}",
        f"tracking.storage_path={tmp_path / 'ray_results'}",
        f"tracking.experiment={experiment}",
        f"tracking.model_name={name}-vae",
        f"tracking.run_name={name}",
        *extra,
    ]


def cli_with_hook(monkeypatch, hook, *args: str) -> int:
    """``vaepipe ARGS`` in this process (its module Ray), the fault ``hook`` in its training."""
    from jobs import cli

    fault_hooks.by_value()
    real = trainer.run_training
    monkeypatch.setattr(trainer, "run_training", lambda cfg, **kw: real(cfg, hooks=[hook], **kw))
    for name in ("VAEPIPE_VERBOSE", "MLFLOW_LOGGING_LEVEL"):  # the CLI sets them: restored after
        monkeypatch.setenv(name, "")
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        return cli.main(list(args))
    finally:
        signal.signal(signal.SIGTERM, sigterm)
