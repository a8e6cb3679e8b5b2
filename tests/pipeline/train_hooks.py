"""Training hooks that only tests plug in (``run_training(cfg, hooks=[...])``).

Tests import this file by its bare name (pytest puts tests/pipeline on the path), which Ray
workers cannot import: ``by_value()`` has Ray pickle it by value instead.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.train.hooks import LoopView, TrainHook


def by_value() -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class KillOnce(TrainHook):
    """Rank ``rank`` dies (``os._exit``) once, after epoch ``after_epoch`` is checkpointed; the
    ``marker`` file says it happened, so the restarted worker does not die again."""

    marker: str
    rank: int
    after_epoch: int  # epochs completed (1: after the first)

    def after_checkpoint(self, loop: LoopView, epoch: int) -> None:
        if loop.rank != self.rank or epoch + 1 != self.after_epoch:
            return
        marker = Path(self.marker)
        if not marker.exists():
            marker.write_text(f"killed rank {loop.rank} after epoch {epoch + 1}\n")
            os._exit(1)
