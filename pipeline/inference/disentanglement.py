"""Disentanglement metrics of a representation against ground-truth factors.

The definitions follow Locatello et al. (2019), "Challenging Common Assumptions in the Unsupervised
Learning of Disentangled Representations", as implemented by disentanglement_lib: MIG (Chen et al.
2018), the FactorVAE score (Kim & Mnih 2018), DCI disentanglement (Eastwood & Williams 2018) and
SAP (Kumar et al. 2018). Defaults are theirs: 10,000 points to fit, 5,000 to evaluate, 20-bin
histograms for MIG, batches of 64 for the FactorVAE votes.

One difference, forced by working on a dataset rather than a simulator: the FactorVAE score draws
its "one factor fixed" batches from the rows that share that factor's value, instead of rendering
fresh observations. On a dataset that covers the factor grid (``shapes``) this is the same draw.

Shapes: ``codes`` is (N, L) — one row per sample, the latent mean; ``factors`` is (N, K) — the
ground-truth factor values, discrete or continuous (continuous ones are binned, see
``factor_classes``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_FIT = 10_000
N_EVAL = 5_000
MIG_BINS = 20
MAX_CLASSES = 64  # a factor with more distinct values than this is binned like a code
VOTE_BATCH = 64
# The FactorVAE score ignores codes whose std over the data is below this: dims collapsed to the
# prior, whose tiny leftover wiggle would otherwise cast votes (Locatello et al.'s setting,
# disentanglement_lib's ``prune_dims.threshold = 0.05``).
PRUNE_STD = 0.05


@dataclass(frozen=True)
class DisentanglementScores:
    mig: float
    factor_vae: float
    dci_disentanglement: float
    sap: float

    def as_dict(self) -> dict[str, float]:
        return {
            "mig": self.mig,
            "factor_vae_score": self.factor_vae,
            "dci_disentanglement": self.dci_disentanglement,
            "sap": self.sap,
        }


def histogram_bins(values: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """(N, D) floats → (N, D) int bin indices, ``bins`` equal-width bins per column."""
    out = np.empty(values.shape, dtype=np.int64)
    for d in range(values.shape[1]):
        edges = np.histogram(values[:, d], bins)[1][:-1]
        out[:, d] = np.digitize(values[:, d], edges)
    return out


def factor_classes(factors: np.ndarray) -> np.ndarray:
    """(N, K) factor values → (N, K) class indices: distinct values, or bins when too many."""
    out = np.empty(factors.shape, dtype=np.int64)
    for k in range(factors.shape[1]):
        distinct, inverse = np.unique(factors[:, k], return_inverse=True)
        if len(distinct) <= MAX_CLASSES:
            out[:, k] = inverse
        else:
            out[:, k] = histogram_bins(factors[:, k : k + 1])[:, 0]
    return out


def _entropy(classes: np.ndarray) -> float:
    p = np.bincount(classes) / len(classes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Discrete mutual information (nats) of two (N,) class arrays, from their joint counts."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= len(a)
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


def mig(codes: np.ndarray, classes: np.ndarray) -> float:
    """Mean over factors of (top MI − second MI) / H(factor), codes in 20-bin histograms."""
    binned = histogram_bins(codes)
    mi = np.array(
        [
            [_mutual_info(binned[:, i], classes[:, k]) for k in range(classes.shape[1])]
            for i in range(codes.shape[1])
        ]
    )  # (L, K)
    top = np.sort(mi, axis=0)[::-1]
    if top.shape[0] < 2:
        return 0.0
    entropies = np.array([_entropy(classes[:, k]) for k in range(classes.shape[1])])
    usable = entropies > 0
    return float(np.mean((top[0, usable] - top[1, usable]) / entropies[usable]))


def _factor_vae_votes(
    codes: np.ndarray,
    classes: np.ndarray,
    scale: np.ndarray,
    n_votes: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(L, K) vote counts: for each batch with one factor fixed, which code varied least."""
    n, n_factors = classes.shape
    votes = np.zeros((codes.shape[1], n_factors), dtype=np.int64)
    members = [
        {int(c): np.flatnonzero(classes[:, k] == c) for c in np.unique(classes[:, k])}
        for k in range(n_factors)
    ]
    for _ in range(n_votes):
        k = int(rng.integers(n_factors))
        value = int(classes[rng.integers(n), k])
        batch = codes[rng.choice(members[k][value], VOTE_BATCH)] / scale  # (64, L)
        votes[int(np.argmin(batch.var(axis=0, ddof=1))), k] += 1
    return votes


