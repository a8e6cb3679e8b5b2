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
from pipeline.train.failures import ResourceAsk, job_failure, not_enough_resources


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


def test_unplaceable_worker_group_names_the_ask_and_the_nodes():
    ask = ResourceAsk(workers=2, per_worker={"CPU": 2.0, "GPU": 1.0}, placement_timeout_s=120.0)
    nodes = [{"CPU": 3.0, "GPU": 1.0, "memory": 1e9}, {"CPU": 1.5}]
    assert not_enough_resources(ask, nodes) == (
        "training failed: not enough resources: the job asks for 2 workers x 2 CPU + 1 GPU "
        "(4 CPU + 2 GPU), the cluster has 2 alive nodes with 3 CPU + 1 GPU, 1.5 CPU + 0 GPU; "
        "gave up after waiting train.placement_timeout_s=120 s for them"
    )
    one = ResourceAsk(workers=1, per_worker={"CPU": 4.0}, placement_timeout_s=6.0)
    assert "asks for 1 worker x 4 CPU (4 CPU), the cluster has no alive node;" in (
        not_enough_resources(one, [])
    )


def test_start_timeout_with_an_ask_is_not_enough_resources():
    ask = ResourceAsk(workers=2, per_worker={"CPU": 2.0}, placement_timeout_s=9.0)
    line = str(job_failure(ControllerError(WorkerGroupStartupTimeoutError(2)), 2, ask))
    assert line.startswith("training failed: not enough resources: the job asks for 2 workers")
    assert "\n" not in line


def test_other_errors_are_left_alone():
    assert job_failure(RuntimeError("a bug"), 2) is None
