"""The training split's per-epoch order: hot (read once, reshuffled in memory) or streaming.

``open_training_source`` decides on the driver, before training: a split whose rows fit
``data.cache_share`` of the Ray object store is materialized once (``HotSplit``); otherwise the
split streams with a per-epoch unit permutation (``UnitOrder``). The returned ``TrainOrder``
travels to the workers, which ask it for each epoch's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config.data import DataConfig
from pipeline.data.hot_split import HotSplit, fits, object_store_bytes
from pipeline.data.ingest import SourceData, open_source
from pipeline.data.shuffle import UnitOrder, new_epoch_board
from pipeline.data.sources import SourcePlan, plan_source


@dataclass(frozen=True)
class TrainOrder:
    """Picklable: what a worker needs to draw epoch ``e``'s training rows."""

    seed: int
    hot: HotSplit | None = None
    units: UnitOrder | None = None

    @property
    def mode(self) -> str:
        return "hot" if self.hot is not None else "streaming"

    def epoch_data(self, shard: Any, epoch: int, rank: int = 0, world: int = 1) -> Any:
        """Something with ``iter_batches`` holding this rank's rows of ``epoch``.

        Streaming: rank 0 posts the epoch before its stream starts; Ray's split coordinator
        starts reading only once every rank has asked, so the read tasks all see it.
        """
        if self.hot is not None:
            return self.hot.epoch(epoch, self.seed, rank, world)
        if self.units is not None and rank == 0:
            self.units.set_epoch(epoch)
        return shard


def open_training_source(
    cfg: DataConfig,
    seed: int,
    store_bytes: float | None = None,
    plan: SourcePlan | None = None,
) -> tuple[SourceData, TrainOrder]:
    """``open_source`` with a shuffled train split; keep it hot when it fits (see module doc).

    With ``data.limit`` the streamed split keeps its unit order: a limit on a reshuffled stream
    would train on different rows every epoch (a limited split nearly always fits anyway).
    A hot split is read in its stored order (its epochs reshuffle every row), so only a
    streamed one gets the ``EpochBoard`` actor: one Ray worker process fewer at start-up.
    ``plan``: ``plan_source(cfg)`` when the caller already made it (before starting Ray).
    """
    plan = plan if plan is not None else plan_source(cfg)
    store = object_store_bytes() if store_bytes is None else store_bytes
    rows = plan.rows if cfg.limit is None else min(cfg.limit, plan.rows or cfg.limit)
    if not fits(rows, plan.layout, cfg.cache_share, store):
        units = UnitOrder(seed, new_epoch_board()) if cfg.limit is None else None
        return open_source(cfg, train_order=units, plan=plan), TrainOrder(seed, units=units)
    source = open_source(cfg, plan=plan)
    hot, materialized = HotSplit.materialize(source.splits["train"], source.layout)
    source.splits["train"] = materialized
    return source, TrainOrder(seed, hot=hot)


def split_rows(source: SourceData, order: TrainOrder) -> dict[str, int]:
    """Rows per split (a counting pass over each streamed split; the hot one is known)."""
    rows = {s: ds.count() for s, ds in source.splits.items() if s != "train" or not order.hot}
    if order.hot is not None:
        rows["train"] = order.hot.rows
    return {s: rows[s] for s in source.splits}
