"""AUROC: the point estimate, its (patient-clustered) DeLong variance, intervals that hold near 1, the paired and
unpaired comparisons, the above-chance test, and the smallest difference a comparison can detect.

* :func:`auroc` is the Mann-Whitney count from midranks (exact half-integer sums).
* Variance: DeLong's structural components (Sun & Xu 2014 fast algorithm); with ``clusters`` (one id per image,
  e.g. the patient) Obuchowski's (1997) clustered estimator, which sums each patient's placement values before
  taking their spread, so several images of one patient count as one unit of evidence.
* :func:`auroc_ci` is Newcombe's (2006) score interval ("method 5"): the AUROCs theta with
  ``(A - theta)^2 <= z^2 V(theta)`` for the Hanley-McNeil variance ``V(theta)`` at the sample sizes, multiplied by the
  clustered design effect. Unlike a percentile bootstrap or a Wald interval it keeps its coverage near AUROC 1 with
  few positives (simulated: 0.95-0.98 at 5-30 positives and AUROC 0.64-0.998; the percentile bootstrap gave 0.78 at
  15 positives and AUROC 0.97, logit-DeLong 0.83).
* :func:`auroc_difference_ci` (independent samples, e.g. real vs synthetic images) combines two such intervals by
  MOVER (Zou & Donner 2008).
* :func:`auroc_above_chance_p` is the one-sided Brunner-Munzel test of AUROC > 0.5, which keeps its level when
  positives and negatives have different score spreads (Mann-Whitney does not: 0.10-0.13 at a spread ratio of 2-3).
* :func:`detectable_difference` is the minimum difference detectable at a given power for a standard error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as _sps

from ._checks import _check_confidence, _labels, _scores


def auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney count: P(score_pos > score_neg) + P(tie) / 2.

    Computed from midranks, ``(R_pos - m(m+1)/2) / (m r)`` for m positives and r negatives: the numerator is a sum
    of half-integers, exact in float64, so the value equals scikit-learn's trapezoidal ``roc_auc_score`` up to
    rounding and is exactly 0, 1 or 0.5 where the counts make it so.

    Args:
        y_true: shape (n,), 0/1 labels. y_score: shape (n,), finite scores.

    Returns:
        AUROC in [0, 1]; NaN when one class is absent.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    m = int(y.sum())
    r = int(y.size - m)
    if m == 0 or r == 0:
        return float("nan")
    ranks = _sps.rankdata(s, method="average")
    u = float(ranks[y == 1].sum()) - m * (m + 1) / 2.0
    return u / (m * r)


def cluster_codes(clusters: Sequence | np.ndarray | None, n: int) -> np.ndarray:
    """Integer codes ``(n,)`` 0..K-1 of ``clusters`` (one id per row, e.g. patient ids; None: each row its own)."""
    if clusters is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(clusters)
    if ids.shape != (n,):
        raise ValueError(f"clusters must hold one id per row ({n}), got shape {ids.shape}")
    return np.unique(ids.astype(str), return_inverse=True)[1].astype(np.int64).reshape(n)


# ----------------------------------------------------------------------------------------------------
# DeLong / Obuchowski variance
# ----------------------------------------------------------------------------------------------------


def _delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast DeLong (Sun & Xu 2014) structural components with midranks, O(k n log n).

    ``scores`` (k, n) for k classifiers on the same rows. Returns the midrank AUCs (k,), V10 (k, m) placement
    values of the m positives and V01 (k, r) of the r negatives. Requires both classes present.
    """
    pos = y == 1
    x = scores[:, pos]
    z = scores[:, ~pos]
    m, r = x.shape[1], z.shape[1]
    tx = _sps.rankdata(x, method="average", axis=1)
    tz = _sps.rankdata(z, method="average", axis=1)
    tall = _sps.rankdata(np.concatenate([x, z], axis=1), method="average", axis=1)
    aucs = (tall[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * r)
    v10 = (tall[:, :m] - tx) / r
    v01 = 1.0 - (tall[:, m:] - tz) / m
    return aucs, v10, v01


def _delong_covariance(y: np.ndarray, scores: np.ndarray, clusters: np.ndarray | None = None) -> np.ndarray:
    """Covariance matrix (k, k) of k AUCs on the same rows; NaN when it cannot be estimated.

    Without ``clusters``: DeLong's S = S10/m + S01/r (ddof 1; NaN when a class has fewer than 2 rows). With
    ``clusters`` (integer codes per row): Obuchowski's clustered estimator over the K clusters,
    ``K/(K-1) * sum_k (X_k - m_k A)(X_k - m_k A)' / m^2 + (same for the negatives) / r^2 + the cross terms / (m r)``,
    where X_k sums the positives' placement values of cluster k (NaN with fewer than 2 clusters).
    """
    m = int(y.sum())
    r = y.size - m
    k = scores.shape[0]
    if clusters is None:
        if m < 2 or r < 2:
            return np.full((k, k), np.nan)
        _, v10, v01 = _delong_components(y, scores)
        d10 = v10 - v10.mean(axis=1, keepdims=True)
        d01 = v01 - v01.mean(axis=1, keepdims=True)
        return (d10 @ d10.T) / ((m - 1) * m) + (d01 @ d01.T) / ((r - 1) * r)
    n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    if m < 1 or r < 1 or n_clusters < 2:
        return np.full((k, k), np.nan)
    aucs, v10, v01 = _delong_components(y, scores)
    pos, neg = clusters[y == 1], clusters[y == 0]
    m_k = np.bincount(pos, minlength=n_clusters).astype(np.float64)
    r_k = np.bincount(neg, minlength=n_clusters).astype(np.float64)
    x_k = np.stack([np.bincount(pos, weights=v, minlength=n_clusters) for v in v10]) - aucs[:, None] * m_k
    z_k = np.stack([np.bincount(neg, weights=v, minlength=n_clusters) for v in v01]) - aucs[:, None] * r_k
    factor = n_clusters / (n_clusters - 1)
    s10 = factor * (x_k @ x_k.T) / m**2
    s01 = factor * (z_k @ z_k.T) / r**2
    s11 = factor * (x_k @ z_k.T) / (m * r)
    return s10 + s01 + s11 + s11.T


def _z_and_p(diff: float, var: float) -> tuple[float, float]:
    """Normal z and two-sided p for ``diff`` with variance ``var`` (var 0: z 0 if diff is 0, else +-inf)."""
    if math.isnan(diff) or math.isnan(var):
        return float("nan"), float("nan")
    if var > 0.0:
        z = diff / math.sqrt(var)
        return z, float(2.0 * _sps.norm.sf(abs(z)))
    z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return z, float(2.0 * _sps.norm.sf(abs(z)))


def delong_auc_variance(y_true: np.ndarray, y_score: np.ndarray,
                        clusters: Sequence | np.ndarray | None = None) -> float:
    """Variance of one AUROC: DeLong's var(V10)/m + var(V01)/r (ddof=1), or Obuchowski's clustered variance when
    ``clusters`` (one id per row) is given.

    Returns:
        The variance; NaN when either class has fewer than 2 rows (2 clusters when clustered).
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    codes = None if clusters is None else cluster_codes(clusters, y.size)
    return float(_delong_covariance(y, s[None, :], codes)[0, 0])


def delong_ci(y_true: np.ndarray, y_score: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """AUROC and its DeLong Wald interval AUC -+ z * sqrt(var), clipped to [0, 1].

    Kept for verification AUROCs on thousands of pairs (privacy), where the Wald interval is accurate; per-class
    utility rows use :func:`auroc_ci`, which holds with few positives.

    Returns:
        (auc, ci_low, ci_high); all NaN when one class is absent, CI NaN when a class has one row.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    c = _check_confidence(confidence)
    if y.min() == y.max():
        return float("nan"), float("nan"), float("nan")
    auc = auroc(y, s)
    var = delong_auc_variance(y, s)
    if math.isnan(var):
        return auc, float("nan"), float("nan")
    half = _sps.norm.ppf(0.5 + c / 2) * math.sqrt(var)
    return auc, float(max(0.0, auc - half)), float(min(1.0, auc + half))


def delong_roc_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray,
                    clusters: Sequence | np.ndarray | None = None) -> dict[str, float]:
    """Paired DeLong test of two AUROCs on the same rows (two classifiers scored on the same images).

    Args:
        y_true: shape (n,), 0/1 labels.
        score_a, score_b: shape (n,) each, finite scores of classifiers a and b for the same rows.
        clusters: optional (n,) ids (patients): Obuchowski's clustered covariance instead of DeLong's.

    Returns:
        ``auc_a``, ``auc_b`` (:func:`auroc`), ``difference`` (a - b), ``variance`` of the difference
        (S_aa + S_bb - 2 S_ab), ``z`` and the two-sided normal ``p_value``. All NaN when one class is absent;
        variance, z and p NaN when a class has one row. Identical scores give z = 0, p = 1.
    """
    y = _labels(y_true)
    a = _scores(score_a, y.size, "score_a")
    b = _scores(score_b, y.size, "score_b")
    keys = ("auc_a", "auc_b", "difference", "variance", "z", "p_value")
    if y.min() == y.max():
        return dict.fromkeys(keys, float("nan"))
    auc_a, auc_b = auroc(y, a), auroc(y, b)
    codes = None if clusters is None else cluster_codes(clusters, y.size)
    cov = _delong_covariance(y, np.stack([a, b]), codes)
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if not math.isnan(var):
        var = max(var, 0.0)  # rounding can make a zero variance slightly negative
    diff = auc_a - auc_b
    z, p = _z_and_p(diff, var)
    return dict(zip(keys, (auc_a, auc_b, diff, var, z, p), strict=True))


