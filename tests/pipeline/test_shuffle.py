"""Per-epoch shuffles without Ray: permutations, in-memory gathers, task-level mixing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.data import schema
from pipeline.data.hot_split import EpochRows, _Blocks, fits
from pipeline.data.schema import XLayout, decode_x, encode_x
from pipeline.data.shuffle import mixed, row_permutation, unit_permutation

LAYOUT = XLayout((1, 2, 2), "uint8")


def _sorted_blocks(n: int = 2000, per_block: int = 200, ids_as_str: bool = False) -> list:
    """Label-sorted rows (10 labels) in blocks; x encodes the id so gathers can be checked."""
    ids = np.arange(n)
    labels = ids * 10 // n  # 0 0 0 ... 9 9 9
    x = (ids % 256).astype(np.uint8)[:, None, None, None].repeat(4, axis=3).reshape(n, 1, 2, 2)
    tables = []
    for s in range(0, n, per_block):
        id_col = ids[s : s + per_block]
        if ids_as_str:
            id_col = pa.array([f"r{i}" for i in id_col])
        tables.append(
            pa.table(
                {
                    schema.ID: id_col,
                    schema.X: encode_x(x[s : s + per_block]),
                    schema.LABEL: labels[s : s + per_block],
                }
            )
        )
    return tables


def test_permutations_are_fixed_by_seed_and_epoch_and_fresh_per_epoch():
    assert np.array_equal(row_permutation(1000, 3, 5), row_permutation(1000, 3, 5))
    assert not np.array_equal(row_permutation(1000, 3, 5), row_permutation(1000, 3, 6))
    assert not np.array_equal(row_permutation(1000, 3, 5), row_permutation(1000, 4, 5))
    assert not np.array_equal(unit_permutation(1000, 3, 5), row_permutation(1000, 3, 5))
    assert sorted(unit_permutation(50, 0, 1)) == list(range(50))


def test_hot_epoch_gathers_exact_rows_and_every_batch_spans_many_labels():
    blocks = _Blocks(_sorted_blocks(), LAYOUT)
    batches = list(EpochRows(blocks, epoch=2, seed=7, rank=0, world=1).iter_batches(128))
    ids = np.concatenate([b.column(schema.ID).to_numpy() for b in batches])
    assert sorted(ids) == list(range(2000))  # every row once
    for b in batches:
        bid = b.column(schema.ID).to_numpy()
        assert np.array_equal(b.column(schema.LABEL).to_numpy(), bid * 10 // 2000)
        assert np.array_equal(decode_x(b.column(schema.X), LAYOUT)[:, 0, 0, 0], bid % 256)
    full = [b for b in batches if b.num_rows == 128]
    assert all(len(set(b.column(schema.LABEL).to_pylist())) >= 8 for b in full)


def test_hot_epoch_is_reproducible_fresh_per_epoch_and_split_equally_over_ranks():
    blocks = _Blocks(_sorted_blocks(n=1001), LAYOUT)

    def ids(epoch: int, rank: int = 0, world: int = 1) -> list[int]:
        rows = EpochRows(blocks, epoch, seed=1, rank=rank, world=world)
        return [i for b in rows.iter_batches(64) for i in b.column(schema.ID).to_pylist()]

    assert ids(3) == ids(3)  # a resumed epoch 3 draws what an uninterrupted one would
    assert ids(3) != ids(4)
    shares = [ids(3, rank, 2) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == 500  # equal: DDP ranks take the same steps
    assert not set(shares[0]) & set(shares[1])


def test_hot_gather_keeps_string_ids_in_order():
    blocks = _Blocks(_sorted_blocks(n=400, per_block=100, ids_as_str=True), LAYOUT)
    rows = np.array([399, 0, 150, 151, 7])
    table = blocks.take(rows)
    assert table.column(schema.ID).to_pylist() == [f"r{i}" for i in rows]
    assert table.column(schema.LABEL).to_pylist() == list(rows * 10 // 400)


def test_task_mixing_keeps_every_row_and_mixes_units():
    tables = _sorted_blocks(n=800, per_block=100)[:4]  # 4 units, labels 0..4
    out = list(mixed(tables, seed=0, epoch=1, first_unit=0))
    ids = np.concatenate([t.column(schema.ID).to_numpy() for t in out])
    assert sorted(ids) == list(range(400))
    assert len(out) == 4 and all(len(set(t.column(schema.LABEL).to_pylist())) >= 3 for t in out)


def test_fits_compares_with_a_share_of_the_store():
    layout = XLayout((784,), "uint8")
    assert fits(60_000, layout, 0.25, 4e9)
    assert not fits(60_000, layout, 0.25, 1e8)
    assert not fits(60_000, layout, 0.0, 4e9)
    assert not fits(None, layout, 1.0, 4e9)  # unknown size: stream
