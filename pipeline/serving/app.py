"""Start and stop the ``vaepipe serve`` application on local Ray or ``RAY_ADDRESS``.

Replicas: a fixed count, or ``auto`` (Serve's autoscaling between ``min_replicas`` and
``max_replicas``, aiming at ``target_ongoing`` requests per replica). Each replica reserves
``cpus`` CPUs and, when the cluster has GPUs (or ``gpus`` says so), a GPU it scores on.
HTTP binds to 127.0.0.1 unless ``host`` says otherwise; in a cluster an ingress sits in front
(``deploy/kuberay/rayservice.yaml``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pipeline.cluster.ray_session import ensure_ray
from pipeline.cluster.stack_processes import free_port
from pipeline.errors import UserError
from pipeline.serving import ingress
from pipeline.tracking import mlflow_store
from pipeline.tracking.registry import resolve

APP_NAME = "vaepipe"


@dataclass(frozen=True)
class ServeOptions:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int | None = 1  # None: autoscale between min_replicas and max_replicas
    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing: float = 8.0  # requests per replica autoscaling aims at
    max_batch: int = 64  # rows per forward pass
    batch_wait_ms: float = 5.0
    cpus: float = 1.0  # per replica
    gpus: float | None = None  # per replica; None: 1 when the cluster has GPUs, else 0
    threads: int = 1  # torch threads per replica
    poll_s: float = 5.0  # how often replicas check whether the alias moved
    ingress: str = ingress.AUTO  # "proxy": always through Serve's proxy (see serving/ingress.py)

    def __post_init__(self) -> None:
        checks = {
            "--replicas": self.replicas is None or self.replicas >= 1,
            "--min-replicas": self.min_replicas >= 1,
            "--max-replicas": self.max_replicas >= self.min_replicas,
            "--max-batch": self.max_batch >= 1,
            "--batch-wait-ms": self.batch_wait_ms >= 0,
            "--port": 0 < self.port < 65536,
            "--threads": self.threads >= 1,
            "--ingress": self.ingress in ingress.CHOICES,
        }
        bad = [flag for flag, ok in checks.items() if not ok]
        if bad:
            raise UserError(f"serve: invalid value for {', '.join(bad)}")


def deployment_options(opts: ServeOptions, cluster: dict[str, float]) -> dict[str, Any]:
    """Serve deployment options: replicas or autoscaling bounds, resources, queue depth."""
    gpus = opts.gpus if opts.gpus is not None else (1.0 if cluster.get("GPU", 0) > 0 else 0.0)
    env = {"MLFLOW_TRACKING_URI": mlflow_store.tracking_uri()}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    out: dict[str, Any] = {
        "ray_actor_options": {
            "num_cpus": opts.cpus,
            "num_gpus": gpus,
            "runtime_env": {"env_vars": env},
        },
        # Enough requests in a replica for a full batch to form while one is scoring.
        "max_ongoing_requests": max(16, 2 * opts.max_batch),
    }
    if opts.replicas is None:
        out["autoscaling_config"] = {
            "min_replicas": opts.min_replicas,
            "max_replicas": opts.max_replicas,
            "target_ongoing_requests": opts.target_ongoing,
        }
    else:
        out["num_replicas"] = opts.replicas
    return out


def build_app(opts: ServeOptions, cluster: dict[str, float]):
    """The bound Serve application for ``opts`` on a cluster with these resources."""
    from pipeline.serving.deployment import VaeScorer

    options = deployment_options(opts, cluster)
    device = "cuda" if options["ray_actor_options"]["num_gpus"] > 0 else "cpu"
    return VaeScorer.options(**options).bind(
        opts.model,
        max_batch=opts.max_batch,
        batch_wait_s=opts.batch_wait_ms / 1000.0,
        device=device,
        threads=opts.threads,
        poll_s=opts.poll_s,
    )


def options_from_args(args: dict[str, Any]) -> ServeOptions:
    """A Serve config's ``args`` (the RayService manifest) → ``ServeOptions``; unknown keys and
    bad values are one-line errors. ``replicas: auto`` autoscales."""
    known = set(ServeOptions.__dataclass_fields__)
    unknown = sorted(set(args) - known)
    if unknown:
        raise UserError(f"serve config args: unknown key(s) {', '.join(unknown)}")
    if "model" not in args:
        raise UserError("serve config args: 'model' (models:/NAME@ALIAS) is required")
    values = dict(args)
    if values.get("replicas") == "auto":
        values["replicas"] = None
    return ServeOptions(**values)


def app_builder(args: dict[str, Any]):
    """Serve's application builder (``import_path: pipeline.serving.app:app_builder``), for
    ``serve run`` / ``serve deploy`` / a KubeRay RayService; Ray is already connected there."""
    import ray

    return build_app(options_from_args(args), ray.cluster_resources())


def start(opts: ServeOptions) -> str:
    """Deploy the application; returns its URL once every replica has loaded the model."""
    import ray
    from ray import serve

    mlflow_store.configure()
    resolve(opts.model)  # an unknown model or alias: one line now, not replica retries later
    proxy_port = opts.port
    if ingress.direct(opts.ingress, opts.replicas) and not ray.is_initialized():
        # Read by the Ray this process is about to start, and so by Serve's actors.
        os.environ.update(ingress.direct_env(opts.port))
        proxy_port = free_port()  # the replica answers on opts.port; the proxy stays idle
    ensure_ray()
    app = build_app(opts, ray.cluster_resources())
    serve.start(http_options={"host": opts.host, "port": proxy_port})
    # No per-request access log: on a small machine writing it costs a visible share of a core.
    logging = {"enable_access_log": False, "log_level": "WARNING"}
    serve.run(app, name=APP_NAME, route_prefix="/", logging_config=logging)
    return f"http://{opts.host}:{opts.port}/"


def stop() -> None:
    """Remove the application and Serve's own actors (the Ray cluster stays)."""
    from ray import serve

    serve.delete(APP_NAME)
    serve.shutdown()
