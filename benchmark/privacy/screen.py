"""The nearest-neighbour re-identification screen: every synthetic image's nearest real *training* image in the re-id
embedding space and that pair's same-patient probability, against a threshold at a false-match rate calibrated on
held-out patients, with held-out real images scored the same way as the chance level (see
:mod:`benchmark.privacy.reid` for the model and the design's overview).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.core.stats import percentile_interval, wilson_interval
from benchmark.privacy.reid import (
    CONFIDENCE,
    DEFAULT_FMR,
    SiameseReID,
    Verification,
    best_matches,
    fmr_threshold,
    mean_interval,
    share_above,
    threshold_bootstrap,
    verify,
)


@dataclass(frozen=True)
class ReidResult:
    """The screen. Per synthetic image (``frame``: ``reid_nn`` training index, ``reid_score``, ``reid_above``), the
    same for held-out real images (``real_frame``, the chance level), the calibration scores ``(m,)`` with their
    patients ``(m,)``, and the verification."""

    frame: pd.DataFrame
    real_frame: pd.DataFrame
    threshold: float
    calibration_scores: np.ndarray
    verification: Verification | None
    fmr: float
    n_train: int
    notes: tuple[str, ...] = ()
    n_calibration_patients: int = 0
    calibration_patients: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))


def reid_check(model: SiameseReID, synthetic: np.ndarray, train: np.ndarray, train_patients: Sequence[Any],
               val: np.ndarray, val_patients: Sequence[Any], real: np.ndarray, *, fmr: float = DEFAULT_FMR,
               seed: int = 0, device: str | torch.device | None = "auto",
               real_patients: Sequence[Any] | None = None) -> ReidResult:
    """The screen: re-identification of every synthetic embedding (``(N, F)``) against the training embeddings.

    The threshold is :func:`fmr_threshold` of the val images' best training-match probability (real pairs of
    different patients: splits are by patient); when there are no val images, training images against training
    images of other patients are used instead (noted). ``real``: held-out test embeddings (chance level), of
    ``real_patients`` when given (kept in ``real_frame["patient"]``, so their intervals resample patients).
    When the calibration images are fewer than ``1 / fmr`` the threshold is their maximum and the nominal rate
    cannot be resolved; a note says so, and the chance level is what the share must be read against.
    """
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"fmr must be in (0, 1), got {fmr}")
    notes: list[str] = []
    if len(val):
        calib, _ = best_matches(model, val, train, device=device)
        calib_patients = np.asarray(val_patients).astype(str)
    else:
        notes.append("no val images: threshold calibrated on training images against other training patients")
        calib, _ = best_matches(model, train, train, device=device, query_groups=train_patients,
                                ref_groups=train_patients)
        keep = np.isfinite(calib)
        calib, calib_patients = calib[keep], np.asarray(train_patients).astype(str)[keep]
    threshold = fmr_threshold(calib, fmr)
    if len(calib) * fmr < 1.0:
        notes.append(f"only {len(calib)} calibration images for a false-match rate of {fmr:g} (needs >= "
                     f"{math.ceil(1 / fmr)}): the threshold is about their maximum; read the share against the "
                     "held-out real chance level, not against the nominal rate")
    verification = None
    try:
        verification = verify(model, val, val_patients, fmr=fmr, seed=seed) if len(val) else None
    except ValueError:
        notes.append("verification AUROC not computed: no val patient has two images")

    def frame(emb: np.ndarray) -> pd.DataFrame:
        prob, idx = best_matches(model, emb, train, device=device)
        return pd.DataFrame({"reid_nn": idx, "reid_score": prob, "reid_above": prob > threshold})

    real_frame = frame(real)
    if real_patients is not None:
        if len(real_patients) != len(real):
            raise ValueError(f"{len(real_patients)} real patients for {len(real)} real embeddings")
        real_frame["patient"] = list(real_patients)
    return ReidResult(frame(synthetic), real_frame, threshold, calib, verification, fmr, len(train), tuple(notes),
                      len(set(calib_patients.tolist())), calib_patients)


def summary_row(result: ReidResult, mask: np.ndarray | None = None, real_mask: np.ndarray | None = None, *,
                thresholds: np.ndarray | None = None, synthetic_clusters: Sequence[Any] | np.ndarray | None = None,
                synthetic_units: str = "synthetic images", n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The screen's result-row columns over the synthetic rows selected by ``mask`` (default all) and held-out real
    rows by ``real_mask``: mean re-id score with a bootstrap 95% CI (over ``synthetic_clusters`` ``(N,)`` when
    given, e.g. source patients, else images; over patients for real images whose ``real_frame`` has a
    ``patient`` column), the maximum (no interval), the count and share above the threshold with the interval of
    :func:`share_above` (``thresholds``: :func:`threshold_bootstrap` of the calibration, computed when not
    given); the threshold with its bootstrap interval; the re-id model's true-match rate on val pairs (Wilson)."""
    if thresholds is None:
        thresholds = threshold_bootstrap(result.calibration_scores, result.calibration_patients, result.fmr,
                                         n_resamples=n_resamples, seed=seed)
    sel = np.ones(len(result.frame), bool) if mask is None else np.asarray(mask, bool)
    syn = result.frame[sel]
    real = result.real_frame if real_mask is None else result.real_frame[np.asarray(real_mask, bool)]
    t_low, t_high = percentile_interval(thresholds, CONFIDENCE)
    row: dict[str, Any] = {"reid_threshold": result.threshold, "reid_threshold_ci_low": t_low,
                           "reid_threshold_ci_high": t_high, "reid_fmr": result.fmr,
                           "reid_n_calibration": len(result.calibration_scores), "reid_n_train": result.n_train,
                           "reid_n_synthetic": len(syn), "reid_n_real": len(real),
                           "reid_n_calibration_patients": result.n_calibration_patients}
    syn_clusters = None if synthetic_clusters is None else np.asarray(synthetic_clusters).astype(str)[sel]
    real_clusters = real["patient"].astype(str).to_numpy() if "patient" in real else None
    for prefix, frame, clusters, units in (("reid", syn, syn_clusters, synthetic_units),
                                           ("real_reid", real, real_clusters,
                                            "patients" if real_clusters is not None else "images")):
        scores = frame["reid_score"].to_numpy(float)
        mean, low, high = mean_interval(scores, clusters, n_resamples=n_resamples, seed=seed)
        row.update({f"{prefix}_mean": mean, f"{prefix}_mean_ci_low": low, f"{prefix}_mean_ci_high": high,
                    f"{prefix}_max": float(scores.max()) if scores.size else math.nan})
        share = share_above(scores, result.threshold, thresholds, clusters, seed=seed, units=units)
        row.update({f"{prefix}_count_above": share["count"], f"{prefix}_share_above": share["share"],
                    f"{prefix}_share_above_ci_low": share["ci_low"], f"{prefix}_share_above_ci_high": share["ci_high"],
                    f"{prefix}_share_above_ci_method": share["ci_method"]})
    v = result.verification
    if v is not None:
        tmr_low, tmr_high = wilson_interval(round(v.tmr_at_fmr * v.n_positive), v.n_positive)
        row.update({"reid_val_auroc": v.auroc, "reid_val_auroc_ci_low": v.auroc_ci_low,
                    "reid_val_auroc_ci_high": v.auroc_ci_high, "reid_pair_threshold": v.pair_threshold,
                    "reid_val_tmr_at_fmr": v.tmr_at_fmr, "reid_val_tmr_at_fmr_ci_low": tmr_low,
                    "reid_val_tmr_at_fmr_ci_high": tmr_high, "reid_val_n_positive": v.n_positive,
                    "reid_val_n_negative": v.n_negative})
    return row

