"""CheXGenBench's prompt-matched re-identification design: each synthetic image made from a *training* row against
its own source (the source image, or the source patient's training images), with a null drawn within the synthetic
set (the same image against another training patient with the same labels), a threshold at a false-match rate on
single real different-patient pairs, and the paired test of matched against null (see :mod:`benchmark.privacy.reid`
for the re-id model and the design's overview).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.stats import percentile_interval
from benchmark.privacy.reid import (
    CONFIDENCE,
    DEFAULT_FMR,
    N_PERMUTATIONS,
    TEST_METHOD,
    SiameseReID,
    fmr_threshold,
    mean_interval,
    pair_probabilities,
    paired_cluster_test,
    paired_share_difference,
    share_above,
    threshold_bootstrap,
)

CALIBRATION_PAIRS = 5000
SOURCE_IMAGE = "source image"
SOURCE_PATIENT = "source patient"


def label_strata(labels: np.ndarray) -> np.ndarray:
    """One stratum key per row of a label matrix ``(N, C)`` (1 / 0 / NaN): the labels as text, e.g. ``"1,0,"``."""
    lab = np.asarray(labels, dtype=np.float64)
    text = np.where(np.isnan(lab), "", np.where(lab > 0.5, "1", "0"))
    return np.array([",".join(r) for r in text], dtype=object) if lab.ndim == 2 and lab.shape[1] else \
        np.full(len(lab), "", dtype=object)


def draw_references(source_train: np.ndarray, source_patients: Sequence[str], train_patients: Sequence[Any],
                    synthetic_strata: Sequence[str], train_strata: Sequence[str], *, seed: int = 0) -> pd.DataFrame:
    """What each synthetic image of the prompt-matched design is compared with, and its null.

    Args:
        source_train: ``(N,)`` the training position (index into ``train_patients``) of each synthetic image's
            source row, -1 where it has none. source_patients: ``(N,)`` its source patient ("" where unknown).
        train_patients: ``(R,)``. synthetic_strata ``(N,)`` / train_strata ``(R,)``: label keys
            (:func:`label_strata`) of the synthetic images (their prompt's labels) and of the training images.

    An image with a source row is compared with that image (``reference`` "source image"), one with only a source
    patient with all of that patient's training images (maximum over them, "source patient"). The null: for each
    source patient (and label stratum and reference kind) one other training patient Q is drawn, among those with
    an image of the same labels (and, for "source patient", at least as many images); each source row gets one of
    Q's images of those labels (every image made from that row is compared with it), a "source patient" image as
    many of Q's images as the source patient has. Where no such patient exists the labels, then the image count,
    are let go (``null_match``). Images without a training source are left out.

    Returns:
        One row per synthetic image in the design, indexed by its position: ``source_patient``, ``reference``,
        ``matched_refs`` and ``null_refs`` (int arrays of training positions), ``null_patient``, ``null_match``.
    """
    rng = np.random.default_rng([seed, 23])
    train_ids = np.asarray(train_patients).astype(str)
    t_strata = np.asarray(train_strata).astype(str)
    patients, codes = np.unique(train_ids, return_inverse=True)
    members = [np.flatnonzero(codes == k) for k in range(len(patients))]
    counts = np.array([len(m) for m in members])
    in_stratum = {s: np.unique(codes[t_strata == s]) for s in np.unique(t_strata)}
    src = np.asarray(source_train, dtype=np.int64)
    src_patients = np.asarray(source_patients).astype(str)
    syn_strata = np.asarray(synthetic_strata).astype(str)
    design = np.flatnonzero((src_patients != "") & np.isin(src_patients, patients))
    kinds = np.where(src[design] >= 0, SOURCE_IMAGE, SOURCE_PATIENT)
    units = pd.DataFrame({"i": design, "patient": src_patients[design], "stratum": syn_strata[design], "kind": kinds,
                          "row": src[design]})
    records: dict[int, dict[str, Any]] = {}
    for (patient, stratum, kind), unit in units.groupby(["patient", "stratum", "kind"], sort=True):
        own = int(np.searchsorted(patients, patient))
        k = 1 if kind == SOURCE_IMAGE else int(counts[own])
        null, match = _draw_other(own, k, in_stratum.get(stratum, np.zeros(0, np.int64)), counts, rng)
        if null < 0:
            continue  # one training patient only: no null exists
        pool = members[null]
        if kind == SOURCE_IMAGE:
            labelled = pool[t_strata[pool] == stratum] if match == "same labels" else pool
            for row, images in unit.groupby("row", sort=True):
                null_ref = np.array([rng.choice(labelled)], dtype=np.int64)
                for i in images["i"]:
                    records[int(i)] = {"matched_refs": np.array([row], dtype=np.int64), "null_refs": null_ref}
        else:
            for i in unit["i"]:
                records[int(i)] = {"matched_refs": members[own],
                                   "null_refs": np.sort(rng.choice(pool, size=min(k, len(pool)), replace=False))}
        for i in unit["i"]:
            records[int(i)].update({"source_patient": patient, "reference": kind, "null_patient": patients[null],
                                    "null_match": match})
    frame = pd.DataFrame.from_dict(records, orient="index")
    if frame.empty:
        frame = pd.DataFrame(columns=["source_patient", "reference", "matched_refs", "null_refs", "null_patient",
                                      "null_match"])
    return frame.sort_index()[["source_patient", "reference", "matched_refs", "null_refs", "null_patient",
                               "null_match"]]


def _draw_other(own: int, k: int, same_labels: np.ndarray, counts: np.ndarray,
                rng: np.random.Generator) -> tuple[int, str]:
    """A random patient code other than ``own`` with at least ``k`` images, among ``same_labels`` first."""
    everyone = np.arange(len(counts))
    for match, pool in (("same labels", same_labels), ("any labels", everyone)):
        candidates = pool[(pool != own) & (counts[pool] >= k)]
        if candidates.size:
            return int(rng.choice(candidates)), match
    others = everyone[everyone != own]
    return (int(rng.choice(others)), "fewer images") if others.size else (-1, "none")


def calibration_pairs(query_patients: Sequence[Any], ref_patients: Sequence[Any], *,
                      n_pairs: int = CALIBRATION_PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs ``(i, j)`` of a query image and a reference image of *different* patients, about ``n_pairs``
    (each query image the same number of times, at least once). Returns index arrays into the two sets."""
    q, r = np.asarray(query_patients).astype(str), np.asarray(ref_patients).astype(str)
    if q.size == 0 or r.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, 29])
    i = np.repeat(np.arange(q.size), max(1, math.ceil(n_pairs / q.size)))
    j = rng.integers(0, r.size, size=i.size)
    for _ in range(20):  # redraw the references that happen to be the query's own patient
        same = q[i] == r[j]
        if not same.any():
            break
        j[same] = rng.integers(0, r.size, size=int(same.sum()))
    keep = q[i] != r[j]
    return i[keep], j[keep]


