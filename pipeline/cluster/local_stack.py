"""A real Ray head (token auth) and a real MLflow server (basic auth) on 127.0.0.1, for dev and e2e.

``start(root)`` creates everything under ``root``: a private ``HOME`` (Ray keeps its token in
``$HOME/.ray/auth_token``), a short Ray temp dir, the MLflow database (SQLite, unless a
``--backend-store-uri`` such as ``postgresql://...`` is given) and artifact dir, logs,
and ``state.json`` with pids, ports, addresses and the token path. ``stop(root)`` ends exactly
those processes (see ``stack_processes``) and checks that none is left.

    python -m pipeline.cluster.local_stack start [--dir DIR] [--num-cpus N] [--backend-store-uri U]
    python -m pipeline.cluster.local_stack add-node [--dir DIR] [--num-cpus N]
    python -m pipeline.cluster.local_stack env|status|stop [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.cluster import mlflow_auth, secrets_files
from pipeline.cluster import stack_processes as procs
from pipeline.errors import UserError

DEFAULT_DIR = Path(".vaepipe/stack")
STATE_FILE = "state.json"
READY_TIMEOUT_S = 180.0
# Variables of the caller that must not leak into the servers: they would point the head at
# another cluster or store, or turn token auth off.
_DROPPED_PREFIXES = ("RAY_", "MLFLOW_", "VAEPIPE_")


@dataclass
class RayNode:
    """One ``ray start --block`` process (leader of its own process group)."""

    pid: int
    temp_dir: str
    num_cpus: int
    head: bool


@dataclass
class StackState:
    root: str
    marker: str
    home: str
    token_path: str
    ray_address: str  # GCS address, for `ray start --address` and ray.init
    dashboard_url: str  # Jobs API address, for `vaepipe submit --address`
    mlflow_uri: str
    mlflow_pid: int
    nodes: list[RayNode] = field(default_factory=list)
    mlflow_auth: dict[str, str] = field(default_factory=dict)  # MlflowAuth fields

    def auth(self) -> mlflow_auth.MlflowAuth:
        return mlflow_auth.MlflowAuth(**self.mlflow_auth)

    def env(self) -> dict[str, str]:
        """What a client needs to use this stack (the MLflow admin's credentials included)."""
        return {
            "RAY_ADDRESS": self.dashboard_url,
            "RAY_AUTH_TOKEN_PATH": self.token_path,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            **self.auth().client_env(),
        }

    def pids(self) -> list[int]:
        return [self.mlflow_pid, *(n.pid for n in self.nodes)]


def save_state(state: StackState) -> None:
    path = Path(state.root) / STATE_FILE
    path.write_text(json.dumps(asdict(state), indent=2) + "\n")


def load_state(root: Path) -> StackState:
    path = Path(root) / STATE_FILE
    if not path.exists():
        raise UserError(f"no local stack state at {path} (start one with `local_stack.sh start`)")
    raw = json.loads(path.read_text())
    raw["nodes"] = [RayNode(**n) for n in raw["nodes"]]
    return StackState(**raw)


def _bin(name: str) -> str:
    """The ``ray``/``mlflow`` executable installed beside this Python."""
    return str(Path(sys.executable).parent / name)


def _server_env(root: Path, marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(root / "home"),
        TMPDIR=str(tmp),
        # Job entrypoints run `python ...`: make that this environment's Python.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
        # MLflow's GenAI job runner (huey workers) is not needed here and costs CPU.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    env[procs.MARKER_VAR] = marker
    return env


def _write_token(home: Path) -> Path:
    return secrets_files.write_private(home / ".ray" / "auth_token", secrets_files.new_secret())


def _short_temp_dir(prefix: str) -> str:
    # Ray puts Unix sockets under its temp dir; their paths must stay under 107 bytes.
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def _ray_ports() -> list[str]:
    """Every fixed-default Ray port, chosen free, so the stack never collides with another Ray."""
    flags = [
        "--ray-client-server-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
        "--node-manager-port",
        "--object-manager-port",
    ]
    return [part for flag in flags for part in (flag, str(procs.free_port()))]


def _start_head(
    root: Path, env: dict[str, str], num_cpus: int, system_config: dict | None
) -> tuple[RayNode, str, str]:
    gcs_port, dash_port = procs.free_port(), procs.free_port()
    overrides = ["--system-config", json.dumps(system_config)] if system_config else []
    temp_dir = _short_temp_dir("vp_head_")
    cmd = [
        _bin("ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dash_port), "--temp-dir", temp_dir,
        "--num-cpus", str(num_cpus), "--object-store-memory", str(300 * 1024**2),
        *_ray_ports(), *overrides,
    ]  # fmt: skip
    pid = procs.spawn(cmd, env, root / "logs" / "ray-head.log")
    node = RayNode(pid=pid, temp_dir=temp_dir, num_cpus=num_cpus, head=True)
    return node, f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}"


def _start_mlflow(
    root: Path, env: dict[str, str], backend: str | None, auth: mlflow_auth.MlflowAuth
) -> tuple[int, str]:
    port = procs.free_port()
    cmd = [
        _bin("mlflow"), "server",
        "--backend-store-uri", backend or f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "mlartifacts"),
        "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        *mlflow_auth.server_args(port),
    ]  # fmt: skip
    pid = procs.spawn(cmd, env | auth.server_env(), root / "logs" / "mlflow.log")
    return pid, f"http://127.0.0.1:{port}"


def _http_ok(url: str, token: str | None = None) -> bool:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback)
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(what: str, url: str, pid: int, log: Path, token: str | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if _http_ok(url, token):
            return
        if not procs.is_alive(pid):
            raise UserError(f"{what} exited during start; see {log}")
        time.sleep(0.5)
    raise UserError(f"{what} not ready at {url} after {READY_TIMEOUT_S:.0f}s; see {log}")


def _wait_nodes(state: StackState, count: int) -> None:
    """Wait until the head reports ``count`` alive nodes."""
    token = Path(state.token_path).read_text().strip()
    url = f"{state.dashboard_url}/nodes?view=summary"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if _alive_node_count(url, token) >= count:
            return
        time.sleep(1.0)
    raise UserError(f"Ray cluster did not reach {count} nodes; see {state.root}/logs")


def _alive_node_count(url: str, token: str) -> int:
    return len(_alive_raylets(url, token))


def _alive_raylets(url: str, token: str) -> list[dict]:
    """The head's view of every alive raylet (empty while it cannot answer)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback)
            summary = json.load(resp)["data"]["summary"]
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        return []
    raylets = (n.get("raylet", {}) for n in summary)
    return [r for r in raylets if r.get("state") == "ALIVE"]


class NodeExited(UserError):
    """A node's ``ray start`` ended before the head saw it alive."""


# A Ray C++ log line at level E (error) or F (fatal): "[date time,ms E pid tid] file.cc:N: ..."
_RAY_ERROR_LINE = re.compile(r"^\[[^\]]* [EF] \d+ \d+\] ")


def _exit_reason(state: StackState, node: RayNode) -> str:
    """The last error a dead node logged: its raylet's, else its ``ray start``'s last line."""
    for raylet_log in sorted(Path(node.temp_dir).glob("session_*/logs/raylet.out")):
        errors = [line for line in _lines(raylet_log) if _RAY_ERROR_LINE.match(line)]
        if errors:
            return errors[-1][:300]
    start_log = _lines(_node_log(Path(state.root), node.temp_dir))
    return start_log[-1][:300] if start_log else "it logged no reason"


def _node_log(root: Path, temp_dir: str) -> Path:
    """A node's ``ray start`` log, named by its own temp dir (a replacement gets a new one)."""
    return root / "logs" / f"ray-node-{Path(temp_dir).name}.log"


def _lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return []


def node_id(state: StackState, node: RayNode) -> str:
    """``node``'s Ray node id, once the head sees it alive (its raylet's socket is in the
    node's own temp dir: nodes on one host are told apart by it, not by their address)."""
    token = Path(state.token_path).read_text().strip()
    url = f"{state.dashboard_url}/nodes?view=summary"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for raylet in _alive_raylets(url, token):
            if raylet.get("rayletSocketName", "").startswith(f"{node.temp_dir}/"):
                return str(raylet["nodeId"])
        if not procs.is_alive(node.pid):
            raise NodeExited(
                f"Ray node {node.pid} exited while joining ({_exit_reason(state, node)}); "
                f"see {state.root}/logs"
            )
        time.sleep(0.5)
    raise UserError(f"Ray node {node.pid} did not join the head; see {state.root}/logs")


def start(
    root: Path = DEFAULT_DIR,
    num_cpus: int = 4,
    backend_store_uri: str | None = None,
    system_config: dict | None = None,
) -> StackState:
    """Start the Ray head and the MLflow server under ``root``; returns the saved state.

    ``backend_store_uri``: the MLflow server's database (default: SQLite under ``root``).
    ``system_config``: Ray's internal settings for the cluster (``ray start --system-config``),
    e.g. faster node health checks for tests that kill a node.
    """
    root = Path(root).resolve()
    if (root / STATE_FILE).exists():
        raise UserError(f"a local stack is already recorded in {root}; stop it first")
    marker = secrets.token_hex(8)
    env = _server_env(root, marker)
    token_path = _write_token(Path(env["HOME"]))
    auth = mlflow_auth.prepare(root)
    # Ray nodes carry the MLflow credentials: jobs log with the cluster's own, not forwarded ones.
    env.update(auth.client_env())
    mlflow_pid, mlflow_uri = _start_mlflow(root, env, backend_store_uri, auth)
    head, gcs, dashboard = _start_head(root, env, num_cpus, system_config)
    state = StackState(
        root=str(root), marker=marker, home=env["HOME"], token_path=str(token_path),
        ray_address=gcs, dashboard_url=dashboard, mlflow_uri=mlflow_uri,
        mlflow_pid=mlflow_pid, nodes=[head], mlflow_auth=asdict(auth),
    )  # fmt: skip
    save_state(state)  # before waiting, so a failed start can still be stopped
    try:
        token = token_path.read_text()
        _wait_ready("Ray head", f"{dashboard}/api/version", head.pid, root / "logs", token)
        _wait_nodes(state, 1)
        _wait_ready("MLflow server", f"{mlflow_uri}/health", mlflow_pid, root / "logs")
    except BaseException:
        stop(root)
        raise
    return state


def add_node(root: Path = DEFAULT_DIR, num_cpus: int = 2) -> RayNode:
    """Join one more Ray node (own temp dir, same token) to the stack's head. A node that dies
    while joining is tried once more, on fresh ports and a fresh temp dir."""
    try:
        return _join_node(root, num_cpus)
    except NodeExited as first:
        print(f"{first}; trying once more", file=sys.stderr)
        return _join_node(root, num_cpus)


def _join_node(root: Path, num_cpus: int) -> RayNode:
    state = load_state(root)
    env = _server_env(Path(state.root), state.marker) | state.auth().client_env()
    temp_dir = _short_temp_dir("vp_node_")
    cmd = [
        _bin("ray"), "start", "--block", "--disable-usage-stats",
        "--address", state.ray_address, "--node-ip-address", "127.0.0.1",
        "--temp-dir", temp_dir, "--num-cpus", str(num_cpus),
        "--object-store-memory", str(200 * 1024**2), *_ray_ports(),
    ]  # fmt: skip
    log = _node_log(Path(state.root), temp_dir)
    node = RayNode(pid=procs.spawn(cmd, env, log), temp_dir=temp_dir, num_cpus=num_cpus,
                   head=False)  # fmt: skip
    state.nodes.append(node)
    save_state(state)
    try:
        # This node, not a count: a killed node stays alive to the head until its health
        # checks fail.
        node_id(state, node)
    except NodeExited:
        kill_node(root, node)  # whatever of it still runs, and its place in the state
        raise
    return node


def kill_node(root: Path, node: RayNode) -> list[int]:
    """Kill one worker node abruptly, a simulated node loss: SIGKILL to its ``ray start``
    process group and to every process naming its temp dir (workers, whatever group they are
    in), all at once; the node leaves the state. Returns the pids killed."""
    import signal

    if node.head:
        raise UserError("kill_node kills added nodes, not the head (stop the stack instead)")
    pids = procs.pids_of_node(node.pid, node.temp_dir)
    procs.signal_group(node.pid, signal.SIGKILL)
    procs.signal_pids(pids, signal.SIGKILL)
    procs.reap_child(node.pid)
    deadline = time.monotonic() + 10.0
    while procs.pids_of_node(node.pid, node.temp_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = procs.pids_of_node(node.pid, node.temp_dir)
    if left:
        raise UserError(f"processes of the killed node still alive: {left}")
    state = load_state(root)
    state.nodes = [n for n in state.nodes if n.pid != node.pid]
    save_state(state)
    shutil.rmtree(node.temp_dir, ignore_errors=True)
    return pids


def stop(root: Path = DEFAULT_DIR) -> None:
    """Stop every process the stack started; raises if any survives."""
    state = load_state(root)
    left = procs.terminate(state.pids(), state.marker)
    for pid in state.pids():
        procs.reap_child(pid)
    if left:
        raise UserError(f"local stack processes still alive after SIGKILL: {left}")
    for node in state.nodes:
        shutil.rmtree(node.temp_dir, ignore_errors=True)
    (Path(state.root) / STATE_FILE).unlink()


def _print_env(state: StackState) -> None:
    for key, value in state.env().items():
        print(f"export {key}={value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_stack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status", "env", "add-node"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="stack directory")
    parser.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the node")
    parser.add_argument(
        "--backend-store-uri", help="MLflow's database (default: SQLite in the stack dir)"
    )
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"local_stack: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.action == "start":
        _print_env(start(args.dir, args.num_cpus or 4, args.backend_store_uri))
    elif args.action == "add-node":
        node = add_node(args.dir, args.num_cpus or 2)
        print(f"node pid {node.pid} joined")
    elif args.action == "stop":
        stop(args.dir)
        print("local stack stopped; no process left")
    elif args.action == "env":
        _print_env(load_state(args.dir))
    else:
        state = load_state(args.dir)
        alive = {pid: procs.is_alive(pid) for pid in state.pids()}
        print(json.dumps({"state": asdict(state), "alive": alive}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
