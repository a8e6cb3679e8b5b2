"""Item 6 of the reliability tier: a corrupt or missing latest checkpoint, through a real Ray
Train restart.

Rank 0 breaks checkpoints and SIGKILLs itself (``fault_hooks.BreakCheckpointsAndDie``); Ray
Train restarts the worker group, whose restore must fall back to the newest checkpoint that is
still good — never silently to epoch 0 — or, when none is, fail with one line naming the run
folder, the run FAILED and nothing registered. One local Ray for the module, one worker, tiny
model, 300 rows per split; each test its own MLflow server (PostgreSQL) and storage.
"""

from __future__ import annotations

import fault_hooks
import pytest
from hooked_training import cli_with_hook, tiny_options
from mlflow import MlflowClient

from pipeline.config.job import load_job_config
from pipeline.train.trainer import run_training

pytestmark = [pytest.mark.reliability, pytest.mark.ray]

EXPERIMENT = "checkpoint-faults"


def _options(tmp_path, name: str, *extra: str) -> list[str]:
    return tiny_options(tmp_path, name, EXPERIMENT, 1, *extra)


def _hook(tmp_path, name: str, uri: str, *breaks: tuple[int, str]):
    folder = tmp_path / "faults"
    folder.mkdir()
    fault_hooks.by_value()
    run_dir = str(tmp_path / "ray_results" / name)
    return folder, fault_hooks.BreakCheckpointsAndDie(str(folder), run_dir, breaks, uri)


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """Every logged step of ``key``, duplicates kept, in step order."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_deleted_and_corrupt_latest_checkpoints_fall_back_to_the_previous_good_one(
    ray_local, tracking_server, tmp_path
):
    # Once epoch 3 is checkpointed, its folder is deleted (the checkpoint Ray would hand the
    # restarted group) and epoch 2's state.pt gets one flipped byte (it still unpickles: only
    # its digest tells); then rank 0 dies. One restart shows both: epoch 1's checkpoint it is.
    name = "fallback"
    cfg = load_job_config("digits", _options(tmp_path, name, "train.epochs=3"))
    folder, hook = _hook(tmp_path, name, tracking_server.uri, (2, "delete,flip"))
    result = run_training(cfg, hooks=[hook])

    print((folder / "broke-2").read_text().strip())
    # Two worker starts: fresh, then after epoch 1 — never from epoch 0 again.
    assert (folder / "starts").read_text().split() == ["0", "1"]
    assert [h["epoch"] for h in result.history] == [2.0, 3.0]
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    assert client.get_run(result.run_id).info.status == "FINISHED"
    assert _steps(client, result.run_id, "epoch") == [1, 2, 3]
    assert _steps(client, result.run_id, "val/neg_elbo") == [1, 2, 3]
    versions = client.search_model_versions(f"name = '{cfg.tracking.model_name}'")
    assert [(v.version, v.run_id) for v in versions] == [("1", result.run_id)]


def test_no_usable_checkpoint_fails_in_one_line_naming_the_run_folder(
    ray_local, tracking_server, tmp_path, monkeypatch, capfd
):
    name = "unusable"
    options = _options(tmp_path, name, "train.epochs=2", "train.max_failures=1")
    sets = [arg for option in options for arg in ("--set", option)]
    folder, hook = _hook(tmp_path, name, tracking_server.uri, (0, "truncate"))
    code = cli_with_hook(monkeypatch, hook, "train", "--config", "digits", *sets)

    err = capfd.readouterr().err
    print(f"stderr: {err.strip()!r}")
    assert (folder / "broke-0").exists()
    assert code == 2, err
    run_dir = tmp_path / "ray_results" / name
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # progress lines come before it
    assert last.startswith(f"vaepipe: error: run directory {run_dir} has checkpoints but none")
    assert "refusing to restart from epoch 0" in last
    assert f"{run_dir}/epoch_00001-" in last  # the unusable checkpoint, named
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
    assert run.info.status == "FAILED"
    assert client.search_model_versions(f"name = '{name}-vae'") == []
