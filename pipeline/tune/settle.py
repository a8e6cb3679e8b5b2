"""Wait for a sweep's trial processes to be gone before the driver closes their MLflow runs.

``Tuner.fit()`` can return while a stopped trial's actor is still exiting: Tune asks it to stop,
then kills it, and neither waits for the process to end. A trial cut short by Ctrl-C, ASHA or
the time budget may still be unwinding — and its ``tracked_run`` then writes FAILED over the
KILLED the driver has just set. Every actor a sweep starts belongs to the driver's Ray job; once
none of its trial actors, Train controllers and workers is alive, no trial can write any more.
(Ray Data's service actors of the same job live on until Ray shuts down: they are not waited on.)
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 30.0  # Tune force-kills a stopping actor after 10 s; this is beyond it
POLL_S = 0.5
# Ray's class names for Tune's function trainable and Train V2's controller and workers.
TRIAL_ACTORS = frozenset({"ImplicitFunc", "TrainController", "RayTrainWorker"})


def wait_for_trials_to_exit(timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
    """Block until no trial actor of this driver's job is alive (True), or ``timeout_s`` passes
    (False)."""
    import ray
    from ray.util.state import list_actors

    job_id = ray.get_runtime_context().get_job_id()
    filters = [("job_id", "=", job_id), ("state", "=", "ALIVE")]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            listed = list_actors(filters=filters, raise_on_missing_output=False)
        except Exception as exc:  # no State API (no dashboard): nothing to wait on
            log.debug("cannot list the sweep's actors: %s", exc)
            return False
        alive = [a for a in listed if a.class_name in TRIAL_ACTORS]
        if not alive:
            log.debug("no live trial actor of job %s", job_id)
            return True
        if time.monotonic() > deadline:
            names = sorted({a.class_name for a in alive})
            log.warning("%d actor(s) still alive after %.0f s: %s", len(alive), timeout_s, names)
            return False
        time.sleep(POLL_S)
