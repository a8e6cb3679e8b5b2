"""Paths and URIs resolved one way; object-store commits by manifest; page checksums (no Ray)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from pipeline.config.data import DataConfig
from pipeline.data.filesystems import resolve
from pipeline.data.object_store_output import ObjectStoreOutput
from pipeline.data.parquet_files import write_file
from pipeline.data.sources import plan_source, rows_table
from pipeline.data.staged_output import MANIFEST, open_output, read_manifest
from pipeline.errors import UserError


def digits_like(n: int, start: int = 0):
    rng = np.random.default_rng(start)
    x = rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)
    return rows_table(np.arange(start, start + n, dtype=np.int64), x, rng.integers(0, 10, n))


def test_local_paths_and_file_uris_resolve_to_the_same_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in ("data/x", str(tmp_path / "data" / "x"), f"file://{tmp_path}/data/x"):
        where = resolve(text)
        assert where.is_local and where.path == str(tmp_path / "data" / "x"), text
    with pytest.raises(UserError, match="nosuch://b/x: cannot open filesystem") as info:
        resolve("nosuch://b/x")
    assert "\n" not in str(info.value)


def test_s3_uri_reaches_the_endpoint_in_aws_endpoint_url(bucket):
    where = resolve(f"{bucket}/a/b")
    assert not where.is_local and where.uri == f"{bucket}/a/b"
    where.child("note.txt").write_text("hello")
    # A second, independent client sees the object: it went to the server, not a local folder.
    fs, path = pafs.FileSystem.from_uri(f"{bucket}/a/b/note.txt")
    assert fs.get_file_info(path).size == 5 and not os.path.exists("s3:")


def _stage(out: ObjectStoreOutput, start: int) -> dict:
    staging = out.begin()
    f = write_file(staging, "part-0.parquet", digits_like(20, start), 8)
    return {"files": [{"path": out.relative(f.path), "rows": f.rows, "bytes": f.bytes}]}


class Killed(Exception):
    pass


def _die_at(point: str):
    def fault(at: str) -> None:
        if at == point:
            raise Killed(at)

    return fault


def test_object_store_output_commits_by_manifest_and_recovers(bucket):
    uri = f"{bucket}/latent"
    # Killed after writing, before the manifest: nothing committed, nothing readable.
    first = open_output(uri)
    assert isinstance(first, ObjectStoreOutput)
    with pytest.raises(Killed):
        first.commit(_stage(first, 0), fault=_die_at("encode:written"))
    assert first.existing() is None and read_manifest(first.location) is None
    with pytest.raises(UserError, match="unfinished vaepipe output"):
        plan_source(DataConfig(source=uri))
    # The rerun deletes the dead attempt, then commits its own.
    second = open_output(uri)
    second.recover()
    assert not first.staging.exists()
    manifest = _stage(second, 100)
    second.commit(manifest)
    assert second.existing() == manifest
    # A straggler of a dead attempt is ignored by readers: only listed files count.
    stray = open_output(uri)
    stray.begin()
    write_file(stray.staging, "part-0.parquet", digits_like(5, 0), 8)
    plan = plan_source(DataConfig(source=uri))
    assert {u.path for u in plan.units["train"]} == {f"{second.staging.path}/part-0.parquet"}
    ids = [i for u in plan.units["train"] for i in plan.read(u).column("id").to_pylist()]
    assert ids == list(range(100, 120))
    # --overwrite: the new manifest replaces the old in one write; old attempts are deleted.
    third = open_output(uri)
    third.recover()
    assert not stray.staging.exists() and second.staging.exists()
    third.commit(_stage(third, 200))
    assert not second.staging.exists()
    assert json.loads(third.location.child(MANIFEST).read_text())["files"][0]["path"].startswith(
        third.attempt
    )


def test_object_store_output_refuses_foreign_prefix_and_missing_bucket(bucket):
    resolve(f"{bucket}/theirs/data.csv").write_text("a,b")
    with pytest.raises(UserError, match="not a vaepipe output"):
        open_output(f"{bucket}/theirs").existing()
    with pytest.raises(UserError, match="bucket 'no-such-bucket-x' does not exist"):
        open_output("s3://no-such-bucket-x/out").check_writable()


def _flip_byte_in_page(path, column: str) -> None:
    """Flip one byte inside the last data page of ``column`` (its payload, not its header)."""
    meta = pq.read_metadata(path).row_group(0)
    chunk = next(
        meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column
    )
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    at = start + chunk.total_compressed_size - 8
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_a_page_fails_the_read_with_the_file_named(tmp_path):
    f = write_file(resolve(tmp_path), "part-0.parquet", digits_like(300), 300)
    path = tmp_path / f.path
    assert pq.ParquetFile(path).metadata.num_rows == 300
    _flip_byte_in_page(path, "x")
    plan = plan_source(DataConfig(source=str(path)))
    with pytest.raises(UserError) as info:
        plan.read(plan.units["train"][0])
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "checksum" in message.lower() or "crc" in message.lower(), message