def delong_contrast(y_true: np.ndarray, scores_a: Sequence[np.ndarray], scores_b: Sequence[np.ndarray],
                    clusters: Sequence | np.ndarray | None = None) -> dict[str, float]:
    """Mean AUROC of models ``a`` minus mean AUROC of models ``b``, all scored on the same rows (e.g. the seeds of
    two settings), with the test-set variance of that difference from the joint DeLong / Obuchowski covariance.

    The variance is L S L' for the contrast L = (1/k_a, ..., -1/k_b, ...); with one model each this is
    :func:`delong_roc_test`. It covers the sampling of the test images only, not the training seeds' spread.

    Returns:
        ``difference``, ``variance`` (NaN when a class has fewer than 2 rows).
    """
    y = _labels(y_true)
    stacked = np.stack([_scores(s, y.size) for s in (*scores_a, *scores_b)])
    ka, kb = len(scores_a), len(scores_b)
    contrast = np.concatenate([np.full(ka, 1.0 / ka), np.full(kb, -1.0 / kb) if kb else np.zeros(0)])
    if y.min() == y.max():
        return {"difference": float("nan"), "variance": float("nan")}
    aucs = np.array([auroc(y, s) for s in stacked])
    codes = None if clusters is None else cluster_codes(clusters, y.size)
    variance = float(contrast @ _delong_covariance(y, stacked, codes) @ contrast)
    if not math.isnan(variance):
        variance = max(variance, 0.0)
    return {"difference": float(contrast @ aucs), "variance": variance}


