"""Parquet: a file, a directory (``train/``, ``val/``, ``test/`` subfolders are kept as splits,
as ``vaepipe prepare`` writes them) or any pyarrow filesystem URI (``s3://``, ``file://``).

The driver reads every footer (in threads) to check that files are Parquet, share one schema
and hold rows; a unit is one row group. The data column is taken by name or detected:
``fixed_size_binary`` is used as stored (shape from the schema metadata), lists of numbers are
converted (floats → float32, integers → uint8 in 0..255). Tabular data (``data.columns``: one
number per column) is assembled into float32 samples inside the read tasks. Ids come from
``id_column`` when present, else ``file_index << 32 | row``. Other columns pass through.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.filesystems import Location, resolve
from pipeline.data.object_store_output import ATTEMPT_PREFIX
from pipeline.data.parquet_files import read_row_group
from pipeline.data.schema import XLayout, decode_x, encode_x
from pipeline.data.sources import PARQUET_SUFFIXES, SPLITS, SourcePlan
from pipeline.data.sources.parquet_columns import (
    detect_layout,
    features_to_x,
    pick_column,
    pick_features,
)
from pipeline.data.staged_output import MANIFEST, read_manifest
from pipeline.errors import UserError


@dataclass(frozen=True)
class FileInfo:
    path: str
    schema: pa.Schema
    row_groups: tuple[int, ...]  # rows per row group


@dataclass(frozen=True)
class ReadSpec:
    """What every unit of one Parquet source shares (pickled once per task)."""

    fs: pafs.FileSystem
    column: str  # "" for tabular data
    kind: str  # "binary" | "float_list" | "int_list" | "columns"
    layout: XLayout
    id_column: str | None
    label_column: str | None
    features: tuple[str, ...] = ()  # kind "columns": the feature columns, in sample order


@dataclass(frozen=True)
class ParquetUnit:
    spec: ReadSpec
    path: str
    file_index: int
    row_group: int
    row_offset: int


def _resolve(src: str) -> tuple[pafs.FileSystem, str]:
    where = resolve(src)
    return where.fs, where.path


def _committed(fs: pafs.FileSystem, root: str) -> dict[str, list[str]] | None:
    """{split: files} listed by a vaepipe output's ``_SUCCESS`` manifest (only those count:
    an object-store output may hold files of other, uncommitted attempts); None when ``root``
    is not a vaepipe output. An output begun but never committed is refused."""
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return None
    manifest = read_manifest(Location(fs, root, root))
    if manifest is None:
        children = fs.get_file_info(pafs.FileSelector(root))
        if any(c.base_name.startswith(ATTEMPT_PREFIX) for c in children):
            raise UserError(
                f"{root}: an unfinished vaepipe output (no {MANIFEST}); rerun the command "
                "that writes it"
            )
        return None
    rows = manifest.get("rows")
    listed: dict[str, list[str]] = {s: [] for s in rows} if isinstance(rows, dict) else {}
    for f in manifest.get("files", []):
        listed.setdefault(f.get("split") or "train", []).append(f"{root}/{f['path']}")
    return listed


def _list(fs: pafs.FileSystem, path: str) -> list[str]:
    """Parquet files under ``path`` (a file lists itself), sorted; _ and . names skipped."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"{path}: no such file or directory")
    if info.type == pafs.FileType.File:
        return [path]
    entries = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    if not entries:
        raise UserError(f"{path}: directory is empty")
    files = [
        e.path
        for e in entries
        if e.type == pafs.FileType.File
        and not any(
            part.startswith(("_", ".")) for part in os.path.relpath(e.path, path).split("/")
        )
        and e.base_name.lower().endswith(PARQUET_SUFFIXES)
    ]
    if not files:
        raise UserError(f"{path}: no Parquet files (*.parquet) in directory")
    return sorted(files)


