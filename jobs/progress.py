"""Progress of long work on stderr: rows done, rows/s and an ETA.

On a terminal, one line that updates in place (a few times a second at most); otherwise (a log
file, CI, a Ray job's output) plain lines at a modest rate, so logs stay readable. The pipeline
never prints: its long functions take a ``progress(done, total)`` callback (``total`` None when
unknown) and the commands in ``jobs/`` pass a ``ProgressLine`` as that callback. ``note(text)``
prints a permanent line (an epoch's summary) without breaking the updating one, so ``train`` can
use the same renderer for progress within an epoch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

TTY_INTERVAL_S = 0.25  # redraws of the updating line
PLAIN_INTERVAL_S = 10.0  # lines per long step in a log: one every 10 s, and the last one
CLEAR_TO_END = "\x1b[K"


def format_duration(seconds: float) -> str:
    """``1:05`` (m:ss) or ``2:03:04`` (h:mm:ss)."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(
    label: str, done: int, total: int | None, elapsed: float, unit: str = "rows", extra: str = ""
) -> str:
    """``encode: 1,200/10,000 rows (12%)  400 rows/s  ETA 0:22``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"{label}: {done:,}"]
    if total:
        parts[0] += f"/{total:,} {unit} ({min(done / total, 1.0):.0%})"
    else:
        parts[0] += f" {unit}"
    parts.append(f"{rate:,.0f} {unit}/s")
    if total and rate > 0 and done < total:
        parts.append(f"ETA {format_duration((total - done) / rate)}")
    elif total is None or done >= total:
        parts.append(f"in {format_duration(elapsed)}")
    if extra:
        parts.append(extra)
    return "  ".join(parts)


class ProgressLine:
    """A ``progress(done, total)`` callback that renders on ``stream`` (default stderr)."""

    def __init__(
        self,
        label: str,
        unit: str = "rows",
        stream: TextIO | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit = label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else self._default_interval()
        self.clock = clock
        self.start: float | None = None
        self.last_drawn = float("-inf")
        self.line = ""  # the last rendered line (on a TTY: what is on screen)
        self.state: tuple[int, int | None, str] | None = None
        self.drawn_state: tuple[int, int | None, str] | None = None

    def _default_interval(self) -> float:
        return TTY_INTERVAL_S if self.tty else PLAIN_INTERVAL_S

    def __call__(self, done: int, total: int | None = None, extra: str = "") -> None:
        now = self.clock()
        if self.start is None:
            self.start = now
        self.state = (done, total, extra)
        finished = total is not None and done >= total
        if finished or now - self.last_drawn >= self.interval_s:
            self._draw(now)

    def note(self, text: str) -> None:
        """A permanent line above the updating one."""
        if self.tty and self.line:
            self.stream.write("\r" + CLEAR_TO_END)
        self.stream.write(text + "\n")
        if self.tty and self.line:
            self.stream.write(self.line)
        self.stream.flush()

    def close(self) -> None:
        """The final figures once (unless already shown), and end the updating line."""
        if self.state is not None and self.state != self.drawn_state:
            self._draw(self.clock())
        if self.tty and self.line:
            self.stream.write("\n")
            self.stream.flush()
        self.line = ""

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _draw(self, now: float) -> None:
        done, total, extra = self.state
        text = describe(self.label, done, total, now - self.start, self.unit, extra)
        if self.tty:
            self.stream.write("\r" + text + CLEAR_TO_END)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.line, self.last_drawn, self.drawn_state = text, now, self.state
