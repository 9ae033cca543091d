"""Proportions: Wilson intervals (also for patients' clustered images), and the precision and accuracy a classifier
would have at another prevalence.

Sensitivity, specificity, accuracy and precision at a fixed threshold are proportions of images. Their Wilson score
interval keeps its coverage at 0 and 1 (a percentile bootstrap of 15/15 correct is the point [1, 1]). When a patient
contributes several images the images are not independent: :func:`clustered_proportion_ci` divides the sample size by
the design effect of the patients (ratio-estimator variance over the binomial one), so the interval is that of the
number of *effective* independent images.

Precision and accuracy depend on prevalence: the same classifier has a PPV of 0.65 on a class-balanced synthetic set
and 0.0065 at a real prevalence of 0.2%. :func:`at_prevalence` gives both at a stated prevalence from sensitivity and
specificity, with an interval from theirs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _sps

from ._checks import _check_confidence

Z_95 = 1.959963984540054


def _z(confidence: float) -> float:
    return Z_95 if confidence == 0.95 else float(_sps.norm.ppf(0.5 + _check_confidence(confidence) / 2))


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (NaNs when ``n`` is 0).

    ``n`` may be an effective (non-integer) sample size. The ends are exactly 0 and 1 when ``successes`` is 0 or
    ``n``, not a rounding error away.
    """
    if n <= 0:
        return math.nan, math.nan
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z**2 / (4 * n * n)) / denom
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def proportion_design_effect(hits: np.ndarray, clusters: Sequence | np.ndarray | None) -> float:
    """Design effect of a proportion over clustered items: the ratio-estimator variance of ``mean(hits)`` over the
    binomial ``p(1-p)/n`` (at least 1). With p = 0 or 1 the data hold no within-patient information, so the largest
    possible effect is used: the size-weighted mean cluster size ``sum n_k^2 / sum n_k`` (perfectly correlated
    images). 1 without clusters or with one image per cluster."""
    h = np.asarray(hits, dtype=np.float64).ravel()
    n = h.size
    if clusters is None or n == 0:
        return 1.0
    codes = np.unique(np.asarray(clusters).astype(str), return_inverse=True)[1].reshape(n)
    k = int(codes.max()) + 1
    if k == n:
        return 1.0
    sizes = np.bincount(codes, minlength=k).astype(np.float64)
    if k < 2:
        return float(n)
    p = h.mean()
    if p <= 0.0 or p >= 1.0:
        return float(max(1.0, (sizes**2).sum() / n))
    sums = np.bincount(codes, weights=h, minlength=k)
    clustered = k / (k - 1) * ((sums - p * sizes) ** 2).sum() / n**2
    return float(max(1.0, clustered / (p * (1 - p) / n)))


def clustered_proportion_ci(hits: np.ndarray, clusters: Sequence | np.ndarray | None = None,
                            confidence: float = 0.95) -> tuple[float, float, float]:
    """A proportion of items with its Wilson interval on the effective sample size ``n / design effect``.

    Args:
        hits: shape (n,), 0/1 (bool) per item, e.g. "predicted positive" for the positives (sensitivity).
        clusters: optional (n,) ids (patients). confidence: two-sided level.

    Returns:
        (proportion, ci_low, ci_high); NaNs when there are no items.
    """
    h = np.asarray(hits, dtype=np.float64).ravel()
    if h.size == 0:
        return math.nan, math.nan, math.nan
    p = float(h.mean())
    n_eff = h.size / proportion_design_effect(h, clusters)
    low, high = wilson_interval(p * n_eff, n_eff, confidence)
    return p, low, high


def at_prevalence(sensitivity: tuple[float, float, float], specificity: tuple[float, float, float],
                  prevalence: float) -> dict[str, tuple[float, float, float]]:
    """Precision (PPV) and accuracy a classifier with this sensitivity and specificity has at ``prevalence``.

    ``PPV = se p / (se p + (1 - sp)(1 - p))`` and ``accuracy = se p + sp (1 - p)`` both increase with sensitivity and
    specificity, so their interval is taken at the corners of the sensitivity and specificity intervals. Give those
    at level 1 - alpha/2 each (e.g. 97.5% for a 95% result): both cover together with probability at least
    1 - alpha (Bonferroni), and then so does the corner interval.

    Args:
        sensitivity, specificity: (estimate, ci_low, ci_high) each. prevalence: in (0, 1).

    Returns:
        ``precision`` and ``accuracy`` -> (estimate, ci_low, ci_high); NaNs where undefined.
    """
    def ppv(se: float, sp: float) -> float:
        den = se * prevalence + (1 - sp) * (1 - prevalence)
        return se * prevalence / den if den > 0 else math.nan

    def acc(se: float, sp: float) -> float:
        return se * prevalence + sp * (1 - prevalence)

    nan3 = (math.nan, math.nan, math.nan)
    if not 0.0 < prevalence < 1.0 or any(math.isnan(v) for v in (*sensitivity, *specificity)):
        return {"precision": nan3, "accuracy": nan3}
    (se, se_lo, se_hi), (sp, sp_lo, sp_hi) = sensitivity, specificity
    return {"precision": (ppv(se, sp), ppv(se_lo, sp_lo), ppv(se_hi, sp_hi)),
            "accuracy": (acc(se, sp), acc(se_lo, sp_lo), acc(se_hi, sp_hi))}
