"""The two servers of a registered model, for real: ``mlflow models serve`` answers as
``vaepipe encode`` does on the same rows; ``vaepipe serve`` answers the same, refuses bad
requests with one-line 4xx errors and keeps serving, and follows ``champion`` when it moves
without dropping a request.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from serving_helpers import REPO_ROOT, Server, free_port, get, mlflow_serve_args, post, vaepipe_args

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.tracking import mlflow_store, registry
from vae_core.config import ModelConfig
from vae_core.model import VAE

pytestmark = pytest.mark.e2e

SHAPE = (1, 8, 8)
PRE = Preprocessor(XLayout(SHAPE, "uint8")).to_dict()
NAME = "serve-tiny"
URI = f"models:/{NAME}@champion"


def tiny_vae(seed: int) -> VAE:
    torch.manual_seed(seed)
    return VAE(ModelConfig(input_shape=SHAPE, latent_dim=3, hidden_sizes=(16,))).eval()


def rows(n: int, seed: int) -> np.ndarray:
    """(n, 8, 8) uint8 samples, as a digits-like source stores them."""
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE[1:]), dtype=np.uint8)


def flat(x: np.ndarray) -> list:
    return x.reshape(len(x), -1).tolist()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module, holding version 1 of NAME as champion."""
    root = tmp_path_factory.mktemp("serve_store")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        VAEPIPE_ARTIFACT_ROOT=str(root / "mlartifacts"),
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false",
        # mlflow models serve execs `uvicorn`: the venv's bin must be on PATH.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    with in_store(env):
        register(tiny_vae(0), 10.0)
        threshold = registry.load_vae(URI).threshold
    return {"env": env, "threshold": threshold}


@contextmanager
def in_store(env: dict[str, str]) -> Iterator[None]:
    """This process's MLflow client on the module's store (the autouse fixture's is per test)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MLFLOW_TRACKING_URI", "VAEPIPE_ARTIFACT_ROOT"):
            mp.setenv(key, env[key])
        yield


def register(vae: VAE, val_loss: float) -> registry.RegisteredVersion:
    mlflow_store.configure()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id("serve")):
        return registry.log_vae(vae, PRE, NAME, val_loss, "npy", val_rows=rows(300, seed=1))


def expected_mu(vae: VAE, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return vae.encode(torch.from_numpy(x.astype(np.float32) / 255.0).view(-1, *SHAPE))[
            0
        ].numpy()


def test_mlflow_models_serve_answers_as_encode_does(store, tmp_path):
    x = rows(40, seed=2)
    np.save(tmp_path / "rows.npy", x)
    encode = subprocess.run(
        vaepipe_args("encode", "--model", URI, "--data", str(tmp_path / "rows.npy"),
                     "--out", str(tmp_path / "latents")),
        cwd=REPO_ROOT, env=store["env"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert encode.returncode == 0, encode.stderr[-2000:]
    table = pq.read_table(tmp_path / "latents").sort_by("id")
    port = free_port()
    server = Server(mlflow_serve_args(URI, port), store["env"], tmp_path / "mlflow-serve.log")
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/ping")
        status, answer = post(url, {"inputs": flat(x)})
        assert status == 200, answer
        bad_status, bad = post(url, {"inputs": [[1] * 63]})
        assert 400 <= bad_status < 500, bad
    finally:
        server.stop()
    got = answer["predictions"]
    for key in ("mu", "logvar"):
        np.testing.assert_allclose(
            np.array([p[key] for p in got]), np.stack(table.column(key).to_numpy(False)), atol=1e-5
        )
    # One-sample estimates with different draws: equal within the sampling noise.
    score = np.array([p["score"] for p in got])
    np.testing.assert_allclose(score, table.column("score").to_numpy(), rtol=0.1)
    assert [p["is_anomaly"] for p in got] == list(score > store["threshold"])


BAD_REQUESTS = [
    (b"not json", 400, "not JSON"),
    (b'{"rows": [[1]]}', 400, "inputs"),
    (b'{"inputs": []}', 400, "no rows"),
    (b'{"inputs": [[1, 2, 3]]}', 400, "64 values"),
    (b'{"inputs": [[1, 2], [3]]}', 400, "same length"),
    (b'{"inputs": [["a"]]}', 400, "numbers"),
    (('{"inputs": [[NaN' + ", 0" * 63 + "]]}").encode(), 400, "NaN"),
    (('{"inputs": [[0.5' + ", 0" * 63 + "]]}").encode(), 400, "uint8"),
    (('{"inputs": [[300' + ", 0" * 63 + "]]}").encode(), 400, "0..255"),
    (('{"inputs": ' + str([[0] * 64] * 1025) + "}").encode(), 413, "at most"),
    (b'{"inputs": [[0]], "params": {"threshold": "high"}}', 400, "threshold"),
]


def test_vaepipe_serve_answers_refuses_and_follows_the_alias(store, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = vaepipe_args("serve", "--model", URI, "--port", str(port), "--poll-s", "1")
    server = Server(args, store["env"], tmp_path / "vaepipe-serve.log")
    try:
        server.wait_ready(f"{base}/readyz")
        assert get(f"{base}/healthz") == 200
        x = rows(5, seed=3)
        status, answer = post(base + "/", {"inputs": flat(x)})
        assert status == 200 and answer["model_version"] == "1", answer
        np.testing.assert_allclose(
            np.array([p["mu"] for p in answer["predictions"]]),
            expected_mu(tiny_vae(0), x),
            atol=1e-5,
        )
        for body, code, words in BAD_REQUESTS:
            status, err = post(base + "/", body)
            assert status == code and words in err["error"] and "\n" not in err["error"], body[:40]
            assert post(base + "/", {"inputs": flat(x[:1])})[0] == 200  # still serving
        low = post(base + "/", {"inputs": flat(x), "params": {"threshold": -1.0}})[1]
        assert all(p["is_anomaly"] for p in low["predictions"])

        answers, stop, client = follow_while(base, x[:2])
        with in_store(store["env"]):
            register(tiny_vae(1), 5.0)  # better: champion moves to version 2
        moved = wait_for_version(answers, "2")
        stop.set()
        client.join(30)
        assert moved, "replica never picked up version 2"
    finally:
        assert server.stop() == 0, server.tail()
    statuses = {status for status, _ in answers}
    assert statuses == {200}, statuses  # no request dropped across the swap
    versions = [a["model_version"] for _, a in answers]
    assert versions == sorted(versions) and set(versions) == {"1", "2"}
    mu2 = np.array([p["mu"] for p in answers[-1][1]["predictions"]])
    np.testing.assert_allclose(mu2, expected_mu(tiny_vae(1), x[:2]), atol=1e-5)


def follow_while(base: str, x: np.ndarray):
    """A client sending requests back to back until told to stop; answers in order."""
    answers: list = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set() and len(answers) < 5000:
            answers.append(post(base + "/", {"inputs": flat(x)}))

    client = threading.Thread(target=loop, daemon=True)
    client.start()
    return answers, stop, client


def wait_for_version(answers: list, version: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers and answers[-1][1].get("model_version") == version:
            time.sleep(0.5)  # a few more answers on the new version
            return True
        time.sleep(0.2)
    return False
