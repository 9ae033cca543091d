"""The result rows of a sweep (:func:`evaluate_units`) from its units' predictions on the real test split.

Per seed and class: AUROC (Newcombe interval widened by the patients' design effect), ``sens_at_spec`` (sensitivity
at specificity 0.9, the primary threshold metric) and accuracy, precision, recall, specificity, F1 at the model's
threshold (Youden's J on real val by default), with intervals from a joint bootstrap of val and test *patients* that
chooses the threshold again on every val resample; prevalence beside them. Per setting and class (``seed = mean``):
the mean over seeds with an interval that adds the seed-to-seed spread to the test-set sampling of the seed mean
(:func:`benchmark.core.stats.seed_mean_interval`). Every setting is compared with the ``real`` baseline on the same test
images by the same two variance parts (:func:`benchmark.core.stats.seed_mean_difference`), Holm-adjusted per metric over
settings x classes; with fewer than 3 seeds per side no test is made. Per-seed differences are descriptive.
Compared rows carry the AUROC difference detectable at 80% power and an ``underpowered`` flag. Each row records the
unit's training positives of its class (real and synthetic).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from benchmark.core.progress import track
from benchmark.core.stats import (
    MIN_SEEDS_FOR_SPREAD,
    auroc_ci,
    cluster_bootstrap_weights,
    cluster_codes,
    clustered_proportion_ci,
    delong_contrast,
    delong_roc_test,
    detectable_difference,
    holm_adjust,
    joint_chunk,
    metrics_at_thresholds,
    percentile_interval,
    seed_mean_difference,
    seed_mean_interval,
    sensitivity_at_specificity,
    smoothed_youden_thresholds,
    youden_threshold,
)
from benchmark.utility.retrained.config import (
    COMPARED,
    DETECTABLE_LIMIT,
    RESAMPLED,
    ROW_METRICS,
    SPEC_TARGET,
    THRESHOLD_METRICS,
)

# ---------------------------------------------------------------------------------------------- statistics core


@dataclass
class UnitPredictions:
    """One unit's scores: ``scores`` float64 ``(N_test, C)`` on the real test split, ``thresholds`` ``(C,)``,
    ``val_scores`` ``(N_val, C)`` on the real val split (None: the thresholds are taken as fixed), the
    ``threshold_policy`` that chose them, ``train_positives`` ``(2, C)`` (real, synthetic training images positive for
    each class; None: unknown) and ``info``, extra columns for its rows (best epoch, validation AUROC, ...)."""

    setting: str
    setting_spec: str
    n_real: int
    n_synthetic: int
    seed: int
    scores: np.ndarray
    thresholds: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    val_scores: np.ndarray | None = None
    threshold_policy: str = "val-youden"
    train_positives: np.ndarray | None = None


@dataclass
class _ClassData:
    """One class's known test labels ``y`` (n,) with patient codes ``ids`` (n,), and the known val labels ``yv``
    (n_val,) with theirs (``yv`` None when the val split cannot choose a threshold: a label absent)."""

    known: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    val_known: np.ndarray | None
    yv: np.ndarray | None
    val_ids: np.ndarray | None


def _class_data(labels: np.ndarray, test_ids: np.ndarray, val_labels: np.ndarray | None,
                val_ids: np.ndarray | None, j: int) -> _ClassData:
    known = ~np.isnan(labels[:, j])
    y = labels[known, j].astype(np.int8)
    ids = cluster_codes(test_ids[known], int(known.sum()))
    if val_labels is None:
        return _ClassData(known, y, ids, None, None, None)
    val_known = ~np.isnan(val_labels[:, j])
    yv = val_labels[val_known, j].astype(np.int8)
    if not 0 < yv.sum() < yv.size:
        return _ClassData(known, y, ids, None, None, None)
    return _ClassData(known, y, ids, val_known, yv, cluster_codes(val_ids[val_known], yv.size))


@dataclass
class _Evaluated:
    """One unit on one class: its test (``s``) and val (``sv``, None for a fixed threshold) scores, threshold
    ``t``, point figures and their resampled values ``reps`` (metric -> (B,), the same resamples for every unit)."""

    unit: UnitPredictions
    s: np.ndarray
    sv: np.ndarray | None
    t: float
    point: dict[str, float] = field(default_factory=dict)
    reps: dict[str, np.ndarray] = field(default_factory=dict)


def _resample_units(data: _ClassData, evaluated: Sequence[_Evaluated], n_resamples: int, seed: int,
                    spec_target: float, salt: int) -> None:
    """Fill each unit's ``reps``: its threshold metrics and ``sens_at_spec`` on B joint patient bootstrap resamples.

    Every resample draws the test patients with replacement (stratified: patients with and without a positive) and,
    where a unit's threshold came from the val split (Youden's J), the val patients too; the threshold is chosen
    again on the resampled val patients, so the spread includes that choice. That choice is an argmax over few
    positives, which a plain bootstrap cannot vary enough (a resample's lowest positive is never below the sample's:
    in simulation the specificity interval covered as little as 0.66), so the val scores are smoothed (Gaussian kernel,
    Silverman's bandwidth per label; Silverman & Young 1987): 0.91-1.0 for specificity and 0.97-1.0 for recall over
    the simulated designs (6-20 val positives, AUROC 0.71-0.98; the test's design in its comment). All units
    share the resamples and the smoothing draws (paired comparisons, seed means). Drawn in chunks of at most ~2M
    weights; the chunking depends only on the sizes.
    """
    y, n = data.y, data.y.size
    if n == 0:
        return
    use_val = data.yv is not None and any(e.sv is not None for e in evaluated)
    rng_test, rng_val, rng_smooth = (np.random.default_rng(s) for s in
                                     np.random.SeedSequence([seed, salt]).spawn(3))
    chunk = min(n_resamples, joint_chunk(n, data.yv.size if use_val else 1))
    parts: list[dict[str, list[np.ndarray]]] = [{m: [] for m in RESAMPLED} for _ in evaluated]
    done = 0
    while done < n_resamples:
        c = min(chunk, n_resamples - done)
        wt = np.concatenate(list(cluster_bootstrap_weights(y, data.ids, c, rng_test)))
        if use_val:
            wv = np.concatenate(list(cluster_bootstrap_weights(data.yv, data.val_ids, c, rng_val)))
            noise = rng_smooth.standard_normal(wv.shape)
        for e, part in zip(evaluated, parts, strict=True):
            thresholds = (smoothed_youden_thresholds(data.yv, e.sv, wv, noise) if use_val and e.sv is not None
                          else np.full(c, e.t))
            for m, values in metrics_at_thresholds(y, e.s, thresholds, wt, THRESHOLD_METRICS).items():
                part[m].append(values)
            part["sens_at_spec"].append(sensitivity_at_specificity(y, e.s, spec_target, wt))
        done += c
    for e, part in zip(evaluated, parts, strict=True):
        e.reps = {m: np.concatenate(v) for m, v in part.items()}


def _undefined_reasons(point: dict[str, float], n_pos: int, n_neg: int) -> str:
    """Why each undefined (NaN) metric is undefined, e.g. ``precision: nothing predicted positive``."""
    if n_pos + n_neg == 0:
        return "; ".join(f"{m}: no test image with a known label" for m in ROW_METRICS)
    one_class = "no positive test image" if n_pos == 0 else "no negative test image"
    why = {"auroc": one_class, "sens_at_spec": one_class, "recall": "no positive test image",
           "specificity": "no negative test image", "f1": "no positive test image", "accuracy": "",
           "precision": "no positive test image" if n_pos == 0 else "nothing predicted positive"}
    return "; ".join(f"{m}: {why[m]}" for m in ROW_METRICS if math.isnan(point.get(m, math.nan)))


def _point(data: _ClassData, e: _Evaluated, spec_target: float) -> None:
    """Point figures of a unit on the full test split: AUROC (Newcombe interval, patient design effect),
    sens_at_spec, and the threshold metrics at its threshold. Without a positive test image, precision and F1 are
    undefined (NaN), not 0."""
    y, s = data.y, e.s
    n_pos = int(y.sum())
    if y.size == 0:
        e.point = dict.fromkeys(ROW_METRICS, math.nan)
        return
    # the resamples' function on the full sample (one weight per image): the same definitions, no sklearn overhead
    point = {m: float(v[0]) for m, v in metrics_at_thresholds(y, s, np.array([e.t]), np.ones((1, y.size)),
                                                             THRESHOLD_METRICS).items()}
    if n_pos == 0:
        point["precision"] = point["f1"] = math.nan
    point["auroc"], point["auroc_ci_low"], point["auroc_ci_high"] = auroc_ci(y, s, clusters=data.ids)
    point["sens_at_spec"] = (float(sensitivity_at_specificity(y, s, spec_target)) if 0 < n_pos < y.size
                             else math.nan)
    e.point = point


def _seed_intervals(data: _ClassData, e: _Evaluated, confidence: float) -> dict[str, tuple[float, float]]:
    """(ci_low, ci_high) of each metric of one unit but AUROC.

    Threshold chosen on val: the percentile interval of the joint val + test patient bootstrap (threshold re-chosen
    on every resample); for the proportions (recall, specificity, accuracy, precision) widened to include the
    clustered Wilson interval at the chosen threshold, so it is never a single point at 0 or 1. Fixed threshold:
    the clustered Wilson interval for the proportions, the patient bootstrap for F1. sens_at_spec: the patient
    bootstrap (its threshold re-chosen on each resample of the test images).
    """
    y, pred = data.y, e.s >= e.t
    out: dict[str, tuple[float, float]] = {}
    groups = {"recall": y == 1, "specificity": y == 0, "accuracy": np.ones(y.size, bool), "precision": pred}
    hits = {"recall": pred, "specificity": ~pred, "accuracy": pred == (y == 1), "precision": y == 1}
    for m in (*THRESHOLD_METRICS, "sens_at_spec"):
        if math.isnan(e.point[m]):
            out[m] = (math.nan, math.nan)
            continue
        boot = percentile_interval(e.reps[m], confidence)
        if m not in groups:
            out[m] = boot
            continue
        _, low, high = clustered_proportion_ci(hits[m][groups[m]], data.ids[groups[m]], confidence)
        out[m] = (low, high) if e.sv is None else (float(np.nanmin([low, boot[0]])), float(np.nanmax([high, boot[1]])))
    return out


def _ci_method(clustered: bool, from_val: bool) -> str:
    unit = "patients" if clustered else "images"
    thresholded = (f"threshold metrics: joint bootstrap of val and test {unit} (Youden threshold re-chosen on each "
                   "val resample, val scores smoothed), percentile; for recall/specificity/accuracy/precision "
                   "widened to include the clustered Wilson interval at the chosen threshold" if from_val else
                   f"recall/specificity/accuracy/precision: Wilson on the {unit}-effective n; F1: bootstrap of "
                   f"{unit}, percentile")
    return (f"AUROC: Newcombe score interval{' x patient design effect' if clustered else ''}; {thresholded}; "
            f"sens_at_spec: bootstrap of test {unit} (threshold re-chosen), percentile")


def _seed_row(data: _ClassData, e: _Evaluated, name: str, j: int, baseline: str | None, confidence: float,
              spec_target: float) -> dict[str, Any]:
    """The row of one unit (a seed) and class, without the comparison."""
    row = _row_head(e.unit, name, str(e.unit.seed), data, baseline, spec_target)
    row["threshold"] = e.t
    row["threshold_policy"] = ("val-youden, re-chosen in each resample" if e.sv is not None else "fixed 0.5"
                               if e.unit.threshold_policy == "0.5" else "0.5 (the val split lacks a label)")
    row.update(e.unit.info)
    row.update(_train_positives(e.unit, j))
    row["auroc"], row["auroc_ci_low"], row["auroc_ci_high"] = (e.point["auroc"], e.point.get("auroc_ci_low", math.nan),
                                                               e.point.get("auroc_ci_high", math.nan))
    intervals = _seed_intervals(data, e, confidence) if data.y.size else {}
    for m in RESAMPLED:
        row[m] = e.point[m]
        row[f"{m}_ci_low"], row[f"{m}_ci_high"] = intervals.get(m, (math.nan, math.nan))
    row["undefined_metrics"] = _undefined_reasons(e.point, int(data.y.sum()), int(data.y.size - data.y.sum()))
    row["ci_method"] = _ci_method(bool(np.unique(data.ids).size < data.ids.size), e.sv is not None)
    return row


def _train_positives(unit: UnitPredictions, j: int) -> dict[str, Any]:
    """Training images positive for class ``j``: in all, real, synthetic (NaN when unknown), and a note at 0."""
    if unit.train_positives is None:
        return dict.fromkeys(("train_positives", "train_positives_real", "train_positives_synthetic"), math.nan)
    real, synthetic = (int(v) for v in np.asarray(unit.train_positives)[:, j])
    out: dict[str, Any] = {"train_positives": real + synthetic, "train_positives_real": real,
                           "train_positives_synthetic": synthetic}
    if real + synthetic == 0:
        out["note"] = "no positive training image of this class: the model cannot have learned it"
    return out


def _row_head(unit: UnitPredictions, name: str, seed: str, data: _ClassData, baseline: str | None,
              spec_target: float) -> dict[str, Any]:
    y = data.y
    n_pos = int(y.sum())
    return {"setting": unit.setting, "n_real": unit.n_real, "n_synthetic": unit.n_synthetic, "seed": seed,
            "class": name, "setting_spec": unit.setting_spec, "baseline": baseline or "", "n_test": len(y),
            "n_patients": int(np.unique(data.ids).size), "positives": n_pos, "n_positive": n_pos,
            "n_negative": int(len(y) - n_pos), "prevalence": n_pos / len(y) if len(y) else math.nan,
            "sens_at_spec_target": spec_target}


def _seed_comparison(data: _ClassData, e: _Evaluated, b: _Evaluated, confidence: float) -> dict[str, Any]:
    """This unit minus the baseline unit of the same seed, on the same test images: descriptive (no p-value, no
    star: one seed each says nothing about the seed-to-seed spread). AUROC: clustered DeLong interval; the other
    metrics: percentile interval of the joint bootstrap difference."""
    row: dict[str, Any] = {}
    if data.y.size == 0:
        return row
    z = float(norm.ppf(0.5 + confidence / 2))
    test = delong_roc_test(data.y, e.s, b.s, clusters=data.ids)
    half = z * math.sqrt(test["variance"]) if math.isfinite(test["variance"]) else math.nan
    row.update({"auroc_diff_vs_real": test["difference"], "auroc_diff_vs_real_ci_low": test["difference"] - half,
                "auroc_diff_vs_real_ci_high": test["difference"] + half,
                "auroc_mdd80": detectable_difference(math.sqrt(test["variance"]))
                if math.isfinite(test["variance"]) else math.nan})
    for m in COMPARED:
        if m == "auroc":
            continue
        diff = e.point[m] - b.point[m]
        low, high = (percentile_interval(e.reps[m] - b.reps[m], confidence) if math.isfinite(diff)
                     else (math.nan, math.nan))
        row.update({f"{m}_diff_vs_real": diff, f"{m}_diff_vs_real_ci_low": low, f"{m}_diff_vs_real_ci_high": high})
    _flag_power(row)
    return row


def _flag_power(row: dict[str, Any]) -> None:
    mdd = row.get("auroc_mdd80", math.nan)
    row["underpowered"] = bool(mdd > DETECTABLE_LIMIT) if isinstance(mdd, float) and math.isfinite(mdd) else ""


def _seed_mean_test_variance(data: _ClassData, members: Sequence[_Evaluated], others: Sequence[_Evaluated],
                             m: str) -> float:
    """Test-set sampling variance of (mean over ``members``) minus (mean over ``others``, none: 0) of metric ``m``:
    AUROC by the clustered DeLong (Obuchowski) contrast, the rest over the shared joint patient bootstrap."""
    if m == "auroc":
        return delong_contrast(data.y, [e.s for e in members], [e.s for e in others], clusters=data.ids)["variance"]
    values = np.mean([e.reps[m] for e in members], axis=0)
    if others:
        values = values - np.mean([e.reps[m] for e in others], axis=0)
    values = values[np.isfinite(values)]
    return float(values.var(ddof=1)) if values.size >= 2 else math.nan


def _mean_row(data: _ClassData, members: Sequence[_Evaluated], seed_rows: Sequence[dict[str, Any]], name: str,
              baseline: str | None, confidence: float, spec_target: float) -> dict[str, Any]:
    """The ``seed = mean`` row of one setting and class (see :func:`evaluate_units`)."""
    row = _row_head(members[0].unit, name, "mean", data, baseline, spec_target)
    row["seeds"] = ",".join(str(e.unit.seed) for e in members)
    row["n_seeds"] = len(members)
    for key in ("best_epoch", "best_val_auroc", "n_train", "train_positives", "train_positives_real",
                "train_positives_synthetic"):
        values = [r[key] for r in seed_rows if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
        row[key] = float(np.mean(values)) if values else math.nan
    if len(members) == 1 or data.y.size == 0:
        only = seed_rows[0]
        for m in ROW_METRICS:
            row[m], row[f"{m}_ci_low"], row[f"{m}_ci_high"] = (only.get(m, math.nan), only.get(f"{m}_ci_low", math.nan),
                                                               only.get(f"{m}_ci_high", math.nan))
            row[f"{m}_std"] = math.nan
        row["seed_df"] = math.nan
        row["ci_method"] = f"one seed: its own intervals (test-set sampling only; no seed spread). {only['ci_method']}"
    else:
        for m in ROW_METRICS:
            got = seed_mean_interval([r.get(m, math.nan) for r in seed_rows],
                                     _seed_mean_test_variance(data, members, (), m), confidence)
            row[m], row[f"{m}_std"], row[f"{m}_ci_low"], row[f"{m}_ci_high"] = (got["mean"], got["std"],
                                                                                got["ci_low"], got["ci_high"])
            row[f"{m}_se"], row[f"{m}_df"] = got["se"], got["df"]
            # At 0 or 1 (AUROC 1, recall 1 on every seed) both variance parts vanish; the seeds' own intervals
            # (Newcombe, Wilson) do not: the interval is never narrower than their mean.
            lows = [r.get(f"{m}_ci_low", math.nan) for r in seed_rows]
            highs = [r.get(f"{m}_ci_high", math.nan) for r in seed_rows]
            if math.isfinite(row[m]) and np.isfinite(lows).any():
                row[f"{m}_ci_low"] = float(np.nanmin([row[f"{m}_ci_low"], np.nanmean(lows)]))
                row[f"{m}_ci_high"] = float(np.nanmax([row[f"{m}_ci_high"], np.nanmean(highs)]))
            if m == "auroc":
                row["seed_df"], method = got["df"], got["method"]
        row["ci_method"] = (f"{method}; test-set part: AUROC clustered DeLong variance of the seed mean, the other "
                            "metrics the variance of the seed mean over the joint patient bootstrap; never narrower "
                            "than the mean of the seeds' own intervals")
    point = {m: row[m] for m in ROW_METRICS}
    row["undefined_metrics"] = _undefined_reasons(point, int(data.y.sum()), int(data.y.size - data.y.sum()))
    return row


def _mean_comparison(data: _ClassData, members: Sequence[_Evaluated], base: Sequence[_Evaluated],
                     confidence: float) -> dict[str, Any]:
    """The setting's seed mean minus the baseline's, on the same test images: seed spreads plus test-set sampling
    (:func:`benchmark.core.stats.seed_mean_difference`); no p-value below the minimum number of seeds."""
    row: dict[str, Any] = {"paired_seeds": ",".join(str(e.unit.seed) for e in members
                                                    if e.unit.seed in {b.unit.seed for b in base})}
    if data.y.size == 0:
        return row
    for m in COMPARED:
        got = seed_mean_difference([e.point[m] for e in members], [b.point[m] for b in base],
                                   _seed_mean_test_variance(data, members, base, m), confidence)
        row.update({f"{m}_diff_vs_real": got["difference"], f"{m}_diff_vs_real_ci_low": got["ci_low"],
                    f"{m}_diff_vs_real_ci_high": got["ci_high"], f"{m}_p_vs_real": got["p_value"]})
        if m == "auroc":
            row["auroc_diff_vs_real_se"], row["auroc_diff_vs_real_df"] = got["se"], got["df"]
            row["auroc_mdd80"] = detectable_difference(got["se"])
            row["comparison_method"] = got["method"]
    _flag_power(row)
    return row


def evaluate_units(units: Sequence[UnitPredictions], test_labels: np.ndarray, classes: Sequence[str], *,
                   baseline: str | None, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                   mean_rows: bool = True, test_patients: Sequence | np.ndarray | None = None,
                   val_labels: np.ndarray | None = None, val_patients: Sequence | np.ndarray | None = None,
                   spec_target: float = SPEC_TARGET, progress: str | None = None) -> pd.DataFrame:
    """The result rows: one per (unit, class) with ``seed`` = the training seed, and one per (setting, class) with
    ``seed = "mean"`` (``mean_rows=False`` leaves those out).

    Args:
        units: every unit's predictions (:class:`UnitPredictions`; ``val_scores`` needed for the val-threshold
            bootstrap).
        test_labels: ``(N_test, C)`` 1 / 0 / NaN (unknown labels are masked per class). test_patients: ``(N_test,)``
            patient ids (None: one patient per image); val_labels ``(N_val, C)`` and val_patients ``(N_val,)``: the
            real val split, where the thresholds were chosen.
        baseline: the ``setting_spec`` every other setting is compared with (same test images).
        n_resamples: B of the joint patient bootstrap (the same B resamples for every unit of a class).
        spec_target: the specificity of ``sens_at_spec``.
        progress: a label for a progress display over the classes (None: silent).

    Every row: ``n_test``, ``n_patients``, ``n_positive`` (also ``positives``), ``n_negative``, ``prevalence``,
    ``train_positives`` (``_real``, ``_synthetic``), each of :data:`ROW_METRICS` with ``_ci_low`` / ``_ci_high``,
    ``undefined_metrics`` (which are NaN and why) and ``ci_method``. Seed rows: AUROC with Newcombe's interval
    (patient design effect), the others from the joint bootstrap (see :func:`_seed_intervals`), and descriptive
    differences against the baseline's model of the same seed (``<m>_diff_vs_real`` with CI; AUROC by clustered
    DeLong; no p-value). Mean rows: :func:`benchmark.core.stats.seed_mean_interval` (seed spread + test-set sampling,
    ``seed_df``, ``n_seeds``; ``<m>_std``) and the comparison of seed means (``seed_mean_difference``:
    ``<m>_diff_vs_real`` with CI, ``<m>_p_vs_real``, ``<m>_p_vs_real_holm`` Holm over the settings x classes of
    that metric, ``holm_family``; none below :data:`benchmark.core.stats.MIN_SEEDS_FOR_SPREAD` seeds per side).
    Compared rows: ``auroc_mdd80`` (the AUROC difference detectable with 80% power at its standard error) and
    ``underpowered`` (above :data:`DETECTABLE_LIMIT`); ``auroc_vs_real`` the verdict.
    """
    labels = np.asarray(test_labels, dtype=np.float64)
    test_ids = np.arange(len(labels)) if test_patients is None else np.asarray(test_patients)
    val = None if val_labels is None else np.asarray(val_labels, dtype=np.float64)
    val_ids = None if val is None else (np.arange(len(val)) if val_patients is None else np.asarray(val_patients))
    specs = list(dict.fromkeys(u.setting_spec for u in units))
    blocks: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for j, name in track(list(enumerate(classes)), progress or "", "class"):
        data = _class_data(labels, test_ids, val, val_ids, j)
        evaluated = []
        for unit in units:
            sv = None
            if unit.threshold_policy == "val-youden" and unit.val_scores is not None and data.yv is not None:
                sv = np.asarray(unit.val_scores, dtype=np.float64)[data.val_known, j]
            # with a val threshold, the point estimate uses the very rule each resample re-applies
            t = youden_threshold(data.yv, sv) if sv is not None else float(unit.thresholds[j])
            e = _Evaluated(unit, unit.scores[data.known, j].astype(np.float64), sv, t)
            _point(data, e, spec_target)
            evaluated.append(e)
        _resample_units(data, evaluated, n_resamples, seed, spec_target, zlib.crc32(name.encode()))
        by_spec = {spec: sorted((e for e in evaluated if e.unit.setting_spec == spec), key=lambda e: e.unit.seed)
                   for spec in specs}
        base = by_spec.get(baseline, []) if baseline else []
        base_by_seed = {e.unit.seed: e for e in base}
        for spec, members in by_spec.items():
            rows = []
            for e in members:
                row = _seed_row(data, e, name, j, baseline, confidence, spec_target)
                partner = base_by_seed.get(e.unit.seed)
                if partner is not None and spec != baseline:
                    row.update(_seed_comparison(data, e, partner, confidence))
                rows.append(row)
            if mean_rows:
                mean = _mean_row(data, members, rows, name, baseline, confidence, spec_target)
                if base and spec != baseline:
                    mean.update(_mean_comparison(data, members, base, confidence))
                rows.append(mean)
            blocks[spec, j] = rows
    table = pd.DataFrame([row for spec in specs for j in range(len(classes)) for row in blocks[spec, j]])
    return _adjust(table, baseline, confidence)


def _adjust(table: pd.DataFrame, baseline: str | None, confidence: float) -> pd.DataFrame:
    """Holm over the mean rows' tests of each metric (the family: that metric's settings x classes), and the
    ``auroc_vs_real`` verdict."""
    alpha = 1.0 - confidence
    if "auroc_diff_vs_real" not in table:
        return table
    means = table["seed"] == "mean"
    compared = means & table["auroc_diff_vs_real"].notna()
    for m in COMPARED:
        column = f"{m}_p_vs_real"
        if column not in table:
            table[column] = np.nan
        table[f"{m}_p_vs_real_holm"] = np.nan
        table.loc[means, f"{m}_p_vs_real_holm"] = holm_adjust(table.loc[means, column].to_numpy(float))
    tested = int(table.loc[means, "auroc_p_vs_real"].notna().sum())
    settings = table.loc[compared, "setting_spec"].nunique()
    classes = table.loc[compared, "class"].nunique()
    table["holm_family"] = ""
    table.loc[compared, "holm_family"] = (f"per metric: the {tested} seed-mean comparisons with {baseline} "
                                          f"({settings} settings x {classes} classes with enough seeds)")
    diff = table["auroc_diff_vs_real"].to_numpy(float)
    p = table["auroc_p_vs_real_holm"].to_numpy(float)
    verdict = np.where(p >= alpha, "no significant difference", np.where(diff < 0, "significantly worse",
                                                                         "significantly better")).astype(object)
    weak = table.get("underpowered", pd.Series("", index=table.index)).astype(str) == "True"
    verdict = np.where((p >= alpha) & weak, "no significant difference (underpowered: not evidence of equality)",
                       verdict)
    few = f"no test: the seed spread needs at least {MIN_SEEDS_FOR_SPREAD} seeds per setting"
    table["auroc_vs_real"] = np.where(~compared.to_numpy(), "", np.where(np.isnan(p), few, verdict))
    return table
