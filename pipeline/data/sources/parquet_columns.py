"""Which Parquet column holds the samples, and what layout it has."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.schema import XLayout, encode_x
from pipeline.errors import UserError

LIST_TYPES = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)


def _is_list(t: pa.DataType) -> bool:
    return any(check(t) for check in LIST_TYPES)


def _is_data_type(t: pa.DataType) -> bool:
    if pa.types.is_fixed_size_binary(t):
        return True
    return _is_list(t) and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type))


def pick_column(sch: pa.Schema, cfg: DataConfig, path: str) -> str:
    """``cfg.column`` if present, else ``x``, else the only array-typed column."""
    if cfg.column is not None:
        if cfg.column not in sch.names:
            raise UserError(f"{path}: no column {cfg.column!r} (columns: {', '.join(sch.names)})")
        return cfg.column
    if schema.X in sch.names:
        return schema.X
    skip = {cfg.id_column, cfg.label_column}
    found = [f.name for f in sch if f.name not in skip and _is_data_type(f.type)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError(
            f"{path}: no data column (fixed_size_binary or list of numbers) among "
            f"{', '.join(sch.names)}; name one with column, or list feature columns with "
            "columns (or set numeric_columns: true)"
        )
    raise UserError(f"{path}: several data columns ({', '.join(found)}); name one with column")


def _meta_shape(sch: pa.Schema, numel: int, path: str, dtype: str) -> tuple[int, ...]:
    try:
        shape, meta_dtype = schema.x_layout(sch)
    except KeyError:
        return (numel,)
    if meta_dtype != dtype or schema.x_nbytes(shape, dtype) != schema.x_nbytes((numel,), dtype):
        raise UserError(
            f"{path}: wrong shape or dtype: metadata says {list(shape)} {meta_dtype}, "
            f"column holds {numel} {dtype} values per row"
        )
    return shape


def _first_list_length(fs: pafs.FileSystem, path: str, column: str) -> int:
    with fs.open_input_file(path) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=1, columns=[column]):
            if batch.num_rows:
                value = batch.column(0)[0]
                if not value.is_valid:
                    raise UserError(f"{path}: column {column!r} has null rows")
                return len(value)
    raise UserError(f"{path}: column {column!r} has no rows")


def detect_layout(
    fs: pafs.FileSystem, first: Any, column: str, files: list[Any]
) -> tuple[str, XLayout]:
    """(read kind, layout) of ``column``: binary as stored, or a list converted per batch."""
    t = first.schema.field(column).type
    path = first.path
    if pa.types.is_fixed_size_binary(t):
        meta = first.schema.metadata or {}
        dtype = meta.get(schema.META_X_DTYPE, b"uint8").decode()
        if dtype not in schema.X_DTYPES:
            raise UserError(f"{path}: wrong dtype {dtype!r} in metadata (expected uint8/float32)")
        item = 1 if dtype == "uint8" else 4
        if t.byte_width % item:
            raise UserError(f"{path}: column {column!r} width {t.byte_width} is not {dtype}")
        numel = t.byte_width // item
        return "binary", XLayout(_meta_shape(first.schema, numel, path, dtype), dtype)
    if _is_list(t) and _is_list(t.value_type):
        raise UserError(f"{path}: column {column!r} is a nested list {t}; flatten it to one list")
    if not _is_data_type(t):
        raise UserError(
            f"{path}: column {column!r} has type {t} "
            "(expected fixed_size_binary or a list of numbers)"
        )
    kind, dtype = ("float_list", "float32")
    if pa.types.is_integer(t.value_type):
        kind, dtype = ("int_list", "uint8")
    if pa.types.is_fixed_size_list(t):
        numel = t.list_size
    else:
        numel = next(_first_list_length(fs, f.path, column) for f in files if sum(f.row_groups) > 0)
    if numel == 0:
        raise UserError(f"{path}: column {column!r} holds empty lists")
    return kind, XLayout(_meta_shape(first.schema, numel, path, dtype), dtype)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def pick_features(sch: pa.Schema, cfg: DataConfig, path: str) -> tuple[str, ...]:
    """Tabular data: the feature columns ``cfg.columns`` names (``cfg.numeric_columns``: every
    numeric column but the id and label), each checked to hold one number per row."""
    if cfg.numeric_columns:
        skip = {cfg.id_column, cfg.label_column}
        found = tuple(f.name for f in sch if f.name not in skip and _is_number(f.type))
        if not found:
            raise UserError(f"{path}: no numeric columns besides the id and label")
        return found
    missing = [c for c in cfg.columns if c not in sch.names]
    if missing:
        raise UserError(f"{path}: no column {missing[0]!r} (columns: {', '.join(sch.names)})")
    for name in cfg.columns:
        t = sch.field(name).type
        if not _is_number(t):
            raise UserError(f"{path}: feature column {name!r} has type {t} (expected a number)")
    return tuple(cfg.columns)


def features_to_x(table: pa.Table, features: tuple[str, ...], where: str) -> pa.Array:
    """(N,) rows of F numeric columns → (N,) fixed_size_binary of F float32, checked."""
    x = np.empty((table.num_rows, len(features)), np.float32)  # (N, F)
    for j, name in enumerate(features):
        col = table.column(name)
        if col.null_count:
            raise UserError(f"{where}: null values in column {name!r}")
        x[:, j] = col.to_numpy()
    if not np.isfinite(x).all():
        bad = features[int(np.flatnonzero(~np.isfinite(x).all(axis=0))[0])]
        raise UserError(f"{where}: NaN or Inf values in column {bad!r}")
    return encode_x(x)
