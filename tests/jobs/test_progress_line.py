"""The progress renderer: an updating line on a terminal, plain lines at a modest rate in logs."""

from __future__ import annotations

import io

from jobs.progress import ProgressLine, describe, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_names_rows_rate_and_eta():
    text = describe("encode", 1_200, 10_000, elapsed=3.0)
    assert text == "encode: 1,200/10,000 rows (12%)  400 rows/s  ETA 0:22"
    assert describe("prepare", 500, None, elapsed=2.0) == "prepare: 500 rows  250 rows/s  in 0:02"
    assert format_duration(3725) == "1:02:05"


def test_a_log_gets_a_plain_line_every_interval_and_the_last_figures():
    log, clock = io.StringIO(), Clock()
    with ProgressLine("evaluate", stream=log, clock=clock) as progress:
        for second in range(25):  # one batch a second, 100 rows each
            clock.now = float(second)
            progress((second + 1) * 100, None)
    lines = log.getvalue().splitlines()
    # t=0, t=10, t=20, then the final figures at close: not one line per batch.
    assert [line.split("  ")[0] for line in lines] == [
        "evaluate: 100 rows",
        "evaluate: 1,100 rows",
        "evaluate: 2,100 rows",
        "evaluate: 2,500 rows",
    ]
    assert "\r" not in log.getvalue()


def test_a_terminal_line_updates_in_place_and_notes_go_above_it():
    tty, clock = Terminal(), Clock()
    progress = ProgressLine("train", unit="steps", stream=tty, clock=clock)
    progress(10, 40)
    clock.now = 1.0
    progress.note("epoch 1: loss 95.0")
    progress(40, 40)  # finished: drawn at once
    progress.close()
    out = tty.getvalue()
    assert out.startswith("\rtrain: 10/40 steps (25%)")
    assert "\r\x1b[Kepoch 1: loss 95.0\n" in out
    assert out.endswith("train: 40/40 steps (100%)  40 steps/s  in 0:01\x1b[K\n")
