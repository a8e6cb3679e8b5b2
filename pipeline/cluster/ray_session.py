"""Connect to Ray the way every vaepipe command should.

``RAY_ADDRESS`` set (a cluster, or a Ray job's driver): connect to it. Unset: start a *new*
local instance. Plain ``ray.init()`` would instead attach to any Ray already running on the
machine (it scans for local GCS processes), which on a shared host is someone else's cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

from pipeline.cluster import secrets_files

# Read by Ray Train's controller, which gets it from the driver's environment.
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def ensure_ray(num_cpus: int | None = None, dashboard: bool = False) -> None:
    """Initialize Ray once per process (no-op when already initialized, e.g. in tests).

    ``dashboard``: start a local instance with its dashboard, which serves the State API. Ray
    Train's placement-group cleaner needs it to free the workers of a run whose controller was
    killed (a trial stopped by Tune); without it they hold their CPUs until Ray shuts down.
    """
    import ray
    from ray.data import DataContext

    # In a non-interactive log Ray Data prints a progress block per operator every few
    # seconds; vaepipe reports its own progress.
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Ray Data logs every execution at INFO through its own handler: quiet unless -v.
    logging.getLogger("ray.data").setLevel(logging.INFO if _verbose() else logging.WARNING)
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or "local"
    kwargs = {"num_cpus": num_cpus} if address == "local" and num_cpus else {}
    # Quiet unless ``vaepipe -v`` (jobs/cli.py sets VAEPIPE_VERBOSE): then Ray's own INFO logs
    # and the workers' output reach this terminal.
    verbose = _verbose()
    if address == "local":
        secrets_files.ensure_local_ray_token()  # Ray's own would be world-readable (umask)
        # One machine is never preempted: Ray Train's preemption watcher would only be one more
        # worker process starting beside the first training steps (a user's own value wins).
        os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    with _sigterm_handler_kept():
        ray.init(
            address=address,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.WARNING,
            include_dashboard=dashboard,
            **kwargs,
        )


def _verbose() -> bool:
    return os.environ.get("VAEPIPE_VERBOSE") == "1"


@contextlib.contextmanager
def _sigterm_handler_kept() -> Iterator[None]:
    """Undo ``ray.init``'s SIGTERM handler (``sys.exit(15)``) when the process had its own.

    Ray's handler makes SIGTERM (``ray job stop``, Kubernetes) look like a failure, and the
    MLflow run would end FAILED; the CLI's handler raises an interrupt, so it ends KILLED.
    """
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None
    yield
    if callable(previous):
        signal.signal(signal.SIGTERM, previous)
