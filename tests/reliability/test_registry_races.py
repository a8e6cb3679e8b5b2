"""Item 12: the registry under concurrency, on a real PostgreSQL-backed MLflow server.

16 registrations from 8 threads (of one logged model: torch.export itself is not thread-safe)
give 16 distinct READY versions, and ``champion`` ends on the
best validation loss whatever order they finish in. A stale champion write (what a slow racer
of read-compare-write leaves) is corrected by the next registration. That failed or killed
training runs register nothing is held by ``test_run_exit_paths``.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.tracking import mlflow_store, registry
from vae_core.config import ModelConfig
from vae_core.model import VAE

pytestmark = pytest.mark.reliability

SHAPE = (1, 4, 4)
PRE = Preprocessor(XLayout(SHAPE, "uint8")).to_dict()
REGISTRATIONS, THREADS = 16, 8


def _register(name: str, exp_id: str, val_loss: float) -> registry.RegisteredVersion:
    torch.manual_seed(0)
    vae = VAE(ModelConfig(input_shape=SHAPE, latent_dim=2, hidden_sizes=(8,)))
    with mlflow.start_run(experiment_id=exp_id):  # the fluent run stack is per thread
        return registry.log_vae(vae, PRE, name, val_loss, "digits")


def _register_version(name: str, model_uri: str, val_loss: float) -> tuple[str, list[str]]:
    """Register ``model_uri`` as a new version of ``name``, then tag it and settle the aliases
    (what ``log_vae`` does after its export)."""
    version = str(mlflow.register_model(model_uri, name).version)
    return version, registry._set_aliases(name, version, val_loss, "digits", None)


def test_concurrent_registrations_are_distinct_and_crown_the_best(tracking_server):
    # torch.export is not thread-safe ("ProxyTorchDispatchMode slot already occupied"), so the
    # model is exported once; the 16 registrations race on the registry, as separate jobs do.
    mlflow_store.configure()
    logged = _register("race", mlflow_store.experiment_id("races"), 1000.0)
    model_uri = f"models:/{logged.model_id}"
    losses = [100.0 + i for i in range(REGISTRATIONS)]
    random.Random(12).shuffle(losses)  # the best is neither first nor last submitted
    with ThreadPoolExecutor(THREADS) as pool:
        done = list(pool.map(lambda loss: _register_version("race", model_uri, loss), losses))
    client = MlflowClient()
    versions = [v for v in client.search_model_versions("name = 'race'") if v.version != "1"]
    assert sorted(int(v.version) for v in versions) == list(range(2, REGISTRATIONS + 2))
    assert {str(v.status) for v in versions} == {"READY"}
    assert sorted(v for v, _ in done) == sorted(v.version for v in versions)
    champion = client.get_model_version_by_alias("race", registry.CHAMPION)
    assert float(champion.tags[registry.VAL_LOSS_TAG]) == min(losses)
    # An early finisher may have been champion for a moment; the best one always was.
    assert champion.version in [v for v, aliases in done if registry.CHAMPION in aliases]


def test_a_stale_champion_write_is_corrected_by_the_next_registration(tracking_server):
    mlflow_store.configure()
    exp_id = mlflow_store.experiment_id("stale")
    best = _register("stale", exp_id, 1.0)
    worse = _register("stale", exp_id, 5.0)
    client = MlflowClient()
    # A racer that read the champion before `best` existed writes its stale decision last.
    client.set_registered_model_alias("stale", registry.CHAMPION, worse.version)
    third = _register("stale", exp_id, 3.0)  # better than the stale holder, worse than best
    assert registry.CHAMPION not in third.aliases
    champion = client.get_model_version_by_alias("stale", registry.CHAMPION)
    assert champion.version == best.version
