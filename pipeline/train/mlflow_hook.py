"""``MlflowEpochLogging``: the training hook through which rank 0 writes a run to MLflow.

Per epoch one metric batch, and image grids (reconstructions, prior samples, traversals) while
their share of the run's time allows; the final model's grids and the test metrics at the end.
Each epoch's MLflow seconds join its report as ``tracking_seconds`` (bench/train.py accounts
tracking's cost with them).

Exactly once per step: a worker group restarted from its last checkpoint redoes the epochs the
failed attempt ran after that checkpoint, and rank 0 may have logged some of them already. An
epoch (or the test metrics) already in the run is not logged again: its first values stay. The
redo starts from the same checkpoint with the same per-epoch seeds, so it computes the same
figures up to floating-point reduction order. And at least once: a restarted rank 0 sends again
the metrics of every epoch its checkpoint holds, skipping those the run has, so an epoch whose
write was still in flight when the failed attempt died (its checkpoint already written) is not
lost. (Its image grids are.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pipeline.train.hooks import LoopView, TrainHook

IMAGE_TIME_SHARE = 0.01  # image grids may take ~1% of the run (the tracking budget is 2%)
EPOCH_KEY = "epoch"  # in every epoch's metrics: its step tells an epoch already logged


class MlflowEpochLogging(TrainHook):
    def __init__(self, run_id: str, tracking_uri: str | None) -> None:
        self.run_id = run_id
        # The URI comes from the driver: a worker's environment predates the driver's settings.
        self.tracking_uri = tracking_uri
        self.logger: Any = None  # rank 0's EpochLogger, built on the worker

    def __getstate__(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tracking_uri": self.tracking_uri, "logger": None}

    def setup(self, loop: LoopView) -> None:
        if loop.rank != 0:
            return
        from pipeline.tracking.runs import EpochLogger

        self.logger = EpochLogger(self.run_id, self.tracking_uri)
        for metrics in loop.epoch_metrics:  # checkpointed epochs: sent if the run lacks them
            self.logger.log_metrics(dict(metrics), int(metrics[EPOCH_KEY]), once_by=EPOCH_KEY)
        self.started = time.perf_counter()
        self.image_seconds = 0.0  # spent on image grids so far (see IMAGE_TIME_SHARE)
        self.images_epoch: int | None = None

    def on_epoch_end(
        self, loop: LoopView, epoch: int, metrics: Mapping[str, float]
    ) -> Mapping[str, float]:
        if self.logger is None:
            return {"tracking_seconds": 0.0}
        start = time.perf_counter()
        self.logger.log_metrics(dict(metrics), loop.epochs_done, once_by=EPOCH_KEY)
        if self._images_due():
            self._log_images(loop, once_by=EPOCH_KEY)
        return {"tracking_seconds": time.perf_counter() - start}

    def before_test(self, loop: LoopView) -> None:
        if self.logger is not None:
            self._log_images(loop)  # the final model's grids, whatever the time share allowed

    def after_test(self, loop: LoopView, metrics: Mapping[str, float]) -> None:
        if self.logger is not None and metrics:
            self.logger.log_metrics(dict(metrics), loop.epochs_done, once_by=min(metrics))

    def teardown(self, loop: LoopView) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None

    def _images_due(self) -> bool:
        # Rendering and uploading the grids costs a fixed time per epoch, far above the
        # tracking budget on short epochs: log them only while their share of time allows.
        elapsed = time.perf_counter() - self.started
        return self.image_seconds <= IMAGE_TIME_SHARE * elapsed

    def _log_images(self, loop: LoopView, once_by: str | None = None) -> None:
        """Reconstructions, prior samples and traversals at this epoch (once per epoch)."""
        if not loop.job.train.log_images or loop.examples is None:
            return
        if self.images_epoch == loop.epochs_done:
            return
        from pipeline.tracking.images import epoch_images

        start = time.perf_counter()
        images = epoch_images(loop.vae, loop.examples, loop.preprocessor, loop.job.train.seed)
        self.logger.log_images(images, step=loop.epochs_done, once_by=once_by)
        self.images_epoch = loop.epochs_done
        self.image_seconds += time.perf_counter() - start
