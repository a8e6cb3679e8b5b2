"""Any source → sharded Parquet in the storage layout, converted on the cluster, exactly once.

Output (a local folder or any pyarrow filesystem URI): ``{train,val,test}/part-*.parquet``
files and the ``_SUCCESS`` manifest (layout, rows per split, every file with its split, rows
and bytes). The split of every row is computed once here (the source's own, else carved by id
hash) and kept when the output is read back.

Ray Data tasks read the source's units and write the shards themselves (one pass: each task
writes one file per split it has rows for); the driver only sees one small record per file.
The output is committed with ``pipeline.data.staged_output`` like ``encode``'s, after
``pipeline.data.output_check`` verified files, row counts and distinct ids on the cluster.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.filesystems import (
    Location,
    check_not_overlapping,
    check_shared,
    is_uri,
    resolve,
)
from pipeline.data.ingest import SPLIT_CODES, Carve, split_dataset
from pipeline.data.input_ids import check_distinct_ids
from pipeline.data.output_check import verify_staged
from pipeline.data.parquet_files import Progress, WrittenFile, collect, file_name, write_file
from pipeline.data.ray_errors import user_errors
from pipeline.data.schema import XLayout
from pipeline.data.sources import BUILTINS, SPLITS, SourcePlan, plan_source
from pipeline.data.staged_output import open_output
from pipeline.errors import UserError

log = logging.getLogger(__name__)


ROW_GROUP_BYTES = 8 << 20
MAX_UNITS_PER_TASK = 8
MANIFEST_FORMAT = 1
RECORD_SCHEMA = pa.schema(
    [("split", pa.string()), ("path", pa.string()), ("rows", pa.int64()), ("bytes", pa.int64())]
)


@dataclass
class PrepareResult:
    out: str
    rows: dict[str, int]
    files: list[str] = field(default_factory=list)
    layout: XLayout | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class ShardSpec:
    """What every write task needs (pickled once per task)."""

    staging: Location
    layout: XLayout
    source: str
    row_group_rows: int

    def target(self, table: pa.Table) -> pa.Table:
        """``table`` with the layout in its schema metadata and a non-null id column."""
        meta = {
            schema.META_X_SHAPE: json.dumps(list(self.layout.shape)).encode(),
            schema.META_X_DTYPE: self.layout.dtype.encode(),
            schema.META_SOURCE: self.source.encode(),
        }
        fields = [f.with_nullable(f.name != schema.ID) for f in table.schema]
        return table.cast(pa.schema(fields, metadata=meta))

    def write(self, split: str, table: pa.Table, name: str | None = None) -> WrittenFile:
        """``split/name`` (default: named by the rows' ids), in row groups of ~8 MiB."""
        name = name or file_name(table.column(schema.ID), table.num_rows)
        target = self.target(table)
        return write_file(self.staging, f"{split}/{name}", target, self.row_group_rows, split)


def _records(files: list[WrittenFile]) -> pa.Table:
    rows = [f.to_dict() for f in files]
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def write_units(
    batch: pa.Table,
    units: list[tuple[str, Any]],
    read: Callable[[Any], pa.Table],
    carve: Carve | None,
    spec: ShardSpec,
) -> pa.Table:
    """Ray map_batches fn: read these units (indices in ``id``), write one file per split."""
    per_split: dict[str, list[pa.Table]] = {s: [] for s in SPLITS}
    indices = batch.column("id").to_pylist()
    # Named by the task's first unit: unique among tasks, the same for a retry of this task.
    name = f"part-{indices[0]:06d}.parquet" if indices else None
    for i in indices:
        split, unit = units[i]
        table = read(unit)
        if split == "train" and carve is not None:
            codes = carve.codes(table.column(schema.ID))
            for s in SPLITS:
                per_split[s].append(table.filter(pa.array(codes == SPLIT_CODES[s])))
        else:
            per_split[split].append(table)
    written = []
    for split, tables in per_split.items():
        table = pa.concat_tables(tables) if tables else None
        if table is not None and table.num_rows:
            written.append(spec.write(split, table.combine_chunks(), name))
    return _records(written)


def write_rows(batch: pa.Table, split: str, spec: ShardSpec) -> pa.Table:
    """Ray map_batches fn for a ``--limit``ed split: one file per block."""
    return _records([spec.write(split, batch)] if batch.num_rows else [])


def _carve(plan: SourcePlan, cfg: DataConfig) -> Carve | None:
    carved = [s for s in SPLITS if s not in plan.units]
    if not carved:
        return None
    val = cfg.val_fraction if "val" in carved else 0.0
    return Carve(val, cfg.test_fraction if "test" in carved else 0.0, cfg.seed)


def _write_all(plan: SourcePlan, cfg: DataConfig, spec: ShardSpec) -> Iterable[dict[str, Any]]:
    """Every row of the source, once, into the staging location (Ray Data tasks); a record
    per file written, streamed as the files finish."""
    import ray
    import ray.data

    if cfg.limit is not None:  # a subset per split: each split its own (limited) stream
        parts = [
            split_dataset(plan, split, cfg).map_batches(
                write_rows,
                batch_format="pyarrow",
                batch_size=None,
                fn_kwargs={"split": split, "spec": spec},
            )
            for split in SPLITS
        ]
        return (r for ds in parts for r in ds.iter_rows())
    units = [(split, u) for split, us in plan.units.items() for u in us]
    if not units:
        return iter(())
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1))) if ray.is_initialized() else 1
    per_task = max(1, min(MAX_UNITS_PER_TASK, -(-len(units) // cpus)))
    ds = ray.data.range(len(units), override_num_blocks=-(-len(units) // per_task))
    ds = ds.map_batches(
        write_units,
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={"units": units, "read": plan.read, "carve": _carve(plan, cfg), "spec": spec},
    )
    return ds.iter_rows()


def _check_input_shared(source: str) -> None:
    if source in BUILTINS or is_uri(source):
        return
    check_shared(resolve(source), "input")


def prepare(
    cfg: DataConfig,
    out: str,
    overwrite: bool = False,
    connect: Callable[[], None] | None = None,
    progress: Progress | None = None,
) -> PrepareResult:
    """Convert ``cfg.source`` to sharded Parquet at ``out``; all or nothing, verified.

    ``connect`` starts or joins Ray (default: Ray's own auto-init); it is called only once
    the output and the source have passed the driver-side checks. ``progress(rows_done,
    rows_total)`` is called as shard files are finished (total None when unknown).
    """
    start = time.perf_counter()
    staged = open_output(out)
    check_not_overlapping(staged.location, cfg.source)
    with staged.locked():
        staged.recover()
        if staged.existing() is not None and not overwrite:
            raise UserError(f"{staged.out}: exists and is not empty; pass --overwrite to replace")
        staged.check_writable()
        with user_errors():
            plan = plan_source(cfg)
        if connect is not None:
            connect()
        _check_input_shared(cfg.source)
        check_distinct_ids(plan)
        files, manifest = _stage(staged, plan, cfg, progress)
    result = PrepareResult(str(staged.out), manifest["rows"], [f.path for f in files], plan.layout)
    result.seconds = time.perf_counter() - start
    return result


def _stage(
    staged: Any, plan: SourcePlan, cfg: DataConfig, progress: Progress | None
) -> tuple[list[WrittenFile], dict]:
    """Write, verify and commit; on any failure nothing is committed and staging is removed."""
    staging = staged.begin()
    try:
        check_shared(staging, "output")
        row_bytes = plan.layout.nbytes + 16
        spec = ShardSpec(staging, plan.layout, cfg.source, max(1, ROW_GROUP_BYTES // row_bytes))
        with user_errors():
            expected = plan.rows if cfg.limit is None else None
            files = collect(_write_all(plan, cfg, spec), expected, progress)
            verify_staged(staging, files, expected, cfg.source)
        rows = {s: sum(f.rows for f in files if f.split == s) for s in SPLITS}
        if rows["train"] == 0:
            raise UserError(f"{cfg.source}: zero rows in the train split")
        committed = [WrittenFile(staged.relative(f.path), f.rows, f.bytes, f.split) for f in files]
        manifest = _manifest(plan, cfg, rows, committed)
        staged.commit(manifest)
    except BaseException:
        staged.abort()
        raise
    return committed, manifest


def _manifest(
    plan: SourcePlan, cfg: DataConfig, rows: dict[str, int], files: list[WrittenFile]
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "kind": "prepare",
        "source": cfg.source,
        "description": plan.description,
        "rows": rows,
        "layout": plan.layout.to_dict(),
        "has_labels": plan.has_labels,
        "files": [f.to_dict() for f in files],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