# ----------------------------------------------------------------------------------------------------
# Intervals that hold near 1
# ----------------------------------------------------------------------------------------------------


def hanley_mcneil_variance(theta: float, n_pos: float, n_neg: float) -> float:
    """Newcombe's (2006) form of the Hanley-McNeil variance of an AUROC ``theta`` with ``n_pos`` positives and
    ``n_neg`` negatives: ``theta (1 - theta) [1 + (N* - 1)((1 - theta)/(2 - theta) + theta/(1 + theta))] / (m n)``
    with ``N* = (m + n)/2 - 1``."""
    n_star = (n_pos + n_neg) / 2.0 - 1.0
    spread = 1.0 + (n_star - 1.0) * ((1.0 - theta) / (2.0 - theta) + theta / (1.0 + theta))
    return theta * (1.0 - theta) * spread / (n_pos * n_neg)


def design_effect(y_true: np.ndarray, y_score: np.ndarray, clusters: Sequence | np.ndarray | None) -> float:
    """How much patients' several images inflate the AUROC's variance: Obuchowski's clustered variance over
    DeLong's (at least 1; 1 without clusters or when either variance is 0 or undefined)."""
    if clusters is None:
        return 1.0
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    codes = cluster_codes(clusters, y.size)
    if np.unique(codes).size == y.size:
        return 1.0
    plain = float(_delong_covariance(y, s[None, :])[0, 0])
    clustered = float(_delong_covariance(y, s[None, :], codes)[0, 0])
    if not (plain > 0 and math.isfinite(clustered)):
        return 1.0
    return max(1.0, clustered / plain)


def _score_interval(estimate: float, n_pos: float, n_neg: float, z: float, deff: float) -> tuple[float, float]:
    """The thetas with ``(estimate - theta)^2 <= z^2 deff V_HM(theta)``: roots found on each side of the estimate."""
    def gap(theta: float) -> float:
        return (estimate - theta) ** 2 - z * z * deff * hanley_mcneil_variance(theta, n_pos, n_neg)

    eps = 1e-12
    low = 0.0
    if estimate > eps and gap(eps) > 0:
        low = optimize.brentq(gap, eps, max(eps, estimate - 1e-9), xtol=1e-12)
    high = 1.0
    if estimate < 1 - eps and gap(1 - eps) > 0:
        high = optimize.brentq(gap, min(1 - eps, estimate + 1e-9), 1 - eps, xtol=1e-12)
    return float(low), float(high)


