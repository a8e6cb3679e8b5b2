"""How many trials at once, and the workers of each, sized from the cluster.

Each trial is a Tune function trainable (a driver that waits on its Ray Train controller) plus
the trial's own training worker group, which Ray Train places *outside* Tune's reservation. So
Tune must not start more trials than the cluster can give workers to: ``max_concurrent_trials``
is set from the CPUs (or GPUs) left after Ray Data's share, and every trial's workers get an
equal slice. Ray Data's share (``pipeline.train.resources``) is kept once for all trials: their
read and map tasks take turns on it instead of each trial starving the next.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from pipeline.config.job import ScalingSettings
from pipeline.errors import UserError
from pipeline.train.resources import DATA_CPU_FRACTION, GPU_WORKER_CPUS, WorkerPlan

# A Tune trial's driver only waits on its Train controller; Tune needs *some* resource in the
# trial's bundle (an all-zero request is refused), so it holds a token slice of a CPU.
TRIAL_DRIVER_CPUS = 0.01


@dataclass(frozen=True)
class SweepPlan:
    max_concurrent: int
    """Trials running at once (Tune's ``max_concurrent_trials``)."""
    workers: WorkerPlan
    """The training worker group of each trial."""

    def trial_resources(self) -> dict[str, float]:
        return {"cpu": TRIAL_DRIVER_CPUS}


def plan_sweep(
    scaling: ScalingSettings,
    cluster: dict[str, float],
    trials: int,
    max_concurrent: int | None = None,
) -> SweepPlan:
    """The sweep layout on a cluster with ``cluster`` (``ray.cluster_resources()``) resources.

    ``scaling.workers`` (0 → 1) workers per trial; ``max_concurrent`` None fits as many trials
    as the cluster allows, at most ``trials``.
    """
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    workers = scaling.workers or 1
    if scaling.use_gpu:
        return _gpu_plan(workers, cluster, trials, max_concurrent)
    total = float(cluster.get("CPU", 0.0))
    usable = total - max(1.0, total * DATA_CPU_FRACTION)
    slots = max(1, min(trials, max_concurrent or math.floor(usable / workers)))
    drivers = slots * TRIAL_DRIVER_CPUS
    cpus = scaling.cpus_per_worker or math.floor((usable - drivers) / (slots * workers) * 100) / 100
    if cpus <= 0 or cpus * workers * slots + drivers > total:
        raise UserError(
            f"{slots} concurrent trials x {workers} workers do not fit a cluster of "
            f"{total:g} CPUs (lower --max-concurrent or scaling.workers)"
        )
    return SweepPlan(slots, WorkerPlan(workers, False, cpus, _threads(cpus, slots * workers)))


def _gpu_plan(workers: int, cluster: dict[str, float], trials: int, max_concurrent: int | None):
    gpus = int(cluster.get("GPU", 0.0))
    fit = gpus // workers
    if fit < 1:
        raise UserError(f"scaling.use_gpu with {workers} workers per trial needs {workers} GPUs")
    slots = max(1, min(trials, fit, max_concurrent or fit))
    total = float(cluster.get("CPU", 0.0))
    cpus = min(GPU_WORKER_CPUS, total / (slots * workers + 1))
    return SweepPlan(slots, WorkerPlan(workers, True, cpus, _threads(cpus, slots * workers)))


def _threads(cpus_per_worker: float, local_workers: int) -> int:
    # Concurrent trials share this node's cores: never more threads in all than cores (Ray's
    # logical CPUs may exceed them, as in the tests' 4 CPUs on 2 cores).
    cores = os.cpu_count() or 1
    return max(1, min(max(1, round(cpus_per_worker)), cores // max(1, local_workers)))
