"""Binary classification metrics and their resampling: point estimates, vectorised bootstraps over images or
patients, and differences between two samples or two models.

Pure functions on arrays: no hidden state, every random draw from a ``numpy.random.Generator`` seeded by the
``seed`` argument, so the same inputs and seed give the same output on any machine.

Conventions shared by all functions:

* ``y_true`` is a 1-D array of 0/1 labels (bool, int or float holding exactly 0.0/1.0). Unknown labels must be
  masked out by the caller first: a NaN (or any other value) raises ``ValueError``.
* ``y_score`` is a 1-D array of finite floats of the same length; higher means "more positive".
  The prediction at a threshold is ``y_score >= threshold``.
* ``clusters`` (optional) is one id per row, the patient: resampling then draws patients with replacement and keeps
  all of a drawn patient's images (a patient's images are not independent evidence).
* Point estimates come from scikit-learn, except AUROC (:func:`benchmark.core.stats.auroc.auroc`, the exact Mann-Whitney
  count). The bootstrap inner loops are vectorised over resamples and tested to equal scikit-learn on each resample.
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
)

from ._checks import (
    METRICS,
    _check_confidence,
    _check_metric,
    _check_resamples,
    _check_threshold,
    _labels,
    _scores,
)
from .auroc import _z_and_p, auroc, cluster_codes, delong_auc_variance

# Upper bound on elements of one (resamples x samples) work array; bootstrap resamples are drawn in chunks of
# rows below it. The chunk size depends only on the sample size, so results are reproducible for a given seed.
_CHUNK_ELEMENTS = 2_000_000


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
        "auroc": auroc(y, s) if both else nan,
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


def cluster_bootstrap_weights(y_true: np.ndarray, clusters: Sequence | np.ndarray, n_resamples: int,
                              seed: int | np.random.Generator = 0, stratified: bool = True,
                              chunk: int | None = None) -> Iterator[np.ndarray]:
    """Patient (cluster) bootstrap as image weights, in chunks ``(c, n)`` float64.

    Each resample draws the K clusters with replacement (within strata when ``stratified``: clusters holding a
    positive and the others are drawn separately, so every resample keeps their counts and AUROC stays defined);
    an image's weight is the number of times its cluster was drawn. With one image per cluster and stratification
    this is the stratified image bootstrap. The chunk size depends only on n (or is ``chunk``: give two bootstraps
    that are consumed side by side the same one), so a seed gives the same weights.
    """
    y = _labels(y_true)
    n = y.size
    codes = cluster_codes(clusters, n)
    k = int(codes.max()) + 1
    has_pos = np.bincount(codes, weights=y.astype(np.float64), minlength=k) > 0
    strata = [np.flatnonzero(has_pos), np.flatnonzero(~has_pos)] if stratified else [np.arange(k)]
    strata = [g for g in strata if g.size]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(int(n_resamples), chunk or _CHUNK_ELEMENTS // max(n, k)))
    done = 0
    while done < n_resamples:
        c = min(chunk, n_resamples - done)
        counts = np.zeros((c, k), dtype=np.float64)
        rows = np.arange(c)[:, None]
        for group in strata:
            picks = group[rng.integers(0, group.size, size=(c, group.size))]
            np.add.at(counts, (np.broadcast_to(rows, picks.shape), picks), 1.0)
        yield counts[:, codes]
        done += c


def joint_chunk(*sizes: int) -> int:
    """One chunk size (resamples per chunk) for bootstraps of several samples consumed side by side."""
    return max(1, _CHUNK_ELEMENTS // max(1, *sizes))


def _sorted_buckets(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order of the rows by score, the start of each run of tied scores in that order, and the sorted labels."""
    order = np.argsort(s, kind="stable")
    ss = s[order]
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    return order, starts, y[order].astype(bool)