def _footer(fs: pafs.FileSystem, path: str) -> FileInfo:
    try:
        with fs.open_input_file(path) as f:
            meta = pq.ParquetFile(f).metadata
            arrow_schema = meta.schema.to_arrow_schema()
    except (pa.ArrowInvalid, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a Parquet file or truncated ({msg})") from None
    rgs = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    return FileInfo(path, arrow_schema, rgs)


def _check_same_schema(files: list[FileInfo]) -> None:
    first = files[0].schema.remove_metadata()
    for f in files[1:]:
        other = f.schema.remove_metadata()
        if not other.equals(first):
            a = {fld.name: str(fld.type) for fld in first}
            b = {fld.name: str(fld.type) for fld in other}
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            raise UserError(
                f"{f.path}: schema differs from {files[0].path} (columns {', '.join(diff)})"
            )


def _split_dirs(fs: pafs.FileSystem, root: str) -> dict[str, str]:
    """{split: dir} when ``root`` has split subfolders (``train/`` at least)."""
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return {}
    dirs = {s: f"{root.rstrip('/')}/{s}" for s in SPLITS}
    found = {s: d for s, d in dirs.items() if fs.get_file_info(d).type == pafs.FileType.Directory}
    return found if "train" in found else {}


def _id_column(cfg: DataConfig, sch: pa.Schema, path: str) -> str | None:
    if cfg.id_column not in sch.names:
        return None
    t = sch.field(cfg.id_column).type
    if not (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise UserError(
            f"{path}: id column {cfg.id_column!r} has type {t} (expected int or string)"
        )
    return cfg.id_column


def _label_column(cfg: DataConfig, sch: pa.Schema, path: str) -> str | None:
    if cfg.label_column not in sch.names:
        return None
    t = sch.field(cfg.label_column).type
    if not pa.types.is_integer(t):
        raise UserError(f"{path}: label column {cfg.label_column!r} has type {t} (expected int)")
    return cfg.label_column


def plan(cfg: DataConfig) -> SourcePlan:
    fs, root = _resolve(cfg.source)
    listed = _committed(fs, root)
    if listed is None:
        split_dirs = _split_dirs(fs, root) or {"train": root}
        listed = {s: _list(fs, d) for s, d in split_dirs.items()}
    all_paths = [p for ps in listed.values() for p in ps]
    with ThreadPoolExecutor(max_workers=min(16, len(all_paths))) as pool:
        infos = dict(zip(all_paths, pool.map(lambda p: _footer(fs, p), all_paths), strict=True))
    files = list(infos.values())
    _check_same_schema(files)
    total = sum(sum(f.row_groups) for f in files)
    if total == 0:
        raise UserError(f"{cfg.source}: zero rows in {len(files)} Parquet file(s)")
    first = files[0]
    features: tuple[str, ...] = ()
    if cfg.columns is not None or cfg.numeric_columns:
        features = pick_features(first.schema, cfg, first.path)
        column, kind, layout = "", "columns", XLayout((len(features),), "float32")
    else:
        column = pick_column(first.schema, cfg, first.path)
        kind, layout = detect_layout(fs, first, column, files)
    spec = ReadSpec(
        fs,
        column,
        kind,
        layout,
        _id_column(cfg, first.schema, first.path),
        _label_column(cfg, first.schema, first.path),
        features,
    )
    file_index = {p: i for i, p in enumerate(all_paths)}
    units: dict[str, list[ParquetUnit]] = {}
    for split, paths in listed.items():
        units[split] = []
        for path in paths:
            offsets = np.concatenate([[0], np.cumsum(infos[path].row_groups)]).tolist()
            units[split] += [
                ParquetUnit(spec, path, file_index[path], rg, offsets[rg])
                for rg, n in enumerate(infos[path].row_groups)
                if n > 0
            ]
    return SourcePlan(
        units=units,
        read=read_unit,
        layout=layout,
        has_labels=spec.label_column is not None,
        description=f"Parquet {cfg.source} ({len(files)} files, {total} rows)",
        rows=total,
    )


def _ids(unit: ParquetUnit, table: pa.Table) -> pa.Array:
    spec = unit.spec
    if spec.id_column is None:
        base = (unit.file_index << 32) + unit.row_offset
        return pa.array(np.arange(base, base + table.num_rows, dtype=np.int64))
    ids = table.column(spec.id_column).combine_chunks()
    where = f"{unit.path}: column {spec.id_column!r} (row group {unit.row_group})"
    if ids.null_count:
        raise UserError(f"{where}: null ids")
    if len(pc.unique(ids)) != len(ids):
        counts = pc.value_counts(ids)
        dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"]
        raise UserError(f"{where}: duplicate id {dup}")
    return ids.cast(pa.int64()) if pa.types.is_integer(ids.type) else ids.cast(pa.string())


def _x(unit: ParquetUnit, table: pa.Table) -> pa.Array:
    spec = unit.spec
    if spec.kind == "columns":
        return features_to_x(table, spec.features, f"{unit.path} (row group {unit.row_group})")
    col = table.column(spec.column).combine_chunks()
    where = f"{unit.path}: column {spec.column!r} (row group {unit.row_group})"
    if col.null_count:
        raise UserError(f"{where}: null values")
    if spec.kind == "binary":
        if spec.layout.dtype == "float32" and not np.isfinite(decode_x(col, spec.layout)).all():
            raise UserError(f"{where}: NaN or Inf values")
        return col
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if (lengths != spec.layout.numel).any():
        bad = int(lengths[lengths != spec.layout.numel][0])
        raise UserError(f"{where}: a row has {bad} values (expected {spec.layout.numel})")
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    if spec.kind == "float_list":
        values = values.astype(np.float32, copy=False)
        if not np.isfinite(values).all():
            raise UserError(f"{where}: NaN or Inf values")
    else:
        if values.size and (values.min() < 0 or values.max() > 255):
            raise UserError(f"{where}: integer pixels outside 0..255")
        values = values.astype(np.uint8)
    return encode_x(values.reshape(len(col), *spec.layout.shape))


def read_unit(unit: ParquetUnit) -> pa.Table:
    spec = unit.spec
    table = read_row_group(spec.fs, unit.path, unit.row_group)  # page checksums verified
    cols = {schema.ID: _ids(unit, table), schema.X: _x(unit, table)}
    if spec.label_column is not None:
        cols[schema.LABEL] = table.column(spec.label_column).cast(pa.int64())
    used = {spec.column, spec.id_column, spec.label_column, *spec.features, *cols}
    for name in table.column_names:
        if name not in used:
            cols[name] = table.column(name)
    return pa.table(cols)
