"""Figures averaged over training seeds, all tested on one real test set: intervals and tests that count both sources
of variation, and Holm's adjustment.

A retrained classifier's AUROC on the test set varies with the training seed (initialisation, data order, which
images were drawn) *and* with the test images that happened to be sampled. A Student-t interval over seeds sees only
the first; a DeLong test of the seed means sees only the second (with a seed spread of 0.05 AUROC its type-I error
was about 0.5). Here the variance of a seed mean is ``s^2 / K + v_test``: the between-seed variance of the K per-seed
values (ddof 1), plus the test-set sampling variance of the seed mean (DeLong / Obuchowski contrast for AUROC, a
patient bootstrap for threshold metrics). ``s^2`` also holds the part of the test noise that differs between the
models, so the sum slightly overstates the variance: conservative by design. The reference distribution is a
Student t with Welch-Satterthwaite degrees of freedom (``v_test`` counted as known).

With fewer than :data:`MIN_SEEDS_FOR_SPREAD` seeds the seed-to-seed spread is not estimated: the interval then covers
the test-set sampling only and says so, and the comparison with the baseline is refused (no p-value, no star).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _sps

from ._checks import _check_confidence

#: fewer seeds than this: the seed-to-seed variance is not estimated, and no seed-mean test is made
MIN_SEEDS_FOR_SPREAD = 3
METHOD_COMBINED = "seed spread + test-set sampling (t, Welch-Satterthwaite df)"
METHOD_TEST_ONLY = (f"test-set sampling only: the seed-to-seed spread needs at least {MIN_SEEDS_FOR_SPREAD} seeds and "
                    "is not in this interval")


def _clean(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[~np.isnan(v)]


def seed_mean_interval(values: Sequence[float], test_variance: float, confidence: float = 0.95) -> dict[str, float
                                                                                                       | str]:
    """Mean over training seeds with an interval for the population mean over seeds *and* test sets.

    Args:
        values: the metric of each seed on the same test set (NaN values are left out).
        test_variance: test-set sampling variance of the seed mean (e.g. ``delong_contrast`` of the K models
            against none, or the variance of the seed mean over a patient bootstrap); NaN if unknown.
        confidence: two-sided level.

    Returns:
        ``mean``, ``std`` (between seeds, ddof 1), ``ci_low``, ``ci_high`` (clipped to [0, 1]), ``se``, ``df``,
        ``n`` (seeds used) and ``method`` (:data:`METHOD_COMBINED` or :data:`METHOD_TEST_ONLY`).
    """
    c = _check_confidence(confidence)
    v = _clean(values)
    n = int(v.size)
    nan = float("nan")
    out: dict[str, float | str] = {"mean": nan, "std": nan, "ci_low": nan, "ci_high": nan, "se": nan, "df": nan,
                                   "n": n, "method": ""}
    if n == 0:
        return out
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n >= 2 else nan
    tv = float(test_variance) if test_variance is not None else nan
    out.update(mean=mean, std=std)
    if n >= MIN_SEEDS_FOR_SPREAD:
        seed_part = std**2 / n
        total = seed_part + (tv if math.isfinite(tv) else 0.0)
        df = (total**2 * (n - 1) / seed_part**2) if seed_part > 0 else math.inf
        method = METHOD_COMBINED if math.isfinite(tv) else "seed spread only (t over seeds; test variance unknown)"
    elif math.isfinite(tv):
        total, df, method = tv, math.inf, METHOD_TEST_ONLY
    else:
        out["method"] = METHOD_TEST_ONLY + "; test variance unknown"
        return out
    se = math.sqrt(max(total, 0.0))
    q = float(_sps.t.ppf(0.5 + c / 2, df)) if math.isfinite(df) else float(_sps.norm.ppf(0.5 + c / 2))
    out.update(ci_low=max(0.0, mean - q * se), ci_high=min(1.0, mean + q * se), se=se, df=df, method=method)
    return out


def seed_mean_difference(values_a: Sequence[float], values_b: Sequence[float], test_variance: float,
                         confidence: float = 0.95) -> dict[str, float | str]:
    """Seed mean of setting a minus seed mean of setting b, tested on the same test images, with an interval and a
    two-sided p-value that count both settings' seed spreads and the test-set sampling of the difference.

    Args:
        values_a, values_b: per-seed metric values of the two settings (NaN left out).
        test_variance: test-set sampling variance of the difference of the seed means (``delong_contrast``, or a
            joint patient bootstrap of both settings' seed means).
        confidence: two-sided level of the interval.

    Returns:
        ``difference``, ``ci_low``, ``ci_high``, ``se``, ``df``, ``p_value``, ``n_a``, ``n_b`` and ``method``. With
        fewer than :data:`MIN_SEEDS_FOR_SPREAD` seeds on either side: the difference and a test-set-only interval,
        p-value NaN (the test is refused) and ``method`` saying why.
    """
    c = _check_confidence(confidence)
    a, b = _clean(values_a), _clean(values_b)
    nan = float("nan")
    out: dict[str, float | str] = {"difference": nan, "ci_low": nan, "ci_high": nan, "se": nan, "df": nan,
                                   "p_value": nan, "n_a": int(a.size), "n_b": int(b.size), "method": ""}
    if a.size == 0 or b.size == 0:
        return out
    diff = float(a.mean() - b.mean())
    out["difference"] = diff
    tv = float(test_variance) if test_variance is not None else nan
    if min(a.size, b.size) < MIN_SEEDS_FOR_SPREAD:
        if math.isfinite(tv) and tv > 0:
            half = float(_sps.norm.ppf(0.5 + c / 2)) * math.sqrt(tv)
            out.update(ci_low=diff - half, ci_high=diff + half, se=math.sqrt(tv))
        out["method"] = METHOD_TEST_ONLY + "; no test"
        return out
    part_a, part_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    total = part_a + part_b + (tv if math.isfinite(tv) else 0.0)
    denom = part_a**2 / (a.size - 1) + part_b**2 / (b.size - 1)
    df = total**2 / denom if denom > 0 else math.inf
    se = math.sqrt(max(total, 0.0))
    q = float(_sps.t.ppf(0.5 + c / 2, df)) if math.isfinite(df) else float(_sps.norm.ppf(0.5 + c / 2))
    if se > 0:
        t = diff / se
        p = float(2 * (_sps.t.sf(abs(t), df) if math.isfinite(df) else _sps.norm.sf(abs(t))))
    else:
        p = 1.0 if diff == 0 else 0.0
    out.update(ci_low=diff - q * se, ci_high=diff + q * se, se=se, df=df, p_value=p,
               method=METHOD_COMBINED if math.isfinite(tv) else "seed spreads only (test variance unknown)")
    return out


def mean_ci_over_seeds(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean over training seeds with a Student-t interval over the seeds alone (no test-set sampling): used only
    where the test set is not sampled, e.g. a seed's training-curve summary; utility rows use
    :func:`seed_mean_interval`.

    Returns:
        ``mean``, ``std`` (ddof=1), ``ci_low``, ``ci_high`` (mean -+ t_{n-1} * std / sqrt(n)) and ``n``. One value: std
        and CI NaN; no values: everything NaN and n = 0.
    """
    c = _check_confidence(confidence)
    v = _clean(values)
    n = int(v.size)
    nan = float("nan")
    if n == 0:
        return {"mean": nan, "std": nan, "ci_low": nan, "ci_high": nan, "n": 0}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "std": nan, "ci_low": nan, "ci_high": nan, "n": 1}
    std = float(v.std(ddof=1))
    half = float(_sps.t.ppf(0.5 + c / 2, df=n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Args:
        p_values: shape (k,), p-values in [0, 1]; NaN entries are kept as NaN and not counted in the family.

    Returns:
        shape (k,) float64: the j-th smallest of the m non-NaN p-values becomes
        min(1, max_{i <= j} (m - i + 1) * p_(i)).
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p[ok][(p[ok] < 0) | (p[ok] > 1)].tolist()}")
    out = np.full(p.shape, np.nan)
    vals = p[ok]
    m = vals.size
    if m == 0:
        return out
    order = np.argsort(vals, kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * vals[order]))
    adjusted = np.empty(m)
    adjusted[order] = scaled
    out[ok] = adjusted
    return out
