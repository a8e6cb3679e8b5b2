"""Each disentanglement metric on codes whose answer is known: factors copied into the code
score near 1, pure noise near 0 (the FactorVAE score's floor is chance, 1/K)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.inference import disentanglement as dis

N = 3000
SIZES = (3, 6, 10, 8)  # classes per factor, like dSprites' shape/scale/... grids (scaled down)


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(n, size=N) for n in SIZES], axis=1).astype(np.float64)


def copied(factors: np.ndarray) -> np.ndarray:
    """One code per factor (rescaled, permuted order), plus two quiet noise dims."""
    rng = np.random.default_rng(1)
    code = factors[:, [2, 0, 3, 1]] * np.array([0.3, 2.0, -1.0, 0.7])
    return np.concatenate([code, 0.01 * rng.normal(size=(len(factors), 2))], axis=1)


def noise(factors: np.ndarray) -> np.ndarray:
    return np.random.default_rng(2).normal(size=(len(factors), 6))


def test_mig_copied_is_one_and_noise_is_zero(factors):
    classes = dis.factor_classes(factors)
    assert dis.mig(copied(factors), classes) > 0.95
    assert dis.mig(noise(factors), classes) < 0.05


def test_factor_vae_copied_is_one_and_noise_is_chance(factors):
    classes = dis.factor_classes(factors)
    fit, ev = slice(0, 2000), slice(2000, None)
    good = copied(factors)
    bad = noise(factors)
    assert dis.factor_vae_score(good[fit], classes[fit], good[ev], classes[ev]) > 0.97
    chance = 1 / len(SIZES)
    assert dis.factor_vae_score(bad[fit], classes[fit], bad[ev], classes[ev]) < chance + 0.15


def test_factor_vae_ignores_codes_collapsed_to_the_prior(factors):
    """A dim with std under 0.05 casts no vote even where it tracks a factor: here factor 1
    lives only in such a dim, so its batches are misread and the score drops."""
    classes = dis.factor_classes(factors)
    fit, ev = slice(0, 2000), slice(2000, None)
    code = copied(factors)
    code[:, 3] *= 0.01  # factor 1's dim, std ~0.01: collapsed
    score = dis.factor_vae_score(code[fit], classes[fit], code[ev], classes[ev])
    assert score < 0.85
    code[:, 3] *= 10  # std ~0.2: active again
    assert dis.factor_vae_score(code[fit], classes[fit], code[ev], classes[ev]) > 0.97


def test_dci_copied_is_one_and_noise_is_low(factors):
    classes = dis.factor_classes(factors)
    assert dis.dci_disentanglement(copied(factors)[:600], classes[:600]) > 0.9
    assert dis.dci_disentanglement(noise(factors)[:600], classes[:600]) < 0.15


def test_sap_continuous_copied_is_one_and_noise_is_zero():
    rng = np.random.default_rng(3)
    factors = rng.uniform(size=(N, 3))  # > MAX_CLASSES distinct values: continuous, scored by R²
    continuous = np.ones(3, dtype=bool)
    good = np.concatenate([factors[:, ::-1] * 3.0, rng.normal(size=(N, 1))], axis=1)
    bad = rng.normal(size=(N, 4))
    assert dis.sap(good, factors, good, factors, continuous) > 0.95
    assert dis.sap(bad, factors, bad, factors, continuous) < 0.02


def test_sap_discrete_gap_is_one_minus_chance_for_binary_factors():
    rng = np.random.default_rng(4)
    classes = rng.integers(2, size=(N, 2)).astype(np.float64)
    code = np.concatenate([classes, rng.normal(size=(N, 1))], axis=1)
    discrete = np.zeros(2, dtype=bool)
    assert dis.sap(code[:2000], classes[:2000], code[2000:], classes[2000:], discrete) == (
        pytest.approx(0.5, abs=0.06)
    )


def test_scores_on_a_random_split_and_bad_shapes(factors):
    scores = dis.disentanglement_scores(copied(factors), factors, n_fit=600, n_eval=300)
    assert set(scores.as_dict()) == {"mig", "factor_vae_score", "dci_disentanglement", "sap"}
    assert scores.mig > 0.9 and scores.factor_vae > 0.95
    with pytest.raises(ValueError, match="must be"):
        dis.disentanglement_scores(np.zeros((10, 2)), np.zeros((9, 2)))


def test_many_valued_factor_is_binned():
    values = np.linspace(0, 1, 500)[:, None]
    classes = dis.factor_classes(values)
    assert classes.max() < dis.MIG_BINS + 1 and len(np.unique(classes)) == dis.MIG_BINS
