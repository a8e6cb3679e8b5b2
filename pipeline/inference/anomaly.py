"""Anomaly-detection figures of a per-row score: AUROC, AUPRC and the ROC curve as a PNG.

Higher score = more anomalous (the score is the negative ELBO, or the IS-NLL); ``positive``
marks the anomalies. Both areas are threshold-free, so they need no quantile chosen up front.
"""

from __future__ import annotations

import io
import math

import numpy as np


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney U statistic from average ranks, so ties
    count one half. NaN when one class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(scores)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start index of each run of equal values, and the run each sorted element belongs to.
    new_run = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    starts = np.flatnonzero(new_run)
    run = np.cumsum(new_run) - 1
    ends = np.r_[starts[1:], len(x)]  # exclusive
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = mean_rank[run]
    return ranks


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates), one point per distinct threshold, from
    (0, 0) to (1, 1)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    s, pos = np.asarray(scores)[order], np.asarray(positive, dtype=bool)[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a threshold sits after each run of ties
    tp = np.cumsum(pos)[last_of_tie]
    fp = np.cumsum(~pos)[last_of_tie]
    n_pos, n_neg = max(int(pos.sum()), 1), max(int((~pos).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def auprc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision: precision at each threshold weighted by the recall it adds (the
    step-wise area, no interpolation). Chance level is the anomaly share. NaN without
    anomalies."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    s, pos = np.asarray(scores)[order], positive[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(pos)[last_of_tie]
    seen = (np.arange(1, len(s) + 1))[last_of_tie]
    precision = tp / seen
    recall_gain = np.diff(np.r_[0, tp]) / n_pos
    return float((precision * recall_gain).sum())


def roc_png(scores: np.ndarray, positive: np.ndarray, title: str, size: int = 320) -> bytes:
    """The ROC curve with the chance diagonal, as PNG bytes (PIL only, no plotting stack)."""
    from PIL import Image, ImageDraw

    fpr, tpr = roc_curve(scores, positive)
    margin = 28
    side = size - 2 * margin
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def xy(x: float, y: float) -> tuple[float, float]:
        return margin + x * side, margin + (1 - y) * side

    draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    draw.line([xy(0, 0), xy(1, 1)], fill=(170, 170, 170), width=1)
    draw.line([xy(float(a), float(b)) for a, b in zip(fpr, tpr, strict=True)], fill="navy", width=2)
    draw.text((margin, 6), f"{title}  AUROC {auroc(scores, positive):.3f}", fill="black")
    draw.text((margin, size - margin + 8), "false positive rate", fill="black")
    draw.text((4, margin), "TPR", fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
