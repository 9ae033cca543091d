"""Argument checks shared by every statistics module: labels, scores, thresholds, levels, resample counts."""

from __future__ import annotations

import math

import numpy as np

MIN_RESAMPLES = 1000
METRICS: tuple[str, ...] = ("auroc", "accuracy", "precision", "recall", "specificity", "f1")


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


