"""FRD, the Fréchet radiomics distance (Osuala et al.), through the ``frd-score`` and ``pyradiomics`` packages.

Per image, ``frd-score``'s v1 radiomics vector (its own extraction: pyradiomics first-order, GLCM, GLRLM, GLSZM and
NGTDM features of the original, LoG and wavelet images, its bundled 2-D settings and whole-image mask) is extracted
once, from the image file as ``frd-score`` reads it. The distance is then ``frd-score``'s v1 statistic on those
vectors, through its own functions: images with a NaN feature dropped (counted), z-scores against the *real* set's
mean and standard deviation (its default reference ``d1``), columns with NaN / Inf dropped, the Fréchet distance of
the two Gaussians, and ``log(d²)`` (its default; the paper's ``log(d)`` is half of it). On the same files the value
equals ``frd_score.compute_frd([real, synthetic])``.

Interval: the delete-a-group jackknife over whole patients on both sides (the groups of
:func:`benchmark.fidelity.distances.jackknife_groups`), the whole statistic (normalisation included) recomputed
without each group, FRD ± t_{G-1} SE. As FID's, it covers the expected FRD at these sample sizes, not a population
value (the statistic is biased by the finite N); the suite's simulation shows its coverage.

Tensor contract: :func:`radiomics_features` gives ``(N, F)`` float64 raw features of N image files (an image the
extractor cannot read stops naming it); :func:`frd_value` and :func:`frd_jackknife` take two such arrays.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import DataError
from benchmark.fidelity.distances import _t_quantile, jackknife_groups, jackknife_se

FRD_VERSION = "v1"


def _frd_module() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from frd_score import frd
    except ImportError as exc:
        raise DataError(f"FRD needs the frd-score and pyradiomics packages ({exc}); they are in the project's "
                        "lock for Python 3.11 (./scripts/setup.sh)") from exc
    frd._ensure_radiomics()
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    frd.setVerbosity(60)
    return frd


def radiomics_features(paths: Sequence[str | Path], *,
                       progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[str]]:
    """Raw v1 radiomics features ``(N, F)`` float64 of the image files and the feature names, in file order.

    An image the extractor cannot read or measure stops with :class:`DataError` naming it (never dropped)."""
    frd = _frd_module()
    extractor = frd.get_feature_extractor(frd_version=FRD_VERSION, image_dim=2)
    rows: list[list[float]] = []
    names: list[str] = []
    for path in paths:
        try:
            result = frd.process_image_mask_pair((str(path), None), feature_extractor=extractor,
                                                 frd_version=FRD_VERSION)
        except Exception as exc:  # SimpleITK and pyradiomics raise RuntimeError, ValueError, ...
            raise DataError(f"{path}: radiomics features cannot be extracted ({type(exc).__name__}: {exc})") from exc
        if result is None:
            raise DataError(f"{path}: radiomics features cannot be extracted (the image has one pixel or none)")
        values, named, _ = result
        if names and list(named) != names:
            raise DataError(f"{path}: its radiomics features differ in kind from the first image's (mixed 2-D/3-D "
                            "or colour images?)")
        names = names or list(named)
        rows.append([float(v) for v in values])
        if progress is not None:
            progress(1)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names)), names


def frd_value(real: np.ndarray, synthetic: np.ndarray) -> float:
    """``frd-score``'s v1 FRD of raw feature arrays ``(N, F)`` and ``(M, F)`` without NaN rows: z-scores against the
    real set, NaN / Inf columns dropped, ``log`` of the squared Fréchet distance (``-inf`` at 0)."""
    frd = _frd_module()
    sets = [np.asarray(real, np.float64).astype(np.float32), np.asarray(synthetic, np.float64).astype(np.float32)]
    low, high = frd.V1_DEFAULT_NORM_RANGE
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        normed = [frd.z_score_normalize(features=f, new_min=low, new_max=high, base_distribution=sets[0],
                                        replace_nan=False, handle_std_zero=False) for f in sets]
    keep = ~np.any([np.isnan(f).any(axis=0) | np.isinf(f).any(axis=0) for f in normed], axis=0)
    normed = [f[:, keep] for f in normed]
    d2 = frd.calculate_frechet_distance(normed[0].mean(axis=0), np.cov(normed[0], rowvar=False),
                                        normed[1].mean(axis=0), np.cov(normed[1], rowvar=False))
    return float(np.log(d2)) if d2 > 0 else -math.inf


@dataclass(frozen=True)
class FRDResult:
    """FRD with its jackknife interval; ``n_real`` / ``n_synthetic``: the images it used (NaN rows left out)."""

    frd: float
    ci_low: float
    ci_high: float
    n_real: int
    n_synthetic: int
    groups: int
    notes: tuple[str, ...]

    def row(self, prefix: str = "frd") -> dict[str, Any]:
        return {prefix: self.frd, f"{prefix}_ci_low": self.ci_low, f"{prefix}_ci_high": self.ci_high,
                f"{prefix}_n_real": self.n_real, f"{prefix}_n_synthetic": self.n_synthetic,
                f"{prefix}_jackknife_groups": self.groups}


def frd_jackknife(real: np.ndarray, synthetic: np.ndarray, *, real_clusters: Sequence[Any] | None = None,
                  synthetic_clusters: Sequence[Any] | None = None, n_groups: int = 20, seed: int = 0,
                  confidence: float = 0.95) -> FRDResult:
    """FRD (:func:`frd_value`) of raw features ``(N, F)`` / ``(M, F)`` with a delete-a-group jackknife interval over
    whole clusters (patients) of both sides. Rows with a NaN feature are left out first and counted in the notes;
    fewer than 5 clusters on a side: no interval."""
    real, synthetic = np.asarray(real, np.float64), np.asarray(synthetic, np.float64)
    notes: list[str] = []
    keep_r, keep_s = ~np.isnan(real).any(axis=1), ~np.isnan(synthetic).any(axis=1)
    for side, keep in (("real", keep_r), ("synthetic", keep_s)):
        if not keep.all():
            notes.append(f"FRD: {int((~keep).sum())} {side} image(s) with a NaN radiomics feature left out "
                         "(as frd-score does)")
    rc = None if real_clusters is None else np.asarray(real_clusters, dtype=object)[keep_r]
    sc = None if synthetic_clusters is None else np.asarray(synthetic_clusters, dtype=object)[keep_s]
    real, synthetic = real[keep_r], synthetic[keep_s]
    if min(len(real), len(synthetic)) < 2:
        raise DataError(f"FRD needs two or more images a side; it has {len(real)} real and {len(synthetic)} "
                        "synthetic")
    value = frd_value(real, synthetic)
    groups = jackknife_groups(len(real), len(synthetic), rc, sc, n_groups, seed)
    if groups is None:
        notes.append("no FRD interval: fewer than 5 patients on a side")
        return FRDResult(value, math.nan, math.nan, len(real), len(synthetic), 0, tuple(notes))
    gr, gs = groups
    g = int(max(gr.max(), gs.max())) + 1
    leave_out = np.array([frd_value(real[gr != k], synthetic[gs != k]) for k in range(g)])
    se = jackknife_se(leave_out)
    half = _t_quantile(confidence, g - 1) * se
    if math.isnan(se):
        notes.append("no FRD interval: a leave-one-group-out FRD is not finite")
    return FRDResult(value, value - half, value + half, len(real), len(synthetic), g, tuple(notes))
