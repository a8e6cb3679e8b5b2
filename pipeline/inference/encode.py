"""Batch encoding: a registered model turns a dataset into latent Parquet, exactly once.

    load model (registry, no unpickling) → read the data as the model was trained
    (``model_data``) → check output and shapes → read rows (Ray Data, streaming) →
    LatentEncoder actors → write tasks into a staging location → verify (files, rows,
    distinct ids) → commit (_SUCCESS)

The output is a local folder or any pyarrow filesystem URI (``s3://…``): see
``pipeline.data.staged_output`` for how each is committed exactly once.

Every check that can fail on user input runs before any row is read or any file is written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.cluster.ray_session import ensure_ray
from pipeline.config.data import DataConfig
from pipeline.data import schema
from pipeline.data.batches import Preprocessor
from pipeline.data.filesystems import Location, check_not_overlapping, check_shared
from pipeline.data.input_ids import check_distinct_ids
from pipeline.data.output_check import verify_staged
from pipeline.data.parquet_files import Progress, collect, file_name, write_file
from pipeline.data.ray_errors import user_errors
from pipeline.data.staged_output import open_output
from pipeline.errors import UserError
from pipeline.inference.latent_encoder import (
    BatchHook,
    EncodePlan,
    LatentEncoder,
    ModelPayload,
    map_on_actors,
    plan_for_cluster,
    rows_per_file,
)
from pipeline.inference.model_data import check_layout, resolve_model_data
from pipeline.tracking.registry import LoadedModel, load_vae, vaepipe_version

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 2048
MANIFEST_FORMAT = 1
PROGRESS_POLL_S = 1.0


@dataclass
class EncodeResult:
    out: str
    rows: int
    files: list[str]
    model: dict[str, Any]
    skipped: bool  # True: the output was already complete (a no-op rerun)
    seconds: float
    plan: dict[str, Any] = field(default_factory=dict)


def encode_dataset(
    model_uri: str,
    data: str,
    out: str | Path,
    *,
    data_overrides: Mapping[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    with_z: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
    batch_hook: BatchHook | None = None,
) -> EncodeResult:
    """Encode every row of ``data`` with the model at ``model_uri`` into ``out``; the data is
    read as the model was trained, but for ``data_overrides`` (``model_data``).

    ``progress(rows_done, rows_total)`` is called as latent files are finished (rows in them;
    the total is None unless the source knows it, e.g. Parquet). ``batch_hook(table)`` runs in
    the encoding actors on each input batch (``LatentEncoder``; tests inject worker faults).
    """
    start = time.perf_counter()
    staged = open_output(out)
    check_not_overlapping(staged.location, data)
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    loaded = load_vae(model_uri)
    resolved = resolve_model_data(loaded, data, data_overrides)
    cfg = _every_row(resolved.data)
    with staged.locked():
        staged.recover()
        existing = staged.existing()
        if existing is not None and not overwrite:
            return _already_done(existing, staged.out, loaded, cfg.source, with_z, start)
        staged.check_writable()
        src = _open(cfg)
        check_layout(loaded, src.layout, cfg.source)
        plan = _plan(threads)
        check_distinct_ids(src.plan)
        manifest = _write_and_commit(
            staged,
            src,
            loaded,
            resolved.preprocessor,
            plan,
            _Options(batch_size, with_z, batch_hook),
            progress,
        )
    seconds = time.perf_counter() - start
    log.info("encoded %d rows into %s in %.1fs", manifest["rows"], staged.out, seconds)
    return EncodeResult(
        str(staged.out),
        manifest["rows"],
        [f["path"] for f in manifest["files"]],
        loaded.describe(),
        False,
        seconds,
        asdict(plan),
    )


def _write_and_commit(
    staged: Any,
    src: _Whole,
    loaded: LoadedModel,
    preprocessor: Preprocessor,
    plan: EncodePlan,
    options: _Options,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the Ray job into a fresh staging dir and commit it; clean up on any failure."""
    staging = staged.begin()
    try:
        check_shared(staging, "output")
        with user_errors():
            meta = _file_metadata(loaded, src.source, src.digest)
            payload = ModelPayload.from_vae(loaded.vae, preprocessor, meta)
            records = _run(src.dataset(), staging, payload, plan, options)
            files = collect(records, src.rows, progress)
            verify_staged(staging, files, src.rows, src.source)
        committed = [
            {"path": staged.relative(f.path), "rows": f.rows, "bytes": f.bytes} for f in files
        ]
        manifest = _manifest(committed, loaded, src.source, options.with_z)
        staged.commit(manifest)
        if progress is not None:
            progress(manifest["rows"], manifest["rows"])
    except BaseException:
        staged.abort()
        raise
    return manifest


# ----------------------------------------------------------------------------- checks


def _every_row(cfg: DataConfig) -> DataConfig:
    # Encoding wants every row: no validation or test rows held out, no training-time cap.
    return dataclasses.replace(cfg, val_fraction=0.0, test_fraction=0.0, limit=None)


