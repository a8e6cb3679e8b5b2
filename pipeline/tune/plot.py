"""A PNG of a sweep's trials: one scatter per tuned key, best validation -ELBO against its value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.tune.space import Dimension

MARKERS = {"FINISHED": "o", "KILLED": "x", "FAILED": "s"}
PANEL_INCHES = 3.2


def trials_png(trials: Sequence[Any], dims: Sequence[Dimension], best_id: str, out: Path) -> Path:
    """``trials``: ``TrialSummary``s; the best one is drawn as a star. Returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    cols = min(3, len(dims))
    rows = math.ceil(len(dims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_INCHES * cols, PANEL_INCHES * rows))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    scored = [t for t in trials if math.isfinite(t.best_val)]
    for ax, dim in zip(flat, dims, strict=False):
        _panel(ax, dim, scored, best_id)
    for ax in flat[len(dims) :]:
        ax.set_visible(False)
    flat[0].set_ylabel("best validation -ELBO (nats)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _panel(ax, dim: Dimension, trials: Sequence[Any], best_id: str) -> None:
    categorical = dim.kind in ("choice", "grid")
    labels = [str(v) for v in dim.values]
    for t in trials:
        value = t.params.get(dim.key)
        x = labels.index(str(value)) if categorical and str(value) in labels else value
        star = t.trial_id == best_id
        ax.scatter(
            [x],
            [t.best_val],
            marker="*" if star else MARKERS.get(t.status, "."),
            s=160 if star else 30,
            color="tab:red" if star else "tab:blue",
        )
    if categorical:
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
    elif dim.is_log():
        ax.set_xscale("log")
    ax.set_title(dim.key, fontsize=9)
