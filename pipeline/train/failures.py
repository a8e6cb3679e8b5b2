"""Ray Train's "training failed" errors as one line naming each failed rank and its cause.

When the worker group fails more often than ``train.max_failures`` allows (or the controller
gives up), ``TorchTrainer.fit`` raises a ``TrainingFailedError`` whose text is every rank's full
traceback or Ray's multi-paragraph actor-death report. That is not a bug in vaepipe and not bad
input: :func:`job_failure` turns it into a :class:`pipeline.errors.JobFailed` the CLI prints as one
line (``rank 1: its process died (UNEXPECTED_SYSTEM_EXIT: ...)``); the full error stays in the
debug log (``vaepipe -v``). A worker group the cluster cannot hold (a node lost and not
replaced within ``train.placement_timeout_s``) fails as ``training failed: not enough resources:``
what the job asks against what each alive node has (:func:`not_enough_resources`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.errors import JobFailed

log = logging.getLogger(__name__)

CAUSE_CHARS = 240  # one rank's cause, at most (a line, not a traceback)
_EXIT_TYPE = re.compile(r"Worker exit type: (\w+)")


@dataclass(frozen=True)
class ResourceAsk:
    """What the job's worker group asks of the cluster, named when the cluster cannot hold it."""

    workers: int
    per_worker: Mapping[str, float]
    placement_timeout_s: float


def job_failure(
    exc: BaseException, max_failures: int, ask: ResourceAsk | None = None
) -> JobFailed | None:
    """``exc`` as a one-line :class:`JobFailed`, or None when it is not Ray Train's failure."""
    from ray.train import ControllerError, WorkerGroupError

    if isinstance(exc, ControllerError) and ask is not None and _unplaceable(exc):
        line = not_enough_resources(ask, alive_node_resources())
    elif isinstance(exc, WorkerGroupError):
        ranks = sorted(exc.worker_failures.items(), key=lambda item: _died_first(*item))
        causes = "; ".join(f"rank {rank}: {rank_cause(err)}" for rank, err in ranks)
        line = f"training failed {_budget(max_failures)}: {causes or 'the worker group failed'}"
    elif isinstance(exc, ControllerError):
        line = f"training failed: Ray Train's controller: {_first_line(exc.controller_failure)}"
    else:
        return None
    log.debug("Ray Train's error in full", exc_info=exc)
    return JobFailed(line)


def rank_cause(err: BaseException) -> str:
    """One rank's failure in a line: a dead process, a hung health check, or its exception."""
    from ray.exceptions import OutOfMemoryError, RayActorError
    from ray.train.v2._internal.exceptions import (
        UserExceptionWithTraceback,
        WorkerHealthCheckFailedError,
        WorkerHealthCheckTimeoutError,
    )

    if isinstance(err, WorkerHealthCheckFailedError):
        err = err.health_check_failure
    if isinstance(err, OutOfMemoryError):
        return "killed by Ray's memory monitor (the node ran low on memory)"
    if isinstance(err, RayActorError):
        found = _EXIT_TYPE.search(str(err))
        how = f"{found.group(1)}: " if found else ""
        return (
            f"its process died ({how}killed by a signal such as SIGKILL or the OOM killer, "
            "a crash, its watchdog after train.hang_timeout_s without progress, or the loss "
            "of its node)"
        )
    if isinstance(err, WorkerHealthCheckTimeoutError):
        return _first_line(err)
    if isinstance(err, UserExceptionWithTraceback):
        err = err._base_exc
    return f"{type(err).__name__}: {_first_line(err)}"


def _died_first(rank: int, err: BaseException) -> tuple[int, int]:
    """A rank whose process died is the cause; the others' errors (a collective that lost its
    peer) are consequences: list the dead first, then by rank."""
    from ray.exceptions import RayActorError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    inner = err.health_check_failure if isinstance(err, WorkerHealthCheckFailedError) else err
    return (0 if isinstance(inner, RayActorError) else 1, rank)


def _budget(max_failures: int) -> str:
    if max_failures == 0:
        return "(train.max_failures=0: no restart allowed)"
    if max_failures < 0:
        return "(train.max_failures=-1)"
    plural = "s" if max_failures > 1 else ""
    return f"after {max_failures} restart{plural} (train.max_failures={max_failures})"


def _first_line(err: BaseException) -> str:
    line = next((s.strip() for s in str(err).splitlines() if s.strip()), type(err).__name__)
    return line if len(line) <= CAUSE_CHARS else line[: CAUSE_CHARS - 3] + "..."


def _unplaceable(exc) -> bool:
    """The controller gave up because the worker group found no room in the cluster."""
    from ray.train.v2._internal.exceptions import (
        InsufficientClusterResourcesError,
        WorkerGroupStartupTimeoutError,
    )

    unplaceable = (WorkerGroupStartupTimeoutError, InsufficientClusterResourcesError)
    return isinstance(exc.controller_failure, unplaceable)


def not_enough_resources(ask: ResourceAsk, nodes: Sequence[Mapping[str, float]]) -> str:
    """The line for a worker group the cluster cannot hold: what it asks against what each
    alive node has (a worker's resources must fit on one node)."""
    kinds = sorted(ask.per_worker)  # e.g. ["CPU"] or ["CPU", "GPU"]
    each = " + ".join(f"{ask.per_worker[k]:g} {k}" for k in kinds)
    total = " + ".join(f"{ask.per_worker[k] * ask.workers:g} {k}" for k in kinds)
    if nodes:
        per_node = ", ".join(" + ".join(f"{n.get(k, 0.0):g} {k}" for k in kinds) for n in nodes)
        plural = "s" if len(nodes) > 1 else ""
        has = f"{len(nodes)} alive node{plural} with {per_node}"
    else:
        has = "no alive node"
    return (
        f"training failed: not enough resources: the job asks for {ask.workers} "
        f"worker{'s' if ask.workers > 1 else ''} x "
        f"{each} ({total}), the cluster has {has}; gave up after waiting "
        f"train.placement_timeout_s={ask.placement_timeout_s:g} s for them"
    )


def alive_node_resources() -> list[dict[str, float]]:
    """Each alive node's total resources, as Ray's GCS knows them now (empty if unknown)."""
    import ray

    if not ray.is_initialized():  # ray.nodes() would start a local Ray to answer
        return []
    try:
        return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    except Exception:  # the failure line must not fail on a cluster that is going away
        log.debug("could not list the cluster's nodes", exc_info=True)
        return []
