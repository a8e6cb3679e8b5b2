"""Per-epoch orders of the training rows: fresh every epoch, fixed by (seed, epoch).

Everything random here is a pure function of the seed and the epoch number, never of how many
epochs this process has already run, so a run resumed from a checkpoint at epoch k draws the
same orders as an uninterrupted one.

Two paths (``pipeline.data.train_order`` picks one):
- streaming: each epoch reads the read units (Parquet row groups, ...) in ``unit_permutation``
  order and every Ray read task mixes the rows of the units it reads (a window of several units);
  ``iter_torch_batches`` permutes each fetch on top. The read tasks learn the epoch from an
  ``EpochBoard`` actor that rank 0 sets before it starts the epoch's stream.
- hot (the split was read once into the object store): ``row_permutation`` orders every row of
  the split, a true uniform shuffle (``pipeline.data.hot_split``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

_UNITS, _ROWS, _MIX = 1, 2, 3  # stream tags: the draws for different purposes never overlap


def _rng(seed: int, epoch: int, tag: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, tag, *extra])


def unit_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """(n,) read-unit order of ``epoch``."""
    return _rng(seed, epoch, _UNITS).permutation(n)


def row_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """(n,) order of all rows of the split in ``epoch``."""
    return _rng(seed, epoch, _ROWS).permutation(n)


def mixed(tables: list[pa.Table], seed: int, epoch: int, first_unit: int) -> Iterator[pa.Table]:
    """The rows of ``tables`` (one read task's units) in one random order, cut back into
    pieces of about one unit each so blocks stay small."""
    tables = [t for t in tables if t.num_rows]
    if len(tables) < 2:
        yield from tables
        return
    whole = pa.concat_tables(tables)
    order = _rng(seed, epoch, _MIX, first_unit).permutation(whole.num_rows)
    whole = whole.take(pa.array(order))
    step = -(-whole.num_rows // len(tables))
    for start in range(0, whole.num_rows, step):
        yield whole.slice(start, step)


def _board_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class EpochBoard:
        """Holds the epoch the training stream is reading (set by rank 0 before each epoch)."""

        def __init__(self) -> None:
            self.epoch = 0

        def set(self, epoch: int) -> None:
            self.epoch = epoch

        def get(self) -> int:
            return self.epoch

    return EpochBoard


def new_epoch_board() -> Any:
    """An ``EpochBoard`` actor handle (picklable: read tasks and train workers share it)."""
    return _board_class().remote()


@dataclass(frozen=True)
class UnitOrder:
    """Streaming shuffle of one split: which epoch's unit order the read tasks follow."""

    seed: int
    board: Any
    """EpochBoard actor handle."""

    def epoch(self) -> int:
        import ray

        return ray.get(self.board.get.remote())

    def set_epoch(self, epoch: int) -> None:
        import ray

        ray.get(self.board.set.remote(epoch))
