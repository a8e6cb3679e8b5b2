"""Small training splits stay hot: read once into the Ray object store, reshuffled every epoch.

Ray Data pays a fixed start-up per pass (planning, first reads) that dominates a short epoch;
a split that fits ``share`` of the object store is therefore materialized once and every epoch
gathers its rows straight from the stored Arrow blocks (zero-copy ``ray.get`` on the node) in
that epoch's ``row_permutation`` — a uniform shuffle of the whole split. Each rank takes an
equal slice of the permutation, so DDP ranks take the same number of steps. Bigger splits
stream (``pipeline.data.shuffle``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.data import schema
from pipeline.data.schema import XLayout, decode_x, encode_x
from pipeline.data.shuffle import row_permutation

ROW_OVERHEAD = 16  # bytes per row besides the sample: id and label (int64 each)


def fits(rows: int | None, layout: XLayout, share: float, store_bytes: float) -> bool:
    """Whether ``rows`` samples of ``layout`` fit ``share`` of an object store this big."""
    if rows is None or share <= 0:
        return False
    return rows * (layout.nbytes + ROW_OVERHEAD) <= share * store_bytes


def object_store_bytes() -> float:
    """The cluster's object store capacity (all nodes)."""
    import ray

    return float(ray.cluster_resources().get("object_store_memory", 0.0))


class HotSplit:
    """A materialized split: Arrow blocks in the object store. Picklable (refs travel)."""

    def __init__(self, refs: list[Any], rows: int, layout: XLayout) -> None:
        self.refs = list(refs)
        self.rows = rows
        self.layout = layout
        self._blocks: _Blocks | None = None  # per process, loaded on first use

    @classmethod
    def materialize(cls, ds: Any, layout: XLayout) -> tuple[HotSplit, Any]:
        """Read ``ds`` once; (HotSplit, the MaterializedDataset over the same blocks)."""
        mat = ds.materialize()
        return cls(mat.to_arrow_refs(), mat.count(), layout), mat

    def __getstate__(self) -> dict[str, Any]:
        return {"refs": self.refs, "rows": self.rows, "layout": self.layout, "_blocks": None}

    def blocks(self) -> _Blocks:
        if self._blocks is None:
            import ray

            self._blocks = _Blocks(ray.get(self.refs), self.layout)
        return self._blocks

    def epoch(self, epoch: int, seed: int, rank: int = 0, world: int = 1) -> EpochRows:
        """This rank's rows of ``epoch``: an iterable with Ray's ``iter_batches`` signature."""
        return EpochRows(self.blocks(), epoch, seed, rank, world)


class _Blocks:
    """The split's blocks as zero-copy numpy views, gathered by global row number."""

    def __init__(self, tables: list[pa.Table], layout: XLayout) -> None:
        tables = [t for t in tables if t.num_rows]
        self.layout = layout
        self.x = [decode_x(t.column(schema.X), layout) for t in tables]  # (n_b, *shape) each
        self.ids = [_numpy_or_arrow(t.column(schema.ID)) for t in tables]
        self.labels = None
        if tables and schema.LABEL in tables[0].column_names:
            self.labels = [t.column(schema.LABEL).to_numpy() for t in tables]
        self.starts = np.cumsum([0] + [len(x) for x in self.x])  # (blocks + 1,)
        self.nbytes = sum(t.nbytes for t in tables)  # held in the object store

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def take(self, rows: np.ndarray) -> pa.Table:
        """(len(rows),) global row numbers → an Arrow table of those rows, in that order."""
        block = np.searchsorted(self.starts, rows, side="right") - 1  # (n,)
        x = np.empty((len(rows), *self.layout.shape), self.layout.dtype)
        ids: list[Any] = [None] * len(self.x)
        labels = None if self.labels is None else np.empty(len(rows), np.int64)
        int_ids = isinstance(self.ids[0], np.ndarray) if self.ids else True
        id_out = np.empty(len(rows), np.int64) if int_ids else None
        for b in np.unique(block):
            where = np.flatnonzero(block == b)  # positions in the output
            local = rows[where] - self.starts[b]
            x[where] = self.x[b][local]
            if labels is not None:
                labels[where] = self.labels[b][local]
            if int_ids:
                id_out[where] = self.ids[b][local]
            else:
                ids[b] = (where, self.ids[b].take(pa.array(local)))
        cols: dict[str, Any] = {schema.ID: id_out if int_ids else _scatter(ids, len(rows))}
        cols[schema.X] = encode_x(x)
        if labels is not None:
            cols[schema.LABEL] = labels
        return pa.table(cols)


def _numpy_or_arrow(col: pa.ChunkedArray) -> Any:
    arr = col.combine_chunks()
    return arr.to_numpy() if pa.types.is_integer(arr.type) else arr


def _scatter(parts: list[Any], n: int) -> pa.Array:
    """String ids gathered per block back into output order."""
    where = np.concatenate([w for p in parts if p is not None for w in [p[0]]])
    values = pa.concat_arrays([v for p in parts if p is not None for v in [p[1]]])
    return values.take(pa.array(np.argsort(where, kind="stable")))


class EpochRows:
    """One rank's share of one epoch's permutation, served like ``Dataset.iter_batches``."""

    def __init__(self, blocks: _Blocks, epoch: int, seed: int, rank: int, world: int) -> None:
        share = blocks.rows // world  # equal shares: every DDP rank takes the same steps
        order = row_permutation(blocks.rows, seed, epoch)
        self.rows = order[rank * share : (rank + 1) * share]
        self.blocks = blocks

    def iter_batches(
        self, batch_size: int, batch_format: str = "pyarrow", prefetch_batches: int = 1
    ) -> Iterator[pa.Table]:
        del prefetch_batches  # gathering from memory needs no read-ahead
        if batch_format != "pyarrow":
            raise ValueError(f"EpochRows serves pyarrow batches, not {batch_format!r}")
        for start in range(0, len(self.rows), batch_size):
            yield self.blocks.take(self.rows[start : start + batch_size])
