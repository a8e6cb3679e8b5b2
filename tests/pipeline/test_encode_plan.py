"""The actor layout for encode and evaluate, from the cluster's resources (no Ray started)."""

from __future__ import annotations

import os

from pipeline.inference.latent_encoder import plan_encoding


def test_small_single_node_gets_one_actor_reserving_a_fraction():
    plan = plan_encoding({"CPU": 2.0})
    assert plan.actors == 1 and plan.cpus_per_actor == 0.5 and plan.device == "cpu"


def test_each_cpu_node_gets_an_actor_and_the_pool_reserves_at_most_half():
    plan = plan_encoding({"CPU": 8.0}, cpu_nodes=2)
    assert plan.actors == 2
    assert plan.actors * plan.cpus_per_actor <= 4.0


def test_one_cpu_nodes_keep_their_cpu_for_the_read_tasks():
    assert plan_encoding({"CPU": 1.0}).cpus_per_actor == 0.0
    plan = plan_encoding({"CPU": 2.0}, cpu_nodes=2)
    assert plan.actors == 2 and plan.cpus_per_actor == 0.0


def test_big_nodes_get_an_actor_per_eight_cpus():
    assert plan_encoding({"CPU": 64.0}, cpu_nodes=2).actors == 8


def test_gpus_get_one_actor_each_whatever_the_nodes():
    plan = plan_encoding({"CPU": 16.0, "GPU": 2.0}, cpu_nodes=4)
    assert plan.actors == 2 and plan.gpus_per_actor == 1.0 and plan.device == "cuda"


def test_threads_stay_within_this_machines_cores():
    plan = plan_encoding({"CPU": 64.0})
    assert 1 <= plan.threads <= max(1, (os.cpu_count() or 1) - 1)
