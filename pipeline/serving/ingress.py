"""How HTTP reaches the replicas of ``vaepipe serve``: through Serve's proxy, or straight in.

Serve's default path is client → proxy actor → (Ray actor call) → replica: two Python
processes handle every request. ``bench/serve.py`` on a 2-core host (MNIST model, 16 clients)
measured 2.6-3.5 ms of proxy CPU plus 2.6-3.5 ms of replica CPU per request, where a plain ASGI
app with the same model and micro-batching spends 0.3-0.4 ms: 0.13-0.16× its requests/s.

Serve's direct ingress (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``, Ray ≥ 2.55) lets the replica
serve HTTP itself: 0.4-0.47 ms per request, 0.9× the plain app at 16 clients, 0.77× at 32
(with orjson for the JSON since: 0.28 ms, 0.96× and 0.87×).
Its settings are read by Serve's controller and replicas when they start, so ``vaepipe serve``
can only use it on a Ray it starts itself (no ``RAY_ADDRESS``). There, with one replica, the
replica listens on ``--port`` and Serve's (then idle) proxy on a spare loopback port. Several
replicas would each need a port of their own and a balancer in front (Serve's HAProxy mode), so
with several, with autoscaling, or on a cluster, the proxy answers on ``--port``.
"""

from __future__ import annotations

import os

AUTO, PROXY = "auto", "proxy"
CHOICES = (AUTO, PROXY)


def direct(ingress: str, replicas: int | None) -> bool:
    """Whether the replica itself answers on ``--port`` (see the module docstring)."""
    return ingress == AUTO and replicas == 1 and not os.environ.get("RAY_ADDRESS")


def direct_env(port: int) -> dict[str, str]:
    """Ray Serve settings for direct ingress with the one replica's HTTP port ``port``."""
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        # Serve picks a replica's port from [MIN, MAX): exactly ``port``.
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),
        # Serve holds a stopping replica open 30 s so a balancer can drop it; there is none.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
    }
