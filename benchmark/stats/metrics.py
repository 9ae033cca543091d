"""Statistics every stage uses: binary metrics, bootstrap CIs, DeLong tests, seed summaries, Holm adjustment.

Pure functions on arrays: no hidden state, every random draw from a ``numpy.random.Generator`` seeded by the
``seed`` argument, so the same inputs and seed give the same output on any machine.

Conventions shared by all functions:

* ``y_true`` is a 1-D array of 0/1 labels (bool, int or float holding exactly 0.0/1.0). Unknown labels must be
  masked out by the caller first: a NaN (or any other value) raises ``ValueError``.
* ``y_score`` is a 1-D array of finite floats of the same length; higher means "more positive".
  The prediction at a threshold is ``y_score >= threshold``.
* Point estimates come from scikit-learn. The bootstrap inner loop is vectorised over resamples
  (:func:`metrics_on_resamples`) and is tested to equal scikit-learn on each resample.
* An undefined metric is NaN, never 0 and never a warning: AUROC with one class absent, precision with nothing
  predicted positive, recall with no positives, specificity with no negatives, F1 when there are neither
  true nor predicted positives. Bootstrap resamples on which a metric is undefined are left out of its CI and
  p-value (relevant only for the unstratified bootstrap or degenerate predictions).
* CIs are two-sided at ``confidence`` (default 0.95); bootstraps need ``n_resamples >= 1000``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import stats as _sps
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

METRICS: tuple[str, ...] = ("auroc", "accuracy", "precision", "recall", "specificity", "f1")
MIN_RESAMPLES = 1000
# Family-wise error rate of "the classifier finds this class above chance", over the classes of one image source
# (Holm-adjusted one-sided tests, :func:`auroc_above_chance_p`).
SIGNAL_ALPHA = 0.05
# Upper bound on elements of one (resamples x samples) work array; bootstrap resamples are drawn in chunks of
# rows below it. The chunk size depends only on the sample size, so results are reproducible for a given seed.
_CHUNK_ELEMENTS = 2_000_000

__all__ = [
    "METRICS",
    "MIN_RESAMPLES",
    "SIGNAL_ALPHA",
    "auroc_above_chance_p",
    "binary_metrics",
    "bootstrap_indices",
    "bootstrap_metrics",
    "confusion_counts",
    "delong_auc_variance",
    "delong_ci",
    "delong_roc_test",
    "holm_adjust",
    "mean_ci_over_seeds",
    "metrics_on_resamples",
    "paired_bootstrap_difference",
    "unpaired_difference",
]


# ----------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------


def _labels(y_true: np.ndarray, name: str = "y_true") -> np.ndarray:
    """``y_true`` as a 1-D int8 array of 0/1; ValueError for NaN, other values, wrong shape or no rows."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    if y.dtype == bool:
        return y.astype(np.int8)
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{name} must be numeric 0/1 labels, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating) and np.isnan(y).any():
        raise ValueError(f"{name} contains {int(np.isnan(y).sum())} NaN label(s): mask unknown labels before "
                         "computing metrics")
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise ValueError(f"{name} must hold only 0 and 1, found {np.unique(y[bad])[:5].tolist()}")
    return y.astype(np.int8)


def _scores(y_score: np.ndarray, n: int, name: str = "y_score") -> np.ndarray:
    """``y_score`` as a 1-D float64 array of length ``n``; ValueError for NaN/inf or a length mismatch."""
    s = np.asarray(y_score, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries (one per label), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(s)).sum())} non-finite value(s)")
    return s


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold is NaN")
    return t


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return c


def _check_resamples(n_resamples: int) -> int:
    if int(n_resamples) != n_resamples or n_resamples < MIN_RESAMPLES:
        raise ValueError(f"n_resamples must be an integer >= {MIN_RESAMPLES} (the harness promises at least "
                         f"{MIN_RESAMPLES} bootstrap resamples), got {n_resamples}")
    return int(n_resamples)


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    return metric


