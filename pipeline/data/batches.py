"""Arrow batches → preprocessed torch batches.

Storage keeps pixels as uint8 in a ``fixed_size_binary`` column (see ``schema.py``): decoding
is one ``np.frombuffer`` over the Arrow data buffer, no per-row work, and the float conversion
happens on the consumer (on the GPU when there is one).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from pipeline.data import schema
from pipeline.data.hashing import id_hash, splitmix64
from pipeline.data.ray_errors import user_errors
from pipeline.data.schema import XLayout, decode_x


def _static_uniforms(ids: Any, seed: int, numel: int) -> np.ndarray:
    """(B, numel) float32 uniforms fixed by (id, seed): a counter-based RNG per id."""
    h = id_hash(ids, seed)[:, None]  # (B, 1)
    counters = np.arange(numel, dtype=np.uint64)[None, :]  # (1, D)
    with np.errstate(over="ignore"):
        bits = splitmix64(h + counters * np.uint64(0x9E3779B97F4A7C15))
    return ((bits >> np.uint64(40)).astype(np.float32)) * np.float32(1.0 / (1 << 24))


@dataclass(frozen=True)
class Preprocessor:
    """Stored-sample → model-input transform; stored with the model as ``to_dict()``."""

    layout: XLayout
    scale_to_unit: bool | None = None
    """Divide by 255; None means "when the layout is uint8"."""
    binarize: str = "none"
    """none | static (fixed draw per id and seed) | dynamic (fresh Bernoulli draw per batch)."""
    binarize_seed: int = 0
    mean: list[float] | None = None
    """Per-feature mean (len = numel) subtracted after scaling; with ``std``."""
    std: list[float] | None = None

    def __post_init__(self) -> None:
        if self.scale_to_unit is None:
            object.__setattr__(self, "scale_to_unit", self.layout.dtype == "uint8")
        if self.binarize not in ("none", "static", "dynamic"):
            raise ValueError(f"preprocessor.binarize: unknown mode {self.binarize!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("preprocessor.mean and preprocessor.std must be given together")
        if self.mean is not None:
            if len(self.mean) != self.layout.numel or len(self.std) != self.layout.numel:
                raise ValueError(f"preprocessor.mean/std must have {self.layout.numel} values")
            if self.binarize != "none":
                raise ValueError(
                    "preprocessor: standardization and binarization exclude each other"
                )

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None, ids: Any = None
    ) -> torch.Tensor:
        """(B, *shape) uint8 or float → (B, *shape) float32 on x's device.

        Static binarization needs ``ids`` (a draw fixed per id); without them it thresholds
        at 0.5, which is the deterministic choice for encoding.
        """
        x = x.to(torch.float32)
        if self.scale_to_unit:
            x = x * (1.0 / 255.0)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device)
            std = torch.tensor(self.std, dtype=torch.float32, device=x.device)
            x = (x - mean.view(self.layout.shape)) / std.view(self.layout.shape)
        if self.binarize == "dynamic":
            x = torch.bernoulli(x.clamp(0.0, 1.0), generator=generator)
        elif self.binarize == "static":
            if ids is None:
                x = (x > 0.5).to(torch.float32)
            else:
                u = torch.from_numpy(_static_uniforms(ids, self.binarize_seed, self.layout.numel))
                x = (u.to(x.device).view_as(x) < x).to(torch.float32)
        return x

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout.to_dict(),
            "scale_to_unit": self.scale_to_unit,
            "binarize": self.binarize,
            "binarize_seed": self.binarize_seed,
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        d = dict(d)
        d["layout"] = XLayout.from_dict(d["layout"])
        return cls(**d)


@dataclass
class TorchBatch:
    x: torch.Tensor
    """(B, *shape) float32 on the requested device, preprocessed."""
    ids: Any
    """(B,) ids: numpy int64 array, or a pyarrow array for string ids."""
    labels: torch.Tensor | None
    """(B,) int64 on CPU (-1 where unknown), or None when the data has no labels."""


def to_torch_batch(
    table: pa.Table,
    preprocessor: Preprocessor,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> TorchBatch:
    """One Arrow batch → TorchBatch; pixels cross to the device as uint8, then become float."""
    x = _x_tensor(table, preprocessor.layout)
    ids, labels = _ids(table), _labels(table)
    x = _model_input(x, preprocessor, device, generator, ids)
    return TorchBatch(x=x, ids=ids, labels=labels)


def _x_tensor(table: pa.Table, layout: XLayout) -> torch.Tensor:
    """(N, *shape) uint8/float32 CPU tensor over the Arrow buffer (zero-copy, read-only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read-only Arrow memory; we never write to it
        return torch.from_numpy(decode_x(table.column(schema.X), layout))


def _ids(table: pa.Table) -> Any:
    col = table.column(schema.ID)
    return col.to_numpy() if pa.types.is_integer(col.type) else col.combine_chunks()


def _labels(table: pa.Table) -> torch.Tensor | None:
    if schema.LABEL not in table.column_names:
        return None
    lab = table.column(schema.LABEL).fill_null(-1).to_numpy()
    return torch.from_numpy(np.array(lab, dtype=np.int64))  # (B,), small copy


def _model_input(
    x: torch.Tensor,
    preprocessor: Preprocessor,
    device: str | torch.device,
    generator: torch.Generator | None,
    ids: Any,
) -> torch.Tensor:
    if torch.device(device).type != "cpu":
        x = x.to(device, non_blocking=True)
    return preprocessor(x, generator, ids=ids)


# Rows fetched from Ray Data per batch are cut into training batches here: Ray's iterator costs
# about a millisecond per batch it hands out (bench/ingest.py), so asking it for 256-row batches
# would cap ingest far below a raw pyarrow scan. ~8 MiB of stored samples per fetch.
FETCH_BYTES = 8 << 20


def fetch_rows(batch_size: int, layout: XLayout) -> int:
    """Rows per Ray Data batch: a multiple of ``batch_size`` near FETCH_BYTES of samples."""
    return batch_size * max(1, FETCH_BYTES // (layout.nbytes * batch_size))


def iter_torch_batches(
    data: Any,
    batch_size: int,
    preprocessor: Preprocessor,
    device: str | torch.device = "cpu",
    shuffle_buffer: int = 0,
    seed: int | None = None,
    drop_last: bool = False,
    prefetch_batches: int = 4,
    with_meta: bool = True,
) -> Iterator[TorchBatch]:
    """Stream a ``ray.data.Dataset`` or a Ray Train shard (``DataIterator``) as TorchBatches.

    ``shuffle_buffer`` > 0 shuffles the rows within each fetch of at least that many rows (a
    fetch is ~8 MiB, so usually more); ``seed`` fixes the shuffle and the dynamic binarization
    draws (fresh per batch, reproducible per seed). ``with_meta=False`` skips ids and labels
    (the training loop needs neither). ``prefetch_batches`` counts training batches; Ray
    prefetches whole fetches covering at least that many.
    """
    seed = seed if seed is not None else torch.seed()
    generator = None
    if preprocessor.binarize == "dynamic":
        generator = torch.Generator(device=device).manual_seed(seed)
    fetch = fetch_rows(batch_size, preprocessor.layout)
    if shuffle_buffer:
        fetch = max(fetch, batch_size * math.ceil(shuffle_buffer / batch_size))
    cutter = _Cutter(batch_size, preprocessor, device, generator, drop_last, with_meta)
    shuffler = torch.Generator().manual_seed(seed) if shuffle_buffer else None
    tables = data.iter_batches(
        batch_size=fetch,
        batch_format="pyarrow",
        prefetch_batches=max(1, math.ceil(prefetch_batches * batch_size / fetch)),
    )
    with user_errors():
        for table in tables:
            # Shuffling here, one torch gather per batch, costs a fraction of Ray's local shuffle
            # buffer (an Arrow concat + take per fetch, in the training process).
            order = None if shuffler is None else torch.randperm(table.num_rows, generator=shuffler)
            yield from cutter.cut(table, order)


@dataclass(frozen=True)
class _Cutter:
    """Cuts one fetched Arrow table into TorchBatches, in ``order`` (a permutation) if given."""

    batch_size: int
    preprocessor: Preprocessor
    device: str | torch.device
    generator: torch.Generator | None
    drop_last: bool
    with_meta: bool

    def cut(self, table: pa.Table, order: torch.Tensor | None) -> Iterator[TorchBatch]:
        x_all = _x_tensor(table, self.preprocessor.layout)  # (N, *shape), zero-copy
        need_ids = self.with_meta or self.preprocessor.binarize == "static"
        ids_all = _ids(table) if need_ids else None
        labels_all = _labels(table) if self.with_meta else None
        n = table.num_rows
        for start in range(0, n, self.batch_size):
            # Only the last fetch can be short (Ray's batcher fills every other one exactly).
            stop = min(start + self.batch_size, n)
            if self.drop_last and stop - start < self.batch_size:
                break
            rows = slice(start, stop) if order is None else order[start:stop]
            ids = None if ids_all is None else _take(ids_all, rows)
            labels = None if labels_all is None else labels_all[rows]
            x = _model_input(x_all[rows], self.preprocessor, self.device, self.generator, ids)
            yield TorchBatch(x=x, ids=ids, labels=labels)


def _take(ids: Any, rows: slice | torch.Tensor) -> Any:
    if isinstance(rows, slice):
        return ids[rows]
    index = rows.numpy()
    return ids[index] if isinstance(ids, np.ndarray) else ids.take(pa.array(index))


def _partial_moments(table: pa.Table, layout: XLayout, scale: float) -> pa.Table:
    """One block → its row count, mean and M2 (sum of squared deviations), as float64 bytes."""
    x = decode_x(table.column(schema.X), layout).reshape(table.num_rows, -1).astype(np.float64)
    x *= scale
    mean = x.mean(axis=0) if len(x) else np.zeros(layout.numel)
    m2 = ((x - mean) ** 2).sum(axis=0)
    return pa.table(
        {"n": [len(x)], "mean": [mean.tobytes()], "m2": [m2.tobytes()]},
    )


def compute_standardization(
    ds: Any, layout: XLayout, scale_to_unit: bool | None = None
) -> tuple[list[float], list[float]]:
    """Per-feature (mean, std) of ``ds``'s ``x`` in one streaming pass.

    Each block reduces to (n, mean, M2) on the workers; the driver merges them with Chan's
    parallel update, so only (blocks × features) numbers travel. Zero std becomes 1.
    """
    scale = (
        1.0 / 255.0
        if (layout.dtype == "uint8" if scale_to_unit is None else scale_to_unit)
        else 1.0
    )
    parts = ds.map_batches(
        _partial_moments,
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={"layout": layout, "scale": scale},
    )
    n, mean, m2 = 0, np.zeros(layout.numel), np.zeros(layout.numel)
    with user_errors():
        for table in parts.iter_batches(batch_format="pyarrow", batch_size=None):
            cols = (table.column(c).to_pylist() for c in ("n", "mean", "m2"))
            for nb, mb, m2b in zip(*cols, strict=True):
                if nb == 0:
                    continue
                mb, m2b = np.frombuffer(mb), np.frombuffer(m2b)
                delta, total = mb - mean, n + nb
                mean = mean + delta * nb / total
                m2 = m2 + m2b + delta**2 * n * nb / total
                n = total
    if n == 0:
        raise ValueError("compute_standardization: the dataset has no rows")
    std = np.sqrt(m2 / n)
    std[std < 1e-8] = 1.0
    return mean.tolist(), std.tolist()