def _bucket_weights(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per unique score (ascending), each ``(B, K)``."""
    order, starts, ys = _sorted_buckets(y, s)
    w = weights[:, order]
    pos = np.add.reduceat(np.where(ys, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(ys, 0.0, w), starts, axis=1)
    return pos, neg


def sensitivity_at_specificity(y_true: np.ndarray, y_score: np.ndarray, specificity: float = 0.9,
                               weights: np.ndarray | None = None) -> np.ndarray | float:
    """Highest sensitivity among thresholds whose specificity is at least ``specificity`` (the ROC curve's step at
    that false-positive rate), on the data themselves, or on each weighted resample.

    The threshold is chosen on the same images, so a resampled interval (patients or images redrawn, the threshold
    found again) includes the uncertainty of that choice.

    Args:
        y_true: shape (n,), 0/1 labels. y_score: shape (n,), finite scores. specificity: in (0, 1].
        weights: optional (B, n) resample weights (:func:`cluster_bootstrap_weights`).

    Returns:
        A float (no weights) or (B,) float64; NaN where a class has no weight.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    if not 0.0 < specificity <= 1.0:
        raise ValueError(f"specificity must lie in (0, 1], got {specificity}")
    w = np.ones((1, y.size)) if weights is None else np.asarray(weights, dtype=np.float64)
    pos, neg = _bucket_weights(y, s, w)
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    # predicting "positive" for scores >= the j-th unique score: specificity = negative weight strictly below it
    below_neg = np.concatenate([np.cumsum(neg, axis=1) - neg, total_neg[:, None]], axis=1)
    below_pos = np.concatenate([np.cumsum(pos, axis=1) - pos, total_pos[:, None]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = below_neg / total_neg[:, None]
        sens = 1.0 - below_pos / total_pos[:, None]
    first = np.argmax(spec >= specificity - 1e-12, axis=1)  # the last column (nothing positive) always qualifies
    out = sens[np.arange(sens.shape[0]), first]
    out[(total_pos <= 0) | (total_neg <= 0)] = np.nan
    return float(out[0]) if weights is None else out


def youden_threshold(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | float:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J), on the data or on each weighted resample.

    Candidate thresholds are the observed scores (prediction ``score >= threshold``), as in
    ``sklearn.metrics.roc_curve``; ties in J go to the highest threshold. Re-choosing it on every resample of the
    validation patients carries the uncertainty of the choice into the test metrics' intervals.

    Args:
        y_true, y_score: shape (n,). weights: optional (B, n) resample weights.

    Returns:
        A float (no weights) or (B,) float64; NaN where a class has no weight.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    w = np.ones((1, y.size)) if weights is None else np.asarray(weights, dtype=np.float64)
    order, starts, _ = _sorted_buckets(y, s)
    unique = s[order][starts]
    pos, neg = _bucket_weights(y, s, w)
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = (np.cumsum(neg, axis=1) - neg) / total_neg[:, None]
        sens = 1.0 - (np.cumsum(pos, axis=1) - pos) / total_pos[:, None]
    j = np.nan_to_num(sens + spec - 1.0, nan=-np.inf)
    best = j.shape[1] - 1 - np.argmax(j[:, ::-1], axis=1)  # the highest threshold among ties
    out = unique[best].astype(np.float64)
    out[(total_pos <= 0) | (total_neg <= 0)] = np.nan
    return float(out[0]) if weights is None else out


def silverman_bandwidths(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """(n,) kernel bandwidth of each score for a smoothed bootstrap: Silverman's rule ``0.9 min(SD, IQR / 1.349)
    m^(-1/5)`` within its label group of m images (0 for a group without spread)."""
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    out = np.zeros(s.size)
    for label in (0, 1):
        group = s[y == label]
        if group.size < 2:
            continue
        sd = float(group.std(ddof=1))
        iqr = float(np.subtract(*np.quantile(group, [0.75, 0.25]))) / 1.349
        out[y == label] = 0.9 * (min(sd, iqr) if iqr > 0 else sd) * group.size ** -0.2
    return out


def smoothed_youden_thresholds(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray,
                               noise: np.ndarray) -> np.ndarray:
    """(B,) Youden thresholds re-chosen on resamples (``weights`` (B, n)) of scores smoothed by ``noise`` (B, n)
    standard normal draws times :func:`silverman_bandwidths` (the smoothed bootstrap, Silverman & Young 1987).

    Youden's threshold is an argmax over few positives: on plain resamples the lowest positive score is never below
    the sample's, and the specificity interval that carries the choice covered as little as 0.66 in simulation
    (10 validation positives, AUROC 0.98); smoothing restores 0.91-1.0.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    h = silverman_bandwidths(y, s)
    w = np.asarray(weights, dtype=np.float64)
    return np.array([youden_threshold(y, s + h * noise[b], w[b:b + 1])[0] for b in range(len(w))])


def metrics_at_thresholds(y_true: np.ndarray, y_score: np.ndarray, thresholds: np.ndarray, weights: np.ndarray,
                          metrics: Sequence[str] = tuple(m for m in METRICS if m != "auroc")) -> dict[str, np.ndarray]:
    """Threshold metrics of every weighted resample, each at its own threshold (e.g. a Youden threshold re-chosen on
    that resample's validation patients).

    Args:
        y_true, y_score: shape (n,). thresholds: shape (B,). weights: shape (B, n).
        metrics: threshold metrics of :data:`METRICS` (not ``auroc``).

    Returns:
        metric -> (B,) float64, NaN where undefined or where the threshold is NaN.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    w = np.asarray(weights, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if w.shape != (t.size, y.size):
        raise ValueError(f"weights must be ({t.size}, {y.size}), got shape {w.shape}")
    for m in metrics:
        if _check_metric(m) == "auroc":
            raise ValueError("auroc does not depend on a threshold")
    pred = s[None, :] >= t[:, None]
    yb = y.astype(bool)[None, :]
    tp, fp = (w * (yb & pred)).sum(axis=1), (w * (~yb & pred)).sum(axis=1)
    fn, tn = (w * (yb & ~pred)).sum(axis=1), (w * (~yb & ~pred)).sum(axis=1)
    formulas = {
        "accuracy": lambda: _safe_ratio(tp + tn, tp + fp + fn + tn),
        "precision": lambda: _safe_ratio(tp, tp + fp),
        "recall": lambda: _safe_ratio(tp, tp + fn),
        "specificity": lambda: _safe_ratio(tn, tn + fp),
        "f1": lambda: _safe_ratio(2 * tp, 2 * tp + fp + fn),
    }
    out = {m: formulas[m]() for m in metrics}
    for values in out.values():
        values[np.isnan(t)] = np.nan
    return out


def metrics_on_weights(y_true: np.ndarray, y_score: np.ndarray, threshold: float, weights: np.ndarray,
                       metrics: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """Metrics of every weighted resample at once (the patient bootstrap's inner loop).

    Args:
        y_true, y_score: shape (n,). threshold: prediction is ``y_score >= threshold``.
        weights: shape (B, n), each row a resample's image weights (integer counts for a bootstrap).
        metrics: which of :data:`METRICS` to compute.

    Returns:
        metric -> shape (B,) float64; with integer weights each equals the metric on the data with every row
        repeated its weight's number of times (AUROC: the Mann-Whitney count over the weighted pairs).
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    for m in metrics:
        _check_metric(m)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != y.size:
        raise ValueError(f"weights must be (resamples, {y.size}), got shape {w.shape}")
    out: dict[str, np.ndarray] = {}
    if "auroc" in metrics:
        pos, neg = _bucket_weights(y, s, w)
        placement = np.cumsum(neg, axis=1) - 0.5 * neg
        out["auroc"] = _safe_ratio((pos * placement).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))
    if any(m != "auroc" for m in metrics):
        pred = s >= _check_threshold(threshold)
        yb = y.astype(bool)
        tp, fp = w @ (yb & pred).astype(np.float64), w @ (~yb & pred).astype(np.float64)
        fn, tn = w @ (yb & ~pred).astype(np.float64), w @ (~yb & ~pred).astype(np.float64)
        total = tp + fp + fn + tn
        formulas = {
            "accuracy": lambda: _safe_ratio(tp + tn, total),
            "precision": lambda: _safe_ratio(tp, tp + fp),
            "recall": lambda: _safe_ratio(tp, tp + fn),
            "specificity": lambda: _safe_ratio(tn, tn + fp),
            "f1": lambda: _safe_ratio(2 * tp, 2 * tp + fp + fn),
        }
        for m in metrics:
            if m != "auroc":
                out[m] = formulas[m]()
    return {m: out[m] for m in metrics}


def _resampled(y: np.ndarray, s: np.ndarray, threshold: float, n_resamples: int, rng: np.random.Generator,
               stratified: bool, metrics: Sequence[str] = METRICS, others: Sequence[np.ndarray] = (),
               clusters: Sequence | np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """Resampled metrics of ``s`` (and of each score array in ``others`` on the same resamples), chunk by chunk:
    images resampled, or patients when ``clusters`` is given."""
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in range(1 + len(others))]
    if clusters is None:
        for idx in _iter_bootstrap_indices(y, n_resamples, rng, stratified):
            for k, scores in enumerate((s, *others)):
                parts[k].append(metrics_on_resamples(y, scores, threshold, idx, metrics))
    else:
        for w in cluster_bootstrap_weights(y, clusters, n_resamples, rng, stratified):
            for k, scores in enumerate((s, *others)):
                parts[k].append(metrics_on_weights(y, scores, threshold, w, metrics))
    return [{m: np.concatenate([p[m] for p in part]) for m in metrics} for part in parts]


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval ``(low, high)`` at ``confidence`` of the bootstrap replicates ``values`` ``(B,)``, NaN
    replicates (resamples where the statistic is undefined) left out; ``(NaN, NaN)`` when every replicate is NaN.

    The one percentile-interval helper of the harness: every stage's bootstrap interval goes through it."""
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
                      seed: int = 0, confidence: float = 0.95, stratified: bool = True,
                      clusters: Sequence | np.ndarray | None = None) -> dict[str, tuple[float, float, float]]:
    """Percentile-bootstrap CIs of :data:`METRICS`, resampling images or, with ``clusters``, patients.

    Args:
        y_true: shape (n,), 0/1 labels.
        y_score: shape (n,), finite scores.
        threshold: prediction is ``y_score >= threshold``.
        n_resamples: B >= 1000 (ValueError otherwise).
        seed: seed of the Generator that draws the resamples (see :func:`bootstrap_indices`).
        confidence: two-sided level of the interval.
        stratified: resample positives and negatives separately (keeps the prevalence and makes AUROC defined on
            every resample); False resamples rows freely. With clusters: patients with and without a positive.
        clusters: optional (n,) patient ids (:func:`cluster_bootstrap_weights`).

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
    (boot,) = _resampled(y, s, t, b, np.random.default_rng(seed), stratified, clusters=clusters)
    out: dict[str, tuple[float, float, float]] = {}
    for m in METRICS:
        if math.isnan(point[m]):
            out[m] = (float("nan"), float("nan"), float("nan"))
        else:
            out[m] = (point[m], *percentile_interval(boot[m], c))
    return out


# ----------------------------------------------------------------------------------------------------
# Differences
# ----------------------------------------------------------------------------------------------------


def unpaired_difference(y_a: np.ndarray, score_a: np.ndarray, y_b: np.ndarray, score_b: np.ndarray,
                        threshold: float, *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                        clusters_a: Sequence | np.ndarray | None = None,
                        clusters_b: Sequence | np.ndarray | None = None) -> dict[str, tuple[float, float, float,
                                                                                            float]]:
    """Metric of sample a minus metric of sample b for independent samples (e.g. real vs synthetic images).

    Each sample is bootstrapped on its own (stratified, independent child generators of ``seed``); the
    difference of the resampled metrics gives a percentile CI and the two-sided p-value
    2 * min(P(d <= 0), P(d >= 0)) with the +1 correction.

    Args:
        y_a, score_a: shape (n_a,) labels and scores of sample a.
        y_b, score_b: shape (n_b,) labels and scores of sample b.
        threshold: prediction is ``score >= threshold`` in both samples.
        n_resamples: B >= 1000. seed: seed of the resampling. confidence: two-sided level.
        clusters_a, clusters_b: optional patient ids of each sample: patients are resampled, and the DeLong
            variances are Obuchowski's clustered ones.

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
    (boot_a,) = _resampled(ya, sa, t, b, rng_a, stratified=True, clusters=clusters_a)
    (boot_b,) = _resampled(yb, sb, t, b, rng_b, stratified=True, clusters=clusters_b)
    nan4 = (float("nan"),) * 4
    out: dict[str, tuple[float, float, float, float]] = {}
    for m in METRICS:
        diff = point_a[m] - point_b[m]
        if math.isnan(diff):
            out[m] = nan4
            continue
        d = boot_a[m] - boot_b[m]
        out[m] = (diff, *percentile_interval(d, c), _bootstrap_p(d))
    diff = point_a["auroc"] - point_b["auroc"]
    var = (delong_auc_variance(ya, sa, clusters_a) + delong_auc_variance(yb, sb, clusters_b)
           if not math.isnan(diff) else float("nan"))
    if math.isnan(var):
        out["auroc_delong_p"] = (diff, float("nan"), float("nan"), float("nan"))
    else:
        half = _sps.norm.ppf(0.5 + c / 2) * math.sqrt(var)
        out["auroc_delong_p"] = (diff, float(max(-1.0, diff - half)), float(min(1.0, diff + half)),
                                 _z_and_p(diff, var)[1])
    return out


def paired_bootstrap_difference(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, metric: str, *,
                                threshold: float = 0.5, n_resamples: int = 2000, seed: int = 0,
                                confidence: float = 0.95,
                                clusters: Sequence | np.ndarray | None = None) -> tuple[float, float, float, float]:
    """Metric of model a minus model b on the same rows, by resampling rows (or patients) jointly (stratified).

    Args:
        y_true: shape (n,), 0/1 labels.
        pred_a, pred_b: shape (n,) each, finite scores of models a and b for the same rows.
        metric: one of :data:`METRICS` (ValueError otherwise).
        threshold: prediction is ``score >= threshold`` for both models.
        n_resamples: B >= 1000. seed: seed of the resampling. confidence: two-sided level.
        clusters: optional (n,) patient ids: patients are resampled.

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
    boot_a, boot_b = _resampled(y, a, t, b, np.random.default_rng(seed), True, (metric,), (b_scores,),
                                clusters=clusters)
    d = boot_a[metric] - boot_b[metric]
    return (diff, *percentile_interval(d, c), _bootstrap_p(d))