@dataclass(frozen=True)
class MatchedResult:
    """The prompt-matched design: ``frame`` (:func:`draw_references`' rows plus ``n_reference``,
    ``matched_score``, ``null_score``), the threshold at ``fmr`` on single real different-patient pairs with the
    calibration scores ``(m,)`` and patients ``(m,)``, and how many synthetic images had no training source."""

    frame: pd.DataFrame
    threshold: float
    calibration_scores: np.ndarray
    calibration_patients: np.ndarray
    fmr: float
    n_excluded: int
    notes: tuple[str, ...] = ()


def _max_scores(model: SiameseReID, synthetic: np.ndarray, train: np.ndarray, positions: np.ndarray,
                refs: Sequence[np.ndarray]) -> np.ndarray:
    lengths = np.array([len(r) for r in refs], dtype=np.int64)
    if lengths.size == 0:
        return np.zeros(0)
    prob = pair_probabilities(model, synthetic[np.repeat(positions, lengths)], train[np.concatenate(refs)])
    return np.maximum.reduceat(prob, np.r_[0, np.cumsum(lengths)[:-1]])


def matched_design(model: SiameseReID, synthetic: np.ndarray, train: np.ndarray, train_patients: Sequence[Any],
                   references: pd.DataFrame, val: np.ndarray, val_patients: Sequence[Any], *,
                   fmr: float = DEFAULT_FMR, seed: int = 0) -> MatchedResult:
    """Scores of the prompt-matched design from embeddings (``synthetic`` ``(N, F)``, ``train`` ``(R, F)``, ``val``
    ``(V, F)``) and :func:`draw_references`' rows: each image's maximum same-patient probability over its matched
    references and over its null references. The threshold is :func:`fmr_threshold` of :func:`calibration_pairs`
    of val images with training images (single pairs of different patients; training images with other training
    patients when there are no val images, noted). For "source patient" images the maximum over k references is
    compared with the same threshold, so their false-match rate is up to k times ``fmr``: the null, drawn with the
    same k, carries the same rate, and the test compares with the null."""
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"fmr must be in (0, 1), got {fmr}")
    notes: list[str] = []
    train_ids = np.asarray(train_patients).astype(str)
    if len(val):
        val_ids = np.asarray(val_patients).astype(str)
        i, j = calibration_pairs(val_ids, train_ids, seed=seed)
        calib, calib_patients = pair_probabilities(model, val[i], train[j]), val_ids[i]
    else:
        notes.append("matched design: no val images, threshold calibrated on training pairs of different patients")
        i, j = calibration_pairs(train_ids, train_ids, seed=seed)
        calib, calib_patients = pair_probabilities(model, train[i], train[j]), train_ids[i]
    if calib.size == 0:
        raise ValueError("no calibration pairs of different patients")
    threshold = fmr_threshold(calib, fmr)
    frame = references.copy()
    positions = frame.index.to_numpy(dtype=np.int64)
    frame["n_reference"] = [len(r) for r in frame["matched_refs"]]
    frame["matched_score"] = _max_scores(model, synthetic, train, positions, list(frame["matched_refs"]))
    frame["null_score"] = _max_scores(model, synthetic, train, positions, list(frame["null_refs"]))
    if (frame["null_match"] != "same labels").any():
        counts = frame["null_match"].value_counts()
        notes.append("matched design: null patient without the same labels for "
                     + ", ".join(f"{int(counts.get(m, 0))} images ({m})" for m in ("any labels", "fewer images")
                                 if counts.get(m, 0)))
    return MatchedResult(frame, threshold, calib, calib_patients, fmr, len(synthetic) - len(frame), tuple(notes))