# ----------------------------------------------------------------------------------------------------
# Point estimates
# ----------------------------------------------------------------------------------------------------


def binary_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> dict[str, float]:
    """Sample sizes and :data:`METRICS` of one binary classifier, computed with scikit-learn.

    Args:
        y_true: shape (n,), 0/1 labels (NaN -> ValueError: mask unknown labels first).
        y_score: shape (n,), finite scores; higher = more positive.
        threshold: the prediction is ``y_score >= threshold``.

    Returns:
        ``n``, ``positives``, ``negatives`` (ints) and each of :data:`METRICS` (floats). AUROC is NaN when one
        class is absent; precision is NaN when nothing is predicted positive; recall NaN without positives;
        specificity (recall of the negative class) NaN without negatives; F1 NaN with neither true nor predicted
        positives. No warnings are emitted for these cases.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    pred = (s >= _check_threshold(threshold)).astype(np.int8)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    both = n_pos > 0 and n_neg > 0
    nan = float("nan")
    return {
        "n": int(y.size),
        "positives": n_pos,
        "negatives": n_neg,
        "auroc": float(roc_auc_score(y, s)) if both else nan,
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, pos_label=1, zero_division=np.nan)),
        "recall": float(recall_score(y, pred, pos_label=1, zero_division=np.nan)),
        "specificity": float(recall_score(y, pred, pos_label=0, zero_division=np.nan)),
        "f1": float(f1_score(y, pred, pos_label=1, zero_division=np.nan)),
    }


def confusion_counts(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> dict[str, int]:
    """``tn``, ``fp``, ``fn``, ``tp`` at ``y_score >= threshold`` (scikit-learn's confusion matrix, labels 0/1)."""
    y = _labels(y_true)
    pred = (_scores(y_score, y.size) >= _check_threshold(threshold)).astype(np.int8)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


# ----------------------------------------------------------------------------------------------------
# Vectorised bootstrap
# ----------------------------------------------------------------------------------------------------


def _iter_bootstrap_indices(y: np.ndarray, n_resamples: int, rng: np.random.Generator,
                            stratified: bool) -> Iterator[np.ndarray]:
    """Chunks of bootstrap index rows, each (chunk, n) int64; chunk size depends only on n."""
    n = y.size
    chunk = max(1, min(n_resamples, _CHUNK_ELEMENTS // n))
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    done = 0
    while done < n_resamples:
        c = min(chunk, n_resamples - done)
        if stratified:
            parts = [grp[rng.integers(0, grp.size, size=(c, grp.size))] for grp in (pos, neg) if grp.size]
            yield np.concatenate(parts, axis=1)
        else:
            yield rng.integers(0, n, size=(c, n))
        done += c


def bootstrap_indices(y_true: np.ndarray, n_resamples: int, seed: int | np.random.Generator = 0,
                      stratified: bool = True) -> np.ndarray:
    """Bootstrap resamples of row indices, exactly as :func:`bootstrap_metrics` draws them for the same seed.

    Args:
        y_true: shape (n,), 0/1 labels.
        n_resamples: number of resamples B (any positive count here).
        seed: an int seed or a Generator (consumed).
        stratified: resample positives and negatives separately, so every row keeps the class counts; a
            stratified row lists the resampled positives first, then the negatives.

    Returns:
        shape (B, n), int64 indices into ``y_true``.
    """
    y = _labels(y_true)
    rng = np.random.default_rng(seed)
    return np.concatenate(list(_iter_bootstrap_indices(y, int(n_resamples), rng, stratified)), axis=0)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def _auroc_on_resamples(yb: np.ndarray, ub: np.ndarray, n_unique: int) -> np.ndarray:
    """Mann-Whitney AUROC of each resample row, O(B * (n + K)) without sorting.

    ``yb`` (B, n) bool labels of the resampled rows; ``ub`` (B, n) index of each resampled score among the K
    sorted unique scores. For each row, the negatives are counted per unique score (bincount); the cumulative
    count below a score plus half the count at it is the placement of a positive with that score; the AUROC is
    the summed placement of the resampled positives over n_pos * n_neg (ties count 1/2). All sums are exact
    (half-integers), so this equals the trapezoidal ROC area of scikit-learn up to rounding.
    """
    b, n = yb.shape
    flat = (ub + n_unique * np.arange(b)[:, None])
    neg_counts = np.bincount(flat[~yb], minlength=b * n_unique).reshape(b, n_unique)
    placement = np.cumsum(neg_counts, axis=1) - 0.5 * neg_counts
    summed = np.where(yb, np.take_along_axis(placement, ub, axis=1), 0.0).sum(axis=1)
    n_pos = yb.sum(axis=1)
    return _safe_ratio(summed, (n_pos * (n - n_pos)).astype(np.float64))


def metrics_on_resamples(y_true: np.ndarray, y_score: np.ndarray, threshold: float, indices: np.ndarray,
                         metrics: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """Metrics of every resample at once (the vectorised bootstrap inner loop).

    Args:
        y_true: shape (n,), 0/1 labels.
        y_score: shape (n,), finite scores.
        threshold: prediction is ``y_score >= threshold``.
        indices: shape (B, m), int indices into the n rows (one resample per row; m is usually n).
        metrics: which of :data:`METRICS` to compute.

    Returns:
        metric -> shape (B,) float64; same definitions and NaN rules as :func:`binary_metrics`.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    for m in metrics:
        _check_metric(m)
    idx = np.asarray(indices)
    if idx.ndim != 2:
        raise ValueError(f"indices must be 2-D (resamples, samples), got shape {idx.shape}")
    yb = y.astype(bool)[idx]
    out: dict[str, np.ndarray] = {}
    if "auroc" in metrics:
        uniq, inverse = np.unique(s, return_inverse=True)
        out["auroc"] = _auroc_on_resamples(yb, inverse.reshape(-1)[idx], uniq.size)
    threshold_metrics = [m for m in metrics if m != "auroc"]
    if threshold_metrics:
        pb = (s >= _check_threshold(threshold))[idx]
        tp = (yb & pb).sum(axis=1).astype(np.float64)
        fp = (~yb & pb).sum(axis=1).astype(np.float64)
        fn = (yb & ~pb).sum(axis=1).astype(np.float64)
        tn = idx.shape[1] - tp - fp - fn
        formulas = {
            "accuracy": lambda: (tp + tn) / idx.shape[1],
            "precision": lambda: _safe_ratio(tp, tp + fp),
            "recall": lambda: _safe_ratio(tp, tp + fn),
            "specificity": lambda: _safe_ratio(tn, tn + fp),
            "f1": lambda: _safe_ratio(2 * tp, 2 * tp + fp + fn),
        }
        for m in threshold_metrics:
            out[m] = formulas[m]()
    return {m: out[m] for m in metrics}


def _resampled(y: np.ndarray, s: np.ndarray, threshold: float, n_resamples: int, rng: np.random.Generator,
               stratified: bool, metrics: Sequence[str] = METRICS,
               others: Sequence[np.ndarray] = ()) -> list[dict[str, np.ndarray]]:
    """Resampled metrics of ``s`` (and of each score array in ``others`` on the same resamples), chunk by chunk."""
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in range(1 + len(others))]
    for idx in _iter_bootstrap_indices(y, n_resamples, rng, stratified):
        for k, scores in enumerate((s, *others)):
            parts[k].append(metrics_on_resamples(y, scores, threshold, idx, metrics))
    return [{m: np.concatenate([p[m] for p in part]) for m in metrics} for part in parts]


def _percentile_ci(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap values (NaN, NaN when none is finite)."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value for "difference = 0": 2 * min(P(d <= 0), P(d >= 0)) with the +1 correction.

    It is the smallest level at which the percentile CI of the difference excludes 0 (within 1/B), never 0.
    """
    d = diffs[~np.isnan(diffs)]
    if d.size == 0:
        return float("nan")
    b = d.size
    p_low = (np.count_nonzero(d <= 0) + 1) / (b + 1)
    p_high = (np.count_nonzero(d >= 0) + 1) / (b + 1)
    return float(min(1.0, 2.0 * min(p_low, p_high)))


def bootstrap_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float, *, n_resamples: int = 2000,
                      seed: int = 0, confidence: float = 0.95,
                      stratified: bool = True) -> dict[str, tuple[float, float, float]]:
    """Percentile-bootstrap CIs of :data:`METRICS`.

    Args:
        y_true: shape (n,), 0/1 labels.
        y_score: shape (n,), finite scores.
        threshold: prediction is ``y_score >= threshold``.
        n_resamples: B >= 1000 (ValueError otherwise).
        seed: seed of the Generator that draws the resamples (see :func:`bootstrap_indices`).
        confidence: two-sided level of the interval.
        stratified: resample positives and negatives separately (keeps the prevalence and makes AUROC defined on
            every resample); False resamples rows freely.

    Returns:
        metric -> (estimate on the full data, ci_low, ci_high). Resamples where a metric is undefined are left
        out of its interval; a metric undefined on the full data gets (NaN, NaN, NaN).
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    t = _check_threshold(threshold)
    b = _check_resamples(n_resamples)
    c = _check_confidence(confidence)
    point = binary_metrics(y, s, t)
    (boot,) = _resampled(y, s, t, b, np.random.default_rng(seed), stratified)
    out: dict[str, tuple[float, float, float]] = {}
    for m in METRICS:
        if math.isnan(point[m]):
            out[m] = (float("nan"), float("nan"), float("nan"))
        else:
            out[m] = (point[m], *_percentile_ci(boot[m], c))
    return out


# ----------------------------------------------------------------------------------------------------
# DeLong
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


def _delong_covariance(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """DeLong covariance matrix S = S10/m + S01/r of k AUCs, (k, k); NaN when a class has fewer than 2 rows."""
    m = int(y.sum())
    r = y.size - m
    k = scores.shape[0]
    if m < 2 or r < 2:
        return np.full((k, k), np.nan)
    _, v10, v01 = _delong_components(y, scores)
    d10 = v10 - v10.mean(axis=1, keepdims=True)
    d01 = v01 - v01.mean(axis=1, keepdims=True)
    return (d10 @ d10.T) / ((m - 1) * m) + (d01 @ d01.T) / ((r - 1) * r)


def _z_and_p(diff: float, var: float) -> tuple[float, float]:
    """Normal z and two-sided p for ``diff`` with variance ``var`` (var 0: z 0 if diff is 0, else +-inf)."""
    if math.isnan(diff) or math.isnan(var):
        return float("nan"), float("nan")
    if var > 0.0:
        z = diff / math.sqrt(var)
        return z, float(2.0 * _sps.norm.sf(abs(z)))
    z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return z, float(2.0 * _sps.norm.sf(abs(z)))


def delong_auc_variance(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """DeLong variance of one AUROC: var(V10)/m + var(V01)/r (ddof=1).

    Args:
        y_true: shape (n,), 0/1 labels. y_score: shape (n,), finite scores.

    Returns:
        The variance; NaN when either class has fewer than 2 rows.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    return float(_delong_covariance(y, s[None, :])[0, 0])


def delong_ci(y_true: np.ndarray, y_score: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """AUROC (scikit-learn) and its DeLong Wald interval AUC -+ z * sqrt(var), clipped to [0, 1].

    Args:
        y_true: shape (n,), 0/1 labels. y_score: shape (n,), finite scores. confidence: two-sided level.

    Returns:
        (auc, ci_low, ci_high); all NaN when one class is absent, CI NaN when a class has one row.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    c = _check_confidence(confidence)
    if y.min() == y.max():
        return float("nan"), float("nan"), float("nan")
    auc = float(roc_auc_score(y, s))
    var = delong_auc_variance(y, s)
    if math.isnan(var):
        return auc, float("nan"), float("nan")
    half = _sps.norm.ppf(0.5 + c / 2) * math.sqrt(var)
    return auc, float(max(0.0, auc - half)), float(min(1.0, auc + half))


def delong_roc_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float]:
    """Paired DeLong test of two AUROCs on the same rows (two classifiers scored on the same images).

    Args:
        y_true: shape (n,), 0/1 labels.
        score_a, score_b: shape (n,) each, finite scores of classifiers a and b for the same rows.

    Returns:
        ``auc_a``, ``auc_b`` (scikit-learn), ``difference`` (a - b), ``variance`` of the difference
        (S_aa + S_bb - 2 S_ab of DeLong's covariance), ``z`` and the two-sided normal ``p_value``.
        All NaN when one class is absent; variance, z and p NaN when a class has one row. Identical scores give
        z = 0, p = 1.
    """
    y = _labels(y_true)
    a = _scores(score_a, y.size, "score_a")
    b = _scores(score_b, y.size, "score_b")
    keys = ("auc_a", "auc_b", "difference", "variance", "z", "p_value")
    if y.min() == y.max():
        return dict.fromkeys(keys, float("nan"))
    auc_a = float(roc_auc_score(y, a))
    auc_b = float(roc_auc_score(y, b))
    cov = _delong_covariance(y, np.stack([a, b]))
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if not math.isnan(var):
        var = max(var, 0.0)  # rounding can make a zero variance slightly negative
    diff = auc_a - auc_b
    z, p = _z_and_p(diff, var)
    return dict(zip(keys, (auc_a, auc_b, diff, var, z, p), strict=True))


# ----------------------------------------------------------------------------------------------------
# Differences
# ----------------------------------------------------------------------------------------------------


def unpaired_difference(y_a: np.ndarray, score_a: np.ndarray, y_b: np.ndarray, score_b: np.ndarray,
                        threshold: float, *, n_resamples: int = 2000, seed: int = 0,
                        confidence: float = 0.95) -> dict[str, tuple[float, float, float, float]]:
    """Metric of sample a minus metric of sample b for independent samples (e.g. real vs synthetic images).

    Each sample is bootstrapped on its own (stratified, independent child generators of ``seed``); the
    difference of the resampled metrics gives a percentile CI and the two-sided p-value
    2 * min(P(d <= 0), P(d >= 0)) with the +1 correction.

    Args:
        y_a, score_a: shape (n_a,) labels and scores of sample a.
        y_b, score_b: shape (n_b,) labels and scores of sample b.
        threshold: prediction is ``score >= threshold`` in both samples.
        n_resamples: B >= 1000. seed: seed of the resampling. confidence: two-sided level.

    Returns:
        metric -> (difference, ci_low, ci_high, p_value) for each of :data:`METRICS`, plus ``auroc_delong_p``:
        the AUROC difference with the analytic DeLong interval and normal p-value for two independent AUCs
        (variance var_a + var_b). A metric undefined in either full sample gives all NaN.
    """
    ya = _labels(y_a, "y_a")
    sa = _scores(score_a, ya.size, "score_a")
    yb = _labels(y_b, "y_b")
    sb = _scores(score_b, yb.size, "score_b")
    t = _check_threshold(threshold)
    b = _check_resamples(n_resamples)
    c = _check_confidence(confidence)
    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    point_a, point_b = binary_metrics(ya, sa, t), binary_metrics(yb, sb, t)
    (boot_a,) = _resampled(ya, sa, t, b, rng_a, stratified=True)
    (boot_b,) = _resampled(yb, sb, t, b, rng_b, stratified=True)
    nan4 = (float("nan"),) * 4
    out: dict[str, tuple[float, float, float, float]] = {}
    for m in METRICS:
        diff = point_a[m] - point_b[m]
        if math.isnan(diff):
            out[m] = nan4
            continue
        d = boot_a[m] - boot_b[m]
        out[m] = (diff, *_percentile_ci(d, c), _bootstrap_p(d))
    diff = point_a["auroc"] - point_b["auroc"]
    var = delong_auc_variance(ya, sa) + delong_auc_variance(yb, sb) if not math.isnan(diff) else float("nan")
    if math.isnan(var):
        out["auroc_delong_p"] = (diff, float("nan"), float("nan"), float("nan"))
    else:
        half = _sps.norm.ppf(0.5 + c / 2) * math.sqrt(var)
        out["auroc_delong_p"] = (diff, float(max(-1.0, diff - half)), float(min(1.0, diff + half)),
                                 _z_and_p(diff, var)[1])
    return out


def paired_bootstrap_difference(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, metric: str, *,
                                threshold: float = 0.5, n_resamples: int = 2000, seed: int = 0,
                                confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Metric of model a minus model b on the same rows, by resampling row indices jointly (stratified).

    Args:
        y_true: shape (n,), 0/1 labels.
        pred_a, pred_b: shape (n,) each, finite scores of models a and b for the same rows.
        metric: one of :data:`METRICS` (ValueError otherwise).
        threshold: prediction is ``score >= threshold`` for both models.
        n_resamples: B >= 1000. seed: seed of the resampling. confidence: two-sided level.

    Returns:
        (difference on the full data, ci_low, ci_high, two-sided bootstrap p-value
        2 * min(P(d <= 0), P(d >= 0)) with the +1 correction); all NaN if the metric is undefined on the data.
    """
    _check_metric(metric)
    y = _labels(y_true)
    a = _scores(pred_a, y.size, "pred_a")
    b_scores = _scores(pred_b, y.size, "pred_b")
    t = _check_threshold(threshold)
    b = _check_resamples(n_resamples)
    c = _check_confidence(confidence)
    diff = binary_metrics(y, a, t)[metric] - binary_metrics(y, b_scores, t)[metric]
    if math.isnan(diff):
        return (float("nan"),) * 4
    boot_a, boot_b = _resampled(y, a, t, b, np.random.default_rng(seed), True, (metric,), (b_scores,))
    d = boot_a[metric] - boot_b[metric]
    return (diff, *_percentile_ci(d, c), _bootstrap_p(d))


# ----------------------------------------------------------------------------------------------------
# Seeds and multiplicity
# ----------------------------------------------------------------------------------------------------


def mean_ci_over_seeds(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean over training seeds with a Student-t interval.

    Args:
        values: one metric value per seed; NaN values (a metric undefined for that seed) are left out.
        confidence: two-sided level.

    Returns:
        ``mean``, ``std`` (ddof=1), ``ci_low``, ``ci_high`` (mean -+ t_{n-1} * std / sqrt(n)) and ``n`` (values
        used). One value: std and CI NaN; no values: everything NaN and n = 0.
    """
    c = _check_confidence(confidence)
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
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


def auroc_above_chance_p(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """One-sided p-value of AUROC > 0.5: the Mann-Whitney U test that positives score higher than negatives.

    AUROC equals U / (n_pos * n_neg), so this tests exactly "the classifier ranks positives above negatives more
    often than chance" under the null that scores do not depend on the label (scipy's exact test for small samples
    without ties, the tie-corrected normal approximation otherwise).

    Args:
        y_true: shape (n,), 0/1 labels.
        y_score: shape (n,), finite scores.

    Returns:
        p in [0, 1]; NaN when one label is absent (AUROC undefined).
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    positives, negatives = s[y == 1], s[y == 0]
    if positives.size == 0 or negatives.size == 0:
        return float("nan")
    return float(_sps.mannwhitneyu(positives, negatives, alternative="greater").pvalue)


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

