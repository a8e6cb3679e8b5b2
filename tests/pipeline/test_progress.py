"""The driver relays every epoch's progress from MLflow, also when several end between polls."""

from __future__ import annotations

from mlflow import MlflowClient

from pipeline.tracking import mlflow_store
from pipeline.train.trainer import _relay_progress


def test_every_epoch_is_relayed_once_even_between_polls():
    mlflow_store.configure()
    client = MlflowClient()
    run_id = client.create_run(mlflow_store.experiment_id("progress")).info.run_id
    for epoch in (1, 2, 3):
        for key, value in {
            "epoch": epoch,
            "train/loss": 10.0 - epoch,
            "samples_per_s": 5.0,
        }.items():
            client.log_metric(run_id, key, float(value), step=epoch)
    seen_epochs: list[float] = []
    seen = _relay_progress(run_id, 0.0, lambda m: seen_epochs.append(m["epoch"]))
    assert seen == 3.0
    assert seen_epochs == [1.0, 2.0, 3.0]
    assert _relay_progress(run_id, seen, lambda m: seen_epochs.append(m["epoch"])) == 3.0
    assert seen_epochs == [1.0, 2.0, 3.0]  # nothing new, nothing repeated
    client.set_terminated(run_id)
