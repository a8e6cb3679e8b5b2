"""Rank 0's MLflow hook against a real (SQLite) store, without Ray: each epoch logged once."""

from __future__ import annotations

from types import SimpleNamespace

from mlflow import MlflowClient

from pipeline.train.mlflow_hook import MlflowEpochLogging


def test_a_restarted_rank_0_sends_the_checkpointed_epochs_the_run_lacks(mlflow_tmp_store):
    # The failed attempt checkpointed epochs 1 and 2 but died with epoch 2's write in flight.
    client = MlflowClient(mlflow_tmp_store)
    run_id = client.create_run(client.create_experiment("hook")).info.run_id
    client.log_metric(run_id, "epoch", 1.0, step=1)
    checkpointed = [{"epoch": 1.0, "val/neg_elbo": 9.0}, {"epoch": 2.0, "val/neg_elbo": 8.0}]
    loop = SimpleNamespace(rank=0, epoch_metrics=checkpointed)

    hook = MlflowEpochLogging(run_id, mlflow_tmp_store)
    hook.setup(loop)
    hook.teardown(loop)  # sends everything queued

    def steps(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))

    assert steps("epoch") == [(1, 1.0), (2, 2.0)]  # epoch 1 not again, epoch 2 not lost
    assert steps("val/neg_elbo") == [(2, 8.0)]  # an epoch's batch is sent whole or not at all
