"""Decoding, preprocessing and split hashing, without Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from ingest_factories import pixel_table

from pipeline.data import schema
from pipeline.data.batches import Preprocessor, iter_torch_batches, to_torch_batch
from pipeline.data.hashing import id_hash
from pipeline.data.ingest import Carve
from pipeline.data.schema import XLayout, decode_x, encode_x

LAYOUT = XLayout((1, 4, 4), "uint8")


def test_encode_decode_round_trip_with_offsets_and_chunks():
    x = np.random.default_rng(0).integers(0, 256, (10, 1, 4, 4), dtype=np.uint8)
    arr = encode_x(x)
    assert arr.type == pa.binary(16)
    assert (decode_x(arr, LAYOUT) == x).all()
    assert (decode_x(arr.slice(3, 4), LAYOUT) == x[3:7]).all()  # Arrow offset honoured
    chunked = pa.chunked_array([arr.slice(0, 4), arr.slice(4)])
    assert (decode_x(chunked, LAYOUT) == x).all()
    f = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    assert (decode_x(encode_x(f), XLayout((3,), "float32")) == f).all()


def test_decode_is_zero_copy():
    arr = encode_x(np.zeros((8, 16), np.uint8))
    view = decode_x(arr, XLayout((16,), "uint8"))
    assert view.ctypes.data == arr.buffers()[1].address


def test_preprocessor_scales_and_round_trips():
    pre = Preprocessor(LAYOUT)
    assert pre.scale_to_unit
    x = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    out = pre(x)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.ones_like(out))
    assert Preprocessor.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError, match="binarize"):
        Preprocessor(LAYOUT, binarize="maybe")


def test_standardization_applied_per_feature():
    layout = XLayout((2,), "float32")
    pre = Preprocessor(layout, mean=[1.0, 2.0], std=[2.0, 4.0])
    assert not pre.scale_to_unit
    out = pre(torch.tensor([[3.0, 6.0]]))
    assert torch.allclose(out, torch.tensor([[1.0, 1.0]]))
    assert Preprocessor.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError, match="mean"):
        Preprocessor(layout, mean=[0.0], std=[1.0])


def test_dynamic_binarization_draws_fresh_each_batch():
    pre = Preprocessor(LAYOUT, binarize="dynamic")
    x = torch.full((64, 1, 4, 4), 128, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    a, b = pre(x, g), pre(x, g)
    assert set(a.unique().tolist()) == {0.0, 1.0} and not torch.equal(a, b)


def test_static_binarization_fixed_per_id_whatever_the_batch():
    pre = Preprocessor(LAYOUT, binarize="static", binarize_seed=3)
    x = torch.full((6, 1, 4, 4), 128, dtype=torch.uint8)
    ids = np.arange(6)
    full = pre(x, ids=ids)
    part = pre(x[2:4], ids=ids[2:4])
    assert torch.equal(full[2:4], part)
    assert not torch.equal(full[0], full[1])  # different ids, different draws
    assert 0.3 < full.mean() < 0.7


def test_to_torch_batch():
    t = pixel_table(5)
    b = to_torch_batch(t, Preprocessor(LAYOUT))
    assert b.x.shape == (5, 1, 4, 4) and b.x.dtype == torch.float32 and b.x.max() <= 1
    assert b.ids.tolist() == [0, 1, 2, 3, 4] and b.labels.dtype == torch.int64
    b = to_torch_batch(t.drop_columns([schema.LABEL]), Preprocessor(LAYOUT))
    assert b.labels is None


class _Fetches:
    """What iter_torch_batches needs of a Ray dataset: ``iter_batches`` of pyarrow tables."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def iter_batches(self, batch_size: int, **_) -> list[pa.Table]:
        n = self.table.num_rows
        return [self.table.slice(i, batch_size) for i in range(0, n, batch_size)]


def _shuffled_ids(table: pa.Table, seed: int, drop_last: bool = False) -> list[list[int]]:
    pre = Preprocessor(LAYOUT, scale_to_unit=False)
    batches = list(
        iter_torch_batches(
            _Fetches(table), 32, pre, shuffle_buffer=1, seed=seed, drop_last=drop_last
        )
    )
    raw = decode_x(table.column(schema.X), LAYOUT)
    for b in batches:  # pixels and labels travel with their ids
        assert torch.equal(b.x, torch.from_numpy(raw[b.ids]).float())
        assert b.labels.tolist() == (b.ids % 3).tolist()
    return [b.ids.tolist() for b in batches]


def test_shuffle_permutes_rows_within_fetches_reproducibly():
    table = pixel_table(1000)
    first = _shuffled_ids(table, seed=1)
    flat = [i for ids in first for i in ids]
    assert sorted(flat) == list(range(1000)) and flat != sorted(flat)
    assert first == _shuffled_ids(table, seed=1)
    assert first != _shuffled_ids(table, seed=2)
    assert all(len(ids) == 32 for ids in _shuffled_ids(table, seed=1, drop_last=True))


def test_training_batches_can_skip_ids_and_labels():
    pre = Preprocessor(LAYOUT)
    (b,) = iter_torch_batches(_Fetches(pixel_table(8)), 8, pre, with_meta=False)
    assert b.ids is None and b.labels is None and b.x.shape == (8, 1, 4, 4)


def test_id_hash_is_stable_and_typed():
    ints = id_hash(np.arange(3), seed=0)
    assert (ints == id_hash(pa.array([0, 1, 2]), seed=0)).all()
    assert not (ints == id_hash(np.arange(3), seed=1)).any()
    strs = id_hash(pa.array(["a", "b"]))
    assert strs.dtype == np.uint64 and strs[0] != strs[1]
    assert int(id_hash(np.array([12345]))[0]) == int(id_hash(np.array([12345]))[0])


def test_carve_fractions_and_determinism():
    ids = np.arange(100_000)
    codes = Carve(0.1, 0.2, seed=0).codes(ids)
    frac = np.bincount(codes, minlength=3) / len(ids)
    assert abs(frac[1] - 0.1) < 0.01 and abs(frac[2] - 0.2) < 0.01
    assert (codes == Carve(0.1, 0.2, seed=0).codes(ids)).all()
    assert (Carve(0.1, 0.0, seed=0).codes(ids) != 2).all()