def factor_vae_score(
    codes_fit: np.ndarray,
    classes_fit: np.ndarray,
    codes_eval: np.ndarray,
    classes_eval: np.ndarray,
    seed: int = 0,
) -> float:
    """Accuracy of the majority-vote classifier "least-varying code → fixed factor" on
    ``len(codes_eval)`` evaluation votes, trained on ``len(codes_fit)`` votes. Dims whose
    std is under ``PRUNE_STD`` are pruned; no active dim → 0."""
    rng = np.random.default_rng(seed)
    std = codes_fit.std(axis=0, ddof=1)
    active = std >= PRUNE_STD
    if not active.any():
        return 0.0
    fit_votes = _factor_vae_votes(
        codes_fit[:, active], classes_fit, std[active], len(codes_fit), rng
    )
    eval_votes = _factor_vae_votes(
        codes_eval[:, active], classes_eval, std[active], len(codes_eval), rng
    )
    predicted = fit_votes.argmax(axis=1)  # (L_active,) factor each code votes for
    return float(eval_votes[np.arange(len(predicted)), predicted].sum() / eval_votes.sum())


def dci_disentanglement(codes_fit: np.ndarray, classes_fit: np.ndarray, seed: int = 0) -> float:
    """Importance-weighted 1 − entropy (base K) of each code's importance over factors, the
    importances from one gradient-boosted classifier per factor."""
    from sklearn.ensemble import GradientBoostingClassifier

    n_codes, n_factors = codes_fit.shape[1], classes_fit.shape[1]
    importance = np.zeros((n_codes, n_factors))
    for k in range(n_factors):
        if len(np.unique(classes_fit[:, k])) < 2:
            continue
        model = GradientBoostingClassifier(random_state=seed).fit(codes_fit, classes_fit[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
    if importance.sum() == 0 or n_factors < 2:
        return 0.0
    p = (importance + 1e-11) / (importance + 1e-11).sum(axis=1, keepdims=True)  # (L, K)
    per_code = 1.0 + (p * np.log(p)).sum(axis=1) / np.log(n_factors)
    weight = importance.sum(axis=1) / importance.sum()
    return float((per_code * weight).sum())


def _sap_score(
    code_fit: np.ndarray,
    y_fit: np.ndarray,
    code_eval: np.ndarray,
    y_eval: np.ndarray,
    continuous: bool,
) -> float:
    """How well one code dim alone predicts one factor: R² for a continuous factor (from the
    fit points, as disentanglement_lib does), else a linear SVM's accuracy on the eval points."""
    if continuous:
        var = code_fit.var() * y_fit.var()
        return float(np.cov(code_fit, y_fit)[0, 1] ** 2 / var) if var > 0 else 0.0
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=0.01, class_weight="balanced").fit(code_fit[:, None], y_fit)
    return float(np.mean(svm.predict(code_eval[:, None]) == y_eval))


def sap(
    codes_fit: np.ndarray,
    targets_fit: np.ndarray,
    codes_eval: np.ndarray,
    targets_eval: np.ndarray,
    continuous: np.ndarray,
) -> float:
    """Mean over factors of the gap between the two codes that best predict it alone.
    ``targets`` hold a factor's values where ``continuous[k]``, else its class indices; discrete
    factors are scored by accuracy, so their largest gap is 1 − chance (0.5 for a binary one)."""
    n_codes, n_factors = codes_fit.shape[1], targets_fit.shape[1]
    if n_codes < 2:
        return 0.0
    scores = np.zeros((n_codes, n_factors))
    for k in range(n_factors):
        if len(np.unique(targets_fit[:, k])) < 2:
            continue
        for i in range(n_codes):
            scores[i, k] = _sap_score(
                codes_fit[:, i],
                targets_fit[:, k],
                codes_eval[:, i],
                targets_eval[:, k],
                bool(continuous[k]),
            )
    top = np.sort(scores, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def disentanglement_scores(
    codes: np.ndarray,
    factors: np.ndarray,
    n_fit: int = N_FIT,
    n_eval: int = N_EVAL,
    seed: int = 0,
) -> DisentanglementScores:
    """All four metrics on one random split of the rows: ``n_fit`` to fit, ``n_eval`` to
    evaluate (fewer rows → both shrink in proportion)."""
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes {codes.shape} and factors {factors.shape} must be (N, L), (N, K)")
    n = len(codes)
    if n < 20:
        raise ValueError(f"disentanglement metrics need at least 20 rows, got {n}")
    if n_fit + n_eval > n:
        n_fit = int(n * n_fit / (n_fit + n_eval))
        n_eval = n - n_fit
    order = np.random.default_rng(seed).permutation(n)
    fit, ev = order[:n_fit], order[n_fit : n_fit + n_eval]
    classes = factor_classes(factors)
    continuous = np.array([len(np.unique(f)) > MAX_CLASSES for f in factors.T])  # (K,)
    targets = np.where(continuous[None, :], factors, classes)  # (N, K)
    codes = codes.astype(np.float64)
    return DisentanglementScores(
        mig=mig(codes[fit], classes[fit]),
        factor_vae=factor_vae_score(codes[fit], classes[fit], codes[ev], classes[ev], seed),
        dci_disentanglement=dci_disentanglement(codes[fit], classes[fit], seed),
        sap=sap(codes[fit], targets[fit], codes[ev], targets[ev], continuous),
    )