def _already_done(
    manifest: dict[str, Any],
    out: Path,
    loaded: LoadedModel,
    source: str,
    with_z: bool,
    start: float,
) -> EncodeResult:
    """A complete output from the same model and data is a no-op; anything else needs
    ``--overwrite``."""
    same = (
        _identity(manifest.get("model") or {}) == _identity(loaded.describe())
        and manifest.get("source") == source
        and bool(manifest.get("with_z")) == with_z
    )
    if not same:
        held = manifest.get("model") or {}
        raise UserError(
            f"output {out} already holds an encoding of {manifest.get('source')} by "
            f"{held.get('name')} version {held.get('version')} (run {held.get('run_id')}); "
            "pass --overwrite to replace it"
        )
    log.info("output %s is already complete; nothing to do (--overwrite to redo)", out)
    files = [f["path"] for f in manifest.get("files", [])]
    return EncodeResult(
        str(out),
        int(manifest.get("rows", 0)),
        files,
        manifest.get("model") or {},
        True,
        time.perf_counter() - start,
    )


def _identity(model: dict[str, Any]) -> tuple:
    return tuple(model.get(k) for k in ("name", "version", "run_id", "model_id"))


# ----------------------------------------------------------------------------- the Ray job


@dataclass(frozen=True)
class _Whole:
    """Every row of a source, planned on the driver (files checked, no Ray yet)."""

    plan: Any  # pipeline.data.sources.SourcePlan
    layout: Any
    source: str
    limit: int | None
    digest: str = ""

    @property
    def rows(self) -> int | None:
        """Rows to encode when known without reading them (for progress), else None."""
        known = self.plan.rows
        if self.limit is None:
            return known
        return self.limit if known is None else min(known, self.limit)

    def dataset(self) -> Any:
        """All rows, each read once: every read unit of every split, no carving.

        (``open_source`` gives train/val/test; their union would read carved sources 3 times.)
        """
        from pipeline.data.ingest import units_dataset

        units = [u for split in self.plan.units.values() for u in split]
        # One unit per task: Ray merges a task's output into one block, and encoding runs with a
        # small object store share, where big blocks stall reads (bench/encode.py: 0.76 -> 0.48).
        ds = units_dataset(units, self.plan.read, units_per_task=1)
        return ds.limit(self.limit) if self.limit is not None else ds


def _open(cfg: DataConfig) -> _Whole:
    from pipeline.data.lineage import source_digest
    from pipeline.data.sources import plan_source

    with user_errors():
        plan = plan_source(cfg)
    return _Whole(plan, plan.layout, cfg.source, cfg.limit, source_digest(cfg, plan))


def _plan(threads: int | None) -> EncodePlan:
    ensure_ray()
    plan = plan_for_cluster(threads)
    log.debug("encoding plan: %s", plan)
    return plan


@dataclass(frozen=True)
class _Options:
    batch_size: int
    with_z: bool
    batch_hook: BatchHook | None = None


def _run(
    ds: Any, staging: Location, payload: ModelPayload, plan: EncodePlan, options: _Options
) -> Iterable[dict[str, Any]]:
    """Encode every row and write the latent files; a record per file, as each is finished."""
    kwargs = {"payload": payload, "with_z": options.with_z, "batch_hook": options.batch_hook}
    encoded = map_on_actors(ds, LatentEncoder, kwargs, plan, options.batch_size)
    latent_dim = int(payload.model_config["latent_dim"])
    per_file = rows_per_file(latent_dim, options.with_z, plan.object_store_bytes)
    records = encoded.map_batches(
        write_latents,
        batch_size=per_file,
        batch_format="pyarrow",
        fn_kwargs={"root": staging, "row_group_rows": options.batch_size},
    )
    return records.iter_rows()


def write_latents(batch: pa.Table, root: Location, row_group_rows: int) -> pa.Table:
    """Ray map_batches fn: one latent file per batch (named by its ids: a retry overwrites)."""
    name = file_name(batch.column(schema.ID), batch.num_rows)
    f = write_file(root, name, batch, row_group_rows)
    return pa.table({"path": [f.path], "rows": [f.rows], "bytes": [f.bytes]})


def _file_metadata(loaded: LoadedModel, source: str, digest: str) -> dict[bytes, bytes]:
    return {
        schema.META_MODEL: json.dumps(loaded.describe()).encode(),
        schema.META_LATENT_DIM: str(int(loaded.vae.cfg.latent_dim)).encode(),
        schema.META_SOURCE: source.encode(),
        schema.META_VERSION: vaepipe_version().encode(),
        schema.META_DATA_DIGEST: digest.encode(),
        schema.META_TRAIN_DIGEST: (loaded.data_digest or "").encode(),
    }


def _manifest(
    files: list[dict[str, Any]], loaded: LoadedModel, source: str, with_z: bool
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "rows": sum(f["rows"] for f in files),
        "files": files,
        "model": loaded.describe(),
        "source": source,
        "latent_dim": int(loaded.vae.cfg.latent_dim),
        "with_z": with_z,
        "vaepipe_version": vaepipe_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
