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

GCS_PORT_VAR = "RAY_GCS_SERVER_PORT"  # Ray's: the port a starting head's GCS listens on
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
    _ray_data_console(_verbose())
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
    with _sigterm_handler_kept(), _local_address_pinned(address == "local") as runtime_env:
        ray.init(
            address=address,
            log_to_driver=verbose,
            # Quiet: not even warnings (a token-auth notice on every start); errors that end
            # the command reach the user as vaepipe's one line.
            logging_level=logging.INFO if verbose else logging.ERROR,
            include_dashboard=dashboard,
            runtime_env=runtime_env,
            **kwargs,
        )


def _verbose() -> bool:
    return os.environ.get("VAEPIPE_VERBOSE") == "1"


def _ray_data_console(verbose: bool) -> None:
    """Ray Data's terminal output on the driver: all of it with -v, none otherwise.

    A failed task makes Ray Data log the task's traceback (tens of lines) on the driver's
    stderr before the exception reaches vaepipe, which reports it as one line (a bad input
    file) or with the full traceback (a bug) itself. Ray Data's log file in the session's
    logs folder keeps every record either way.
    """
    for handler in logging.getLogger("ray.data").handlers:
        # Ray's console handler only: not its file handler, and not a handler someone else
        # (pytest's log capture) put there, which would stay silenced after this command.
        ours = type(handler).__module__.startswith("ray.")
        if ours and isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.INFO if verbose else logging.CRITICAL + 1)


@contextlib.contextmanager
def _local_address_pinned(local: bool) -> Iterator[dict | None]:
    """For a new local instance: its GCS port chosen up front, and ``RAY_ADDRESS`` naming it in
    every worker's environment (the job's runtime env, inherited by all its tasks and actors).

    Code inside the cluster that calls the State API without an address (Ray Train's
    placement-group cleaner, which frees a Tune-stopped trial's workers) otherwise looks for
    *a* local GCS; with a second Ray instance on the machine it finds several, gives up, and
    the stopped trial's CPUs stay reserved: the next trials' data tasks wait forever.
    """
    if not local:
        yield None
        return
    import ray

    from pipeline.cluster.stack_processes import free_port

    port = str(free_port())
    previous = os.environ.get(GCS_PORT_VAR)
    os.environ[GCS_PORT_VAR] = port  # read by ray.init when it starts the head
    try:
        yield {"env_vars": {"RAY_ADDRESS": f"{ray.util.get_node_ip_address()}:{port}"}}
    finally:
        if previous is None:
            os.environ.pop(GCS_PORT_VAR, None)
        else:
            os.environ[GCS_PORT_VAR] = previous


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
