"""Every bench script ends with one JSON line, also when it fails early or late."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_a_bad_argument_still_ends_with_a_json_error_line():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "quality.py"), "--epochs", "many"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    error = last_json(proc.stdout)["error"]
    assert "--epochs" in error and "many" in error and "\n" not in error


def test_a_failure_inside_the_benchmark_ends_with_its_one_line_reason(capsys):
    def main() -> dict:
        raise RuntimeError("worker group failed:\n  node lost")

    with pytest.raises(SystemExit) as info:
        common.run(main)
    out, err = capsys.readouterr()
    assert info.value.code == 1
    assert last_json(out) == {"error": "RuntimeError: worker group failed: node lost"}
    assert "Traceback" in err  # the whole story stays on stderr


def test_figures_become_the_last_line_and_exit_0(capsys):
    with pytest.raises(SystemExit) as info:
        common.run(lambda: {"ratio": 0.98765432, "nan": float("nan"), "pairs": [1.0]})
    assert info.value.code == 0
    assert last_json(capsys.readouterr().out) == {"ratio": 0.9877, "nan": None, "pairs": [1.0]}


def test_abba_alternates_the_order():
    assert [common.abba(("a", "b", "c"), c) for c in range(2)] == [["a", "b", "c"], ["c", "b", "a"]]
