"""A source's fingerprint: what a training run learned from, cheap enough for every run.

The digest hashes the file listing (relative path, size, modification time of every file under
the source, on any pyarrow filesystem), the source's own description (row counts, shapes) and
the config fields that select columns and values (the shapes seed is in its description).
Rewriting, adding or removing a file changes it; reading the bytes would not scale to the
datasets vaepipe is for.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pyarrow.fs as pafs

from pipeline.config.data import DataConfig

# DataConfig fields that change the rows or values read (not how they are split or batched:
# training and encoding the same source give the same digest; rows per split go beside it).
SELECTION_FIELDS = (
    "source", "column", "columns", "numeric_columns", "id_column", "label_column", "image_size",
    "shapes_rows", "shapes_resolution",
)  # fmt: skip
DIGEST_CHARS = 16


def _filesystem(source: str) -> tuple[pafs.FileSystem, str] | None:
    if "://" in source:
        try:
            return pafs.FileSystem.from_uri(source)
        except (ValueError, OSError):
            return None
    if os.path.exists(source):
        return pafs.LocalFileSystem(), os.path.abspath(source)
    return None  # a builtin name


def file_listing(source: str) -> list[list[Any]]:
    """[[relative path, size, mtime ns], ...] of the files under ``source`` (or the file)."""
    found = _filesystem(source)
    if found is None:
        return []
    fs, root = found
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        entries = [info]
    elif info.type == pafs.FileType.Directory:
        entries = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    else:
        return []
    return sorted(
        [os.path.relpath(e.path, root), e.size, e.mtime_ns]
        for e in entries
        if e.type == pafs.FileType.File
    )


def source_digest(cfg: DataConfig, plan: Any) -> str:
    """Hex fingerprint of ``cfg``'s data as planned (``plan``: a ``SourcePlan``)."""
    selection = {name: getattr(cfg, name, None) for name in SELECTION_FIELDS}
    payload = {
        "selection": selection,
        "description": plan.description,
        "rows": plan.rows,
        "layout": plan.layout.to_dict(),
        "files": file_listing(cfg.source),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:DIGEST_CHARS]
