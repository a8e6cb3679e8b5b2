"""AUROC, AUPRC and the ROC curve against hand-checked cases and sklearn's definitions."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from pipeline.inference import anomaly


def test_perfect_inverted_and_tied_scores():
    positive = np.array([0, 0, 1, 1], dtype=bool)
    assert anomaly.auroc(np.array([1, 2, 3, 4]), positive) == 1.0
    assert anomaly.auroc(np.array([4, 3, 2, 1]), positive) == 0.0
    assert anomaly.auroc(np.ones(4), positive) == 0.5
    assert anomaly.auprc(np.array([1, 2, 3, 4]), positive) == 1.0
    assert anomaly.auprc(np.ones(4), positive) == 0.5  # one threshold: precision = share


def test_matches_sklearn_on_random_scores_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 30, size=500).astype(float)  # many ties
    positive = rng.random(500) < 0.2 + 0.02 * scores
    assert anomaly.auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
    assert anomaly.auprc(scores, positive) == pytest.approx(
        average_precision_score(positive, scores)
    )


def test_one_class_only_is_nan():
    assert math.isnan(anomaly.auroc(np.arange(3.0), np.zeros(3, dtype=bool)))
    assert math.isnan(anomaly.auprc(np.arange(3.0), np.zeros(3, dtype=bool)))


def test_roc_curve_runs_from_origin_to_corner_and_png_decodes():
    rng = np.random.default_rng(1)
    scores, positive = rng.normal(size=200), rng.random(200) < 0.3
    fpr, tpr = anomaly.roc_curve(scores, positive)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    png = anomaly.roc_png(scores, positive, "digit 3")
    assert Image.open(io.BytesIO(png)).size == (320, 320)
