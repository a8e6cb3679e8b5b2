"""Any source → streaming Ray Datasets per split (train / val / test).

Splits are the source's own where it has them (MNIST train/t10k, ``prepare``'s split
folders); missing ones are carved from train by a stable hash of the id, so every run, worker
and machine agrees on them. Reading, splitting and per-batch checks run in one fused Ray task
per read unit; nothing is materialized on the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.hashing import id_hash, to_unit
from pipeline.data.label_filter import apply_label_filter
from pipeline.data.lineage import source_digest
from pipeline.data.schema import XLayout
from pipeline.data.shuffle import UnitOrder, mixed, unit_permutation
from pipeline.data.sources import SPLITS, SourcePlan, plan_source

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# Read units (e.g. Parquet row groups) per Ray task: each task streams its units out as separate
# blocks, so blocks stay small while the per-task cost (scheduling, file open) is paid less often.
UNITS_PER_TASK = 8


@dataclass
class SourceData:
    splits: dict[str, Any]
    """"train", "val", "test" → ray.data.Dataset of ingested rows (lazy, streaming)."""
    layout: XLayout
    has_labels: bool
    description: str
    rows: int | None = None
    """Rows of the whole source (all its splits), when the source knows them without a pass."""
    digest: str = ""
    """Fingerprint of the source's files and the row selection (``pipeline.data.lineage``)."""


@dataclass(frozen=True)
class Carve:
    """Carve val/test out of the source's train rows by id hash (fractions of those rows)."""

    val_fraction: float
    test_fraction: float
    seed: int

    def codes(self, ids: Any) -> np.ndarray:
        """(N,) split code per id: test below test_fraction, then val, then train."""
        u = to_unit(id_hash(ids, self.seed))
        codes = np.zeros(len(u), dtype=np.int8)
        codes[u < self.val_fraction + self.test_fraction] = SPLIT_CODES["val"]
        codes[u < self.test_fraction] = SPLIT_CODES["test"]
        return codes


def read_blocks(
    batch: pa.Table,
    units: list[Any],
    read: Callable[[Any], pa.Table],
    carve: Carve | None,
    keep: str,
    order: UnitOrder | None = None,
) -> Iterator[pa.Table]:
    """Ray map_batches fn: unit indices (column ``id`` of ray.data.range) → row blocks.

    With ``order``, index i reads the i-th unit of this epoch's unit permutation and the rows
    of the task's units come out mixed (see ``pipeline.data.shuffle``).
    """
    indices = [i for i in batch.column("id").to_pylist() if i < len(units)]  # < : placeholder
    if order is not None:
        epoch = order.epoch()
        perm = unit_permutation(len(units), order.seed, epoch)
        indices = [int(perm[i]) for i in indices]
    tables = (_read_kept(units[i], read, carve, keep) for i in indices)
    if order is None:
        yield from tables
    elif indices:
        yield from mixed(list(tables), order.seed, epoch, indices[0])


def _read_kept(unit: Any, read: Callable[[Any], pa.Table], carve: Carve | None, keep: str):
    table = read(unit)
    if carve is not None:
        mask = carve.codes(table.column(schema.ID)) == SPLIT_CODES[keep]
        table = table.filter(pa.array(mask))
    return table


def units_dataset(
    units: list[Any],
    read: Callable[[Any], pa.Table],
    carve: Carve | None = None,
    keep: str = "train",
    units_per_task: int = UNITS_PER_TASK,
    order: UnitOrder | None = None,
) -> Any:
    """The rows of ``units`` as a lazy Dataset: ``units_per_task`` units per Ray task (read in
    ``order``'s per-epoch permutation when given)."""
    import ray.data

    n = max(1, len(units))  # Ray needs a block; an empty split reads nothing from it
    return ray.data.range(n, override_num_blocks=-(-n // units_per_task)).map_batches(
        read_blocks,
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={"units": units, "read": read, "carve": carve, "keep": keep, "order": order},
    )


def split_dataset(
    plan: SourcePlan, split: str, cfg: DataConfig, order: UnitOrder | None = None
) -> Any:
    """The Dataset of one split: the source's own, or carved from its train units."""

    carved = [s for s in SPLITS if s not in plan.units]
    carve = None
    if carved:
        carve = Carve(
            cfg.val_fraction if "val" in carved else 0.0,
            cfg.test_fraction if "test" in carved else 0.0,
            cfg.seed,
        )
    own = split in plan.units and not (split == "train" and carve is not None)
    units = plan.units[split] if own else plan.units["train"]
    ds = units_dataset(units, plan.read, None if own else carve, split, order=order)
    return ds.limit(cfg.limit) if cfg.limit is not None else ds


def open_source(
    cfg: DataConfig, train_order: UnitOrder | None = None, plan: SourcePlan | None = None
) -> SourceData:
    """Validate ``cfg.source`` on the driver, then build one lazy Dataset per split.

    ``train_order`` makes the train split's read units come in a fresh order every epoch.
    ``plan``: ``plan_source(cfg)`` when the caller already made it.

    Raises ``UserError`` (one line, naming the file and problem) for bad input found by the
    driver-side checks; per-batch problems (NaN/Inf, null or duplicate ids in a row group)
    surface as ``UserError`` when the data is iterated.
    """
    plan = plan if plan is not None else plan_source(cfg)
    splits = {s: split_dataset(plan, s, cfg, train_order if s == "train" else None) for s in SPLITS}
    return SourceData(
        splits=apply_label_filter(splits, cfg, plan.has_labels),
        layout=plan.layout,
        has_labels=plan.has_labels,
        description=plan.description,
        rows=plan.rows,
        digest=source_digest(cfg, plan),
    )
