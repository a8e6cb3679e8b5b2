"""The serving contract without servers: rows checked, requests parsed, errors one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.errors import UserError
from pipeline.serving import ingress
from pipeline.serving.app import ServeOptions, deployment_options, options_from_args
from pipeline.serving.http_io import BadRequest, parse_request, predictions
from pipeline.tracking.scorer import RowScorer, Scores, check_rows, threshold_from
from vae_core.config import ModelConfig
from vae_core.model import VAE

PIXELS = Preprocessor(XLayout((1, 2, 2), "uint8"))
FEATURES = Preprocessor(XLayout((3,), "float32"))


def test_rows_take_the_layout_dtype_and_shape():
    x = check_rows([[0, 255, 3, 4]], PIXELS)
    assert x.dtype == np.uint8 and x.shape == (1, 1, 2, 2)
    x = check_rows(np.zeros((2, 1, 2, 2), np.uint8), PIXELS)  # already shaped
    assert x.shape == (2, 1, 2, 2)
    x = check_rows([[1, 2.5, -3e6]], FEATURES)
    assert x.dtype == np.float32 and x.tolist() == [[1.0, 2.5, -3e6]]


BAD_ROWS = [
    (PIXELS, [], "no rows"),
    (PIXELS, [[1, 2, 3]], "4 values"),
    (PIXELS, [[0.5, 0, 0, 0]], "integers"),
    (PIXELS, [[256, 0, 0, 0]], "0..255"),
    (PIXELS, [[-1, 0, 0, 0]], "0..255"),
    (FEATURES, [[np.nan, 0, 0]], "NaN"),
    (FEATURES, [[np.inf, 0, 0]], "NaN or infinity"),
    (FEATURES, np.zeros((1025, 3)), "at most 1024"),
]


@pytest.mark.parametrize("pre,rows,words", BAD_ROWS)
def test_bad_rows_are_one_line_user_errors(pre, rows, words):
    with pytest.raises(UserError, match=words) as info:
        check_rows(rows, pre)
    assert "\n" not in str(info.value)


BAD_BODIES = [
    (b"{", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    (b"[1, 2]", 400, "inputs"),
    (b'{"inputs": 3}', 400, "list of rows"),
    (b'{"inputs": [[1, 2], [3]]}', 400, "same length"),
    (b'{"inputs": [[null, 1, 2, 3]]}', 400, "numbers"),
    (b'{"inputs": [[1, 2, 3, 4]], "params": {"k": 1}}', 400, "threshold"),
    (b'{"inputs": [[1, 2, 3, 4]], "params": {"threshold": true}}', 400, "number"),
    (json.dumps({"inputs": [[0] * 4] * 1025}).encode(), 413, "at most"),
    (b" " * (17 << 20), 413, "bytes"),
]


@pytest.mark.parametrize("body,status,words", BAD_BODIES, ids=lambda v: str(v)[:30])
def test_bad_requests_get_a_status_and_one_line(body, status, words):
    with pytest.raises(BadRequest) as info:
        parse_request(body, PIXELS)
    assert info.value.status == status and words in info.value.message
    assert "\n" not in info.value.message


def test_a_request_and_its_answers():
    parsed = parse_request(b'{"inputs": [[1, 2, 3, 4]], "params": {"threshold": 2}}', PIXELS)
    assert parsed.rows.shape == (1, 1, 2, 2) and parsed.threshold == 2.0
    scores = Scores(np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32), np.array([1.0, 3.0]))
    out = predictions(scores, 2.0)
    assert [p["is_anomaly"] for p in out] == [False, True] and out[0]["mu"] == [1.0] * 3
    assert [p["is_anomaly"] for p in predictions(scores, None)] == [False, False]
    first, second = scores.split([1, 1])
    assert first.score.tolist() == [1.0] and second.score.tolist() == [3.0]


def test_scorer_is_deterministic_and_leaves_the_global_rng_alone():
    import torch

    vae = VAE(ModelConfig(input_shape=(1, 2, 2), latent_dim=2, hidden_sizes=(8,)))
    scorer = RowScorer(vae, PIXELS.to_dict())
    x = check_rows([[0, 255, 3, 4], [9, 9, 9, 9]], PIXELS)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = scorer(x), scorer(x)
    assert torch.rand(1) == before  # the scorer's draws came from its own forked RNG
    np.testing.assert_array_equal(a.score, b.score)
    assert a.mu.shape == (2, 2) and a.score.shape == (2,)
    assert threshold_from(np.arange(101, dtype=np.float32), 0.99) == pytest.approx(99.0)


def test_serve_options_map_to_deployment_options():
    fixed = deployment_options(ServeOptions("models:/m@champion", replicas=2), {"CPU": 2})
    assert fixed["num_replicas"] == 2 and fixed["ray_actor_options"]["num_gpus"] == 0
    auto = deployment_options(
        ServeOptions("models:/m@champion", replicas=None, max_replicas=3), {"CPU": 2, "GPU": 1}
    )
    assert auto["autoscaling_config"]["max_replicas"] == 3 and "num_replicas" not in auto
    assert auto["ray_actor_options"]["num_gpus"] == 1.0  # a GPU cluster: replicas on GPUs
    assert options_from_args({"model": "models:/m@c", "replicas": "auto"}).replicas is None
    with pytest.raises(UserError, match="unknown key"):
        options_from_args({"model": "models:/m@c", "replica": 2})
    with pytest.raises(UserError, match="--max-batch"):
        ServeOptions("models:/m@c", max_batch=0)


def test_one_replica_on_a_local_ray_answers_http_itself(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ingress.direct("auto", 1)
    assert not ingress.direct("auto", 2) and not ingress.direct("auto", None)  # need a balancer
    assert not ingress.direct("proxy", 1)
    env = ingress.direct_env(8123)  # the replica's port range is exactly --port
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] == "8123"
    assert env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] == "8124"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a cluster's settings are its own
    assert not ingress.direct("auto", 1)
    with pytest.raises(UserError, match="--ingress"):
        ServeOptions("models:/m@c", ingress="fast")
