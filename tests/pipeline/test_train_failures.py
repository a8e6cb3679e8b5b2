"""Ray Train's failure errors as one line (``pipeline.train.failures``), without a cluster.

The errors are Ray's own classes, built as Ray Train builds them when a worker group fails; the
reliability tier (``tests/reliability/test_worker_faults.py``) produces the real thing.
"""

from __future__ import annotations

from ray.exceptions import ActorDiedError
from ray.train import ControllerError, WorkerGroupError
from ray.train.v2._internal.exceptions import (
    UserExceptionWithTraceback,
    WorkerGroupStartupTimeoutError,
    WorkerHealthCheckFailedError,
)

from pipeline.errors import JobFailed
from pipeline.train.failures import job_failure


def _died() -> WorkerHealthCheckFailedError:
    return WorkerHealthCheckFailedError("A worker health check failed.", ActorDiedError())


def _raised(exc: Exception) -> UserExceptionWithTraceback:
    return UserExceptionWithTraceback(exc, "Traceback (most recent call last):\n  ...\n")


def test_dead_rank_is_named_first_then_the_others_in_one_line():
    error = WorkerGroupError(
        "long text", {0: _raised(RuntimeError("Connection closed by peer\nmore")), 1: _died()}
    )
    failed = job_failure(error, max_failures=2)

    assert isinstance(failed, JobFailed)
    line = str(failed)
    assert "\n" not in line
    assert line.startswith("training failed after 2 restarts (train.max_failures=2): rank 1: ")
    assert "its process died (" in line
    assert line.endswith("; rank 0: RuntimeError: Connection closed by peer")


def test_no_restart_budget_and_controller_failures_are_said_so():
    error = WorkerGroupError("x", {0: _raised(ValueError("bad"))})
    assert str(job_failure(error, 0)) == (
        "training failed (train.max_failures=0: no restart allowed): rank 0: ValueError: bad"
    )
    line = str(job_failure(ControllerError(WorkerGroupStartupTimeoutError(2)), 2))
    assert line.startswith("training failed: Ray Train's controller: The worker group startup")


def test_other_errors_are_left_alone():
    assert job_failure(RuntimeError("a bug"), 2) is None
