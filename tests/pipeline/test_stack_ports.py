"""The local stack's port choice and its report of a node that died while joining."""

from __future__ import annotations

import socket
from pathlib import Path

from pipeline.cluster import local_stack
from pipeline.cluster import stack_processes as procs


def test_free_ports_avoid_the_ephemeral_range_and_ray_worker_ports_and_never_repeat():
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [procs.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(procs.RAY_WORKER_PORTS_END <= p < max(ephemeral_start, 30_000) for p in ports)


def test_a_port_in_use_is_not_handed_out():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        assert not procs._bindable(taken)


def _stack_with_node(tmp_path: Path) -> tuple[local_stack.StackState, local_stack.RayNode]:
    node = local_stack.RayNode(pid=1, temp_dir=str(tmp_path / "vp_node_x"), num_cpus=1, head=False)
    state = local_stack.StackState(
        root=str(tmp_path), marker="m", home="h", token_path="t", ray_address="a",
        dashboard_url="d", mlflow_uri="u", mlflow_pid=1,
    )  # fmt: skip
    return state, node


def test_exit_reason_quotes_the_raylets_last_error(tmp_path):
    state, node = _stack_with_node(tmp_path)
    logs = Path(node.temp_dir) / "session_2026" / "logs"
    logs.mkdir(parents=True)
    (logs / "raylet.out").write_text(
        "[2026-12-06 03:57:35,322 I 11 11] main.cc:10: starting\n"
        "[2026-12-06 03:57:35,400 E 11 11] grpc_server.cc:92: Failed to bind port 40001\n"
        "[2026-12-06 03:57:35,401 I 11 11] main.cc:99: exiting\n"
    )
    assert "Failed to bind port 40001" in local_stack._exit_reason(state, node)


def test_exit_reason_falls_back_to_the_ray_start_log(tmp_path):
    state, node = _stack_with_node(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "ray-node-vp_node_x.log").write_text(
        "Ray runtime started.\nSome Ray subprocesses exited unexpectedly: raylet\n\n"
    )
    reason = local_stack._exit_reason(state, node)
    assert reason == "Some Ray subprocesses exited unexpectedly: raylet"
