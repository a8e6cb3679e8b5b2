"""How HTTP reaches the replicas of ``vaepipe serve``: through Serve's proxy, or straight in.

Serve's default path is client → proxy actor → (Ray actor call) → replica: two Python
processes handle every request. ``bench/serve.py`` on a 2-core host (MNIST model, 16 clients)
measured 2.6-3.5 ms of proxy CPU plus 2.6-3.5 ms of replica CPU per request, where a plain ASGI
app with the same model and micro-batching spends 0.3-0.4 ms: 0.13-0.16× its requests/s.

Serve's direct ingress (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``, Ray ≥ 2.55) lets the replica
serve HTTP itself: 0.4-0.47 ms per request, 0.9× the plain app at 16 clients, 0.77× at 32.
With ``serving/batcher.py`` instead of ``@serve.batch`` and ``NoDisconnectWatch`` (below), the
plain app and the old and new replica side by side on a loaded 2-core host, 32 clients, 4
alternating rounds: the new replica at 0.97× the plain app's requests/s (median), the old at 0.75×.
Its settings are read by Serve's controller and replicas when they start, so ``vaepipe serve``
can only use it on a Ray it starts itself (no ``RAY_ADDRESS``). There, with one replica, the
replica listens on ``--port`` and Serve's (then idle) proxy on a spare loopback port. Several
replicas would each need a port of their own and a balancer in front (Serve's HAProxy mode), so
with several, with autoscaling, or on a cluster, the proxy answers on ``--port``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

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
        # Serve's HTTP middleware hook, read by the replica's HTTP server (see NoDisconnectWatch).
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": f"{__name__}:direct_middlewares",
    }


# Serve's request header that turns its disconnect watch off for one request.
_NO_DISCONNECT_WATCH = (b"x-request-disconnect-disabled", b"?1")


class NoDisconnectWatch:
    """ASGI middleware in front of the replica: Serve need not watch requests for the client
    hanging up.

    By default Serve's replica runs every direct-ingress request as a task of its own beside a
    second task that reads the connection until the client disconnects, and waits for the
    first of the two: two tasks and an ``asyncio.wait`` per request, so that a long request can
    be cancelled. A scoring request takes milliseconds and its batch is scored anyway, so there
    is nothing to cancel; with this header Serve awaits the request directly. Measured by
    ``bench/serve.py`` (2 cores, 32 clients): 0.04 ms less replica CPU per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["headers"] = [*scope["headers"], _NO_DISCONNECT_WATCH]
        await self.app(scope, receive, send)


def direct_middlewares() -> list:
    """The middleware list Serve's replica wraps its HTTP app in (``direct_env``)."""
    from starlette.middleware import Middleware

    return [Middleware(NoDisconnectWatch)]