def auroc_ci(y_true: np.ndarray, y_score: np.ndarray, confidence: float = 0.95,
             clusters: Sequence | np.ndarray | None = None) -> tuple[float, float, float]:
    """AUROC with Newcombe's score interval (method 5), widened by the patients' design effect.

    Args:
        y_true: shape (n,), 0/1 labels. y_score: shape (n,), finite scores.
        confidence: two-sided level.
        clusters: optional (n,) ids (patients); the Hanley-McNeil variance is multiplied by
            :func:`design_effect`, so correlated images of one patient do not narrow the interval.

    Returns:
        (auc, ci_low, ci_high) inside [0, 1]; all NaN when a class is absent.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    c = _check_confidence(confidence)
    m = int(y.sum())
    r = int(y.size - m)
    if m == 0 or r == 0:
        return float("nan"), float("nan"), float("nan")
    auc = auroc(y, s)
    z = float(_sps.norm.ppf(0.5 + c / 2))
    low, high = _score_interval(auc, m, r, z, design_effect(y, s, clusters))
    return auc, low, high


def class_mean_interval(estimates: Sequence[float] | np.ndarray, lows: Sequence[float] | np.ndarray,
                        highs: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Mean over classes of per-class figures, with a conservative interval from their intervals.

    Args:
        estimates, lows, highs: shape (K,), each class's estimate and its two-sided interval (e.g. from
            :func:`auroc_ci`, all at one level); classes with a missing value are left out.

    Returns:
        (mean, mean of the lower ends, mean of the upper ends); all NaN when no class has all three.

    The classes are scored on the same images, so their estimates are correlated in an unknown way. For
    (near-)normal estimates with standard errors ``se_k`` the standard deviation of their mean is at most the mean of
    the ``se_k`` (Minkowski's inequality), so the mean of the ends covers at least at the per-class level whatever
    the correlation: exactly when the classes move together, wider than needed when they are independent.
    """
    e, lo, hi = (np.asarray(v, dtype=float) for v in (estimates, lows, highs))
    keep = np.isfinite(e) & np.isfinite(lo) & np.isfinite(hi)
    if not keep.any():
        return math.nan, math.nan, math.nan
    return float(e[keep].mean()), float(lo[keep].mean()), float(hi[keep].mean())


def auroc_difference_ci(first: tuple[float, float, float], second: tuple[float, float, float]) -> tuple[float, float,
                                                                                                        float]:
    """Difference ``first - second`` of two independent AUROCs from their intervals (MOVER, Zou & Donner 2008).

    Args:
        first, second: (estimate, ci_low, ci_high) each, e.g. from :func:`auroc_ci` at the same level.

    Returns:
        (difference, ci_low, ci_high): ``d -+ sqrt(...)`` with each side built from the two intervals' matching
        half-widths; NaN when either is undefined.
    """
    (a, la, ua), (b, lb, ub) = first, second
    if any(math.isnan(v) for v in (a, la, ua, b, lb, ub)):
        return float("nan"), float("nan"), float("nan")
    d = a - b
    low = d - math.sqrt((a - la) ** 2 + (ub - b) ** 2)
    high = d + math.sqrt((ua - a) ** 2 + (b - lb) ** 2)
    return d, max(-1.0, low), min(1.0, high)


# ----------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------


def auroc_above_chance_p(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """One-sided p-value of AUROC > 0.5 by the Brunner-Munzel test (``scipy.stats.brunnermunzel``, t approximation).

    AUROC is P(score_pos > score_neg) + P(tie)/2, the very effect Brunner-Munzel tests; unlike Mann-Whitney it does
    not assume equal score spreads in positives and negatives, so its level holds for a classifier whose scores are
    label-blind in location but not in spread. Where its variance estimate is 0 (complete separation, or constant
    scores within each class) it is undefined and the exact Mann-Whitney p-value is used instead.

    Returns:
        p in [0, 1]; NaN when one label is absent (AUROC undefined).
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    positives, negatives = s[y == 1], s[y == 0]
    if positives.size == 0 or negatives.size == 0:
        return float("nan")
    if positives.size >= 2 and negatives.size >= 2:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            p = float(_sps.brunnermunzel(positives, negatives, alternative="greater").pvalue)
        if math.isfinite(p):
            return p
    return float(_sps.mannwhitneyu(positives, negatives, alternative="greater").pvalue)


def detectable_difference(standard_error: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference a two-sided level-``alpha`` test with this standard error detects with probability
    ``power``: ``(z_{1 - alpha/2} + z_{power}) * se`` (2.80 se at the defaults). NaN for an undefined se."""
    if standard_error is None or not math.isfinite(standard_error):
        return float("nan")
    return float((_sps.norm.ppf(1 - alpha / 2) + _sps.norm.ppf(power)) * standard_error)
