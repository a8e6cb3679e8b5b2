"""A simulated two-node cluster on loopback: training places its workers on both nodes.

Two `ray start` nodes (head + added node), each with its own temp dir, both with token auth.
Each node has 3 logical CPUs and each of the 2 workers asks for 2, so no node can hold both:
Ray must spread them (1 CPU per node stays free for Ray Data), and the test checks on which
nodes the RayTrainWorker actors ran.

Opt-in (VAEPIPE_E2E_MULTINODE=1): a second Ray node plus a 2-rank DDP run takes minutes on the
2-core CI machine, beyond the e2e tier's budget.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
from cluster_helpers import client_env, needs_modules, start_stack, stop_stack, vaepipe

from pipeline.cluster import local_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("VAEPIPE_E2E_MULTINODE") != "1",
        reason="multi-node e2e is opt-in (VAEPIPE_E2E_MULTINODE=1): too slow for 2-core CI",
    ),
]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, postgres):
    state = start_stack(tmp_path_factory.mktemp("stack2"), num_cpus=3, postgres=postgres)
    try:
        local_stack.add_node(Path(state.root), num_cpus=3)
        yield local_stack.load_state(Path(state.root))
    finally:
        stop_stack(local_stack.load_state(Path(state.root)))


def train_worker_nodes(state: local_stack.StackState) -> set[str]:
    """Node ids of every RayTrainWorker actor the cluster has seen (alive or dead)."""
    token = Path(state.token_path).read_text().strip()
    url = f"{state.dashboard_url}/api/v0/actors?detail=1&limit=10000"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
        actors = json.load(resp)["data"]["result"]["result"]
    return {a["node_id"] for a in actors if a["class_name"] == "RayTrainWorker"}


def test_training_uses_both_nodes(two_nodes, mnist_subset, tmp_path):
    needs_modules("jobs.train", "pipeline.train.trainer", "pipeline.data.ingest")
    assert len(two_nodes.nodes) == 2
    env = client_env(two_nodes, HOME=str(tmp_path / "home"))
    proc = vaepipe(
        env, "submit", "--", "train", "--data", str(mnist_subset), "--epochs", "1",
        "--workers", "2", "--set", "scaling.cpus_per_worker=2",
        "--model-name", "e2e_multinode", "--experiment", "e2e", "--json",
        timeout=420,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert len(train_worker_nodes(two_nodes)) == 2
