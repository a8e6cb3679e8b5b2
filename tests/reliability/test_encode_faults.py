"""Encode under faults (issue #12, item 8): a worker process that dies once changes nothing in
the output. The deterministic error in one input file (a flipped bit in a page, NaN rows, bad
ids: the job fails naming the file, exit 2, nothing committed or staged) is the bad-input
catalogue's, for every command: ``test_bad_input_in_tasks.py``."""

from __future__ import annotations

from pathlib import Path

import bad_files
import fault_hooks
import pyarrow.parquet as pq
import pytest
import tiny_models

from pipeline.data.schema import XLayout
from pipeline.inference.encode import encode_dataset

pytestmark = [pytest.mark.reliability, pytest.mark.ray]

MODEL = "models:/tiny@champion"
DIGITS_ROWS = 1797


def hidden_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".vaepipe-" in p.name)


def test_a_worker_that_exits_once_changes_nothing(ray_local, tmp_path):
    fault_hooks.by_value()
    tiny_models.register("tiny", XLayout(bad_files.SHAPE, "uint8"), "enc", "digits")
    opts = {"with_z": True, "batch_size": 300}  # 6 batches: the fault is mid-job
    ref = encode_dataset(MODEL, "digits", tmp_path / "reference", **opts)
    marker = tmp_path / "exited"
    hook = fault_hooks.ExitOnce(str(marker), row_id=1000)
    got = encode_dataset(MODEL, "digits", tmp_path / "faulty", batch_hook=hook, **opts)

    assert marker.exists()  # the worker did die
    print(marker.read_text().strip())
    assert got.rows == ref.rows == DIGITS_ROWS
    expected = pq.read_table(tmp_path / "reference").sort_by("id")
    table = pq.read_table(tmp_path / "faulty").sort_by("id")
    assert (
        table.column_names == expected.column_names == ["id", "mu", "logvar", "z", "score", "label"]
    )
    for name in expected.column_names:  # same ids, latents, samples and scores, bit for bit
        assert table.column(name).equals(expected.column(name)), name
    assert hidden_leftovers(tmp_path) == []