def matched_summary(result: MatchedResult, mask: np.ndarray | None = None, *, thresholds: np.ndarray | None = None,
                    n_resamples: int = 1000, seed: int = 0, n_permutations: int = N_PERMUTATIONS) -> dict[str, Any]:
    """Result-row columns (``matched_*``) of the prompt-matched design over the design's rows selected by ``mask``
    (default all): CheXGenBench's mean and max re-id score and count above the threshold; the matched and null
    shares above it with :func:`share_above` intervals; their paired difference (:func:`paired_share_difference`)
    and the one-sided :func:`paired_cluster_test` on the above/below pairs and on the scores, clustered by source
    patient. ``thresholds``: :func:`threshold_bootstrap` of the calibration (computed when not given)."""
    if thresholds is None:
        thresholds = threshold_bootstrap(result.calibration_scores, result.calibration_patients, result.fmr,
                                         n_resamples=n_resamples, seed=seed)
    f = result.frame if mask is None else result.frame[np.asarray(mask, bool)]
    row: dict[str, Any] = {"matched_n_synthetic": len(f)}
    if len(f) == 0:
        return row
    m, n = f["matched_score"].to_numpy(float), f["null_score"].to_numpy(float)
    clusters = f["source_patient"].astype(str).to_numpy()
    kinds = f["reference"].value_counts()
    reference = (kinds.index[0] if len(kinds) == 1 else
                 "mixed: " + ", ".join(f"{int(c)} {k}" for k, c in kinds.items()))
    if SOURCE_PATIENT in kinds.index:
        reference += " (max over their training images)"
    t, (t_low, t_high) = result.threshold, percentile_interval(thresholds, CONFIDENCE)
    mean, low, high = mean_interval(m, clusters, n_resamples=n_resamples, seed=seed)
    null_mean, null_low, null_high = mean_interval(n, clusters, n_resamples=n_resamples, seed=seed)
    row.update({"matched_reference": reference, "matched_n_source_patients": len(set(clusters)),
                "matched_reid_threshold": t, "matched_reid_threshold_ci_low": t_low,
                "matched_reid_threshold_ci_high": t_high, "matched_n_calibration_pairs": len(result.calibration_scores),
                "matched_n_calibration_patients": len(set(result.calibration_patients.tolist())),
                "matched_reid_mean": mean, "matched_reid_mean_ci_low": low, "matched_reid_mean_ci_high": high,
                "matched_reid_max": float(m.max()), "matched_reid_count_above": int((m > t).sum()),
                "matched_reid_count_above_half": int((m > 0.5).sum()),
                "matched_null_reid_mean": null_mean, "matched_null_reid_mean_ci_low": null_low,
                "matched_null_reid_mean_ci_high": null_high, "matched_null_reid_max": float(n.max()),
                "matched_null_reid_count_above": int((n > t).sum())})
    units = "source patients"
    for prefix, scores in (("matched_reid", m), ("matched_null_reid", n)):
        share = share_above(scores, t, thresholds, clusters, seed=seed, units=units)
        row.update({f"{prefix}_share_above": share["share"], f"{prefix}_share_above_ci_low": share["ci_low"],
                    f"{prefix}_share_above_ci_high": share["ci_high"],
                    f"{prefix}_share_above_ci_method": share["ci_method"]})
    diff = paired_share_difference(m, n, t, thresholds, clusters, seed=seed)
    row.update({"matched_share_difference": diff["difference"], "matched_share_difference_ci_low": diff["ci_low"],
                "matched_share_difference_ci_high": diff["ci_high"],
                "matched_share_difference_ci_method": diff["ci_method"],
                "matched_p_value": paired_cluster_test(m > t, n > t, clusters, n_resamples=n_permutations, seed=seed),
                "matched_score_p_value": paired_cluster_test(m, n, clusters, n_resamples=n_permutations, seed=seed),
                "matched_test": TEST_METHOD.format(n=n_permutations),
                "matched_null": ("the same synthetic image against another training patient drawn per source patient "
                                 "among those with the same labels (" + ", ".join(
                                     f"{int(c)} {k}" for k, c in f["null_match"].value_counts().items()) + ")")})
    return row
