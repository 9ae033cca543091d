"""Subgroup analysis of the pretrained-classifier utility (``--by sex``, ``--by age-band``, ``--by view``): per
subgroup (who belongs where: :mod:`benchmark.data.subgroups`), image source and class the sample sizes, AUROC and
false-negative rate (FNR) with intervals, and each subgroup's gap to the reference subgroup (the one with the most
positives), in FNR (RoentGen-v2's underdiagnosis measure: how many more of a group's positive cases the classifier
misses) and in AUROC.

Intervals: AUROC as everywhere (Newcombe score interval times the patients' design effect); FNR a Wilson interval on
the patient-effective number of positives (:func:`benchmark.core.stats.clustered_proportion_ci`) at the stage's
threshold, held fixed; a gap between two subgroups (disjoint patients, so independent given the threshold) by MOVER
(Newcombe 1998's method 10 for proportions, Zou & Donner 2008) from the two intervals. A subgroup with fewer than
:data:`MIN_FOR_INTERVAL` positives (or negatives, for AUROC) gets its figures without intervals and a note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.stats import auroc_ci, auroc_difference_ci, cluster_codes, clustered_proportion_ci
from benchmark.data.subgroups import UNKNOWN

MIN_FOR_INTERVAL = 5


def _figures(y: np.ndarray, s: np.ndarray, clusters: np.ndarray, threshold: float) -> dict[str, Any]:
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    row: dict[str, Any] = {"n": int(y.size), "n_positive": positives, "n_negative": negatives,
                           "n_patients": int(np.unique(clusters).size),
                           "prevalence": positives / y.size if y.size else math.nan}
    notes = []
    if positives and negatives:
        row["auroc"], low, high = auroc_ci(y, s, clusters=clusters)
        small = min(positives, negatives) < MIN_FOR_INTERVAL
        row["auroc_ci_low"], row["auroc_ci_high"] = (math.nan, math.nan) if small else (low, high)
        if small:
            notes.append(f"AUROC without interval: {min(positives, negatives)} "
                         f"{'positives' if positives < negatives else 'negatives'} (fewer than {MIN_FOR_INTERVAL})")
    else:
        row["auroc"] = row["auroc_ci_low"] = row["auroc_ci_high"] = math.nan
        if positives:
            notes.append("AUROC undefined: no negatives in this subgroup")
    if positives:
        missed = s[y == 1] < threshold
        row["fnr"], low, high = clustered_proportion_ci(missed, clusters[y == 1])
        small = positives < MIN_FOR_INTERVAL
        row["fnr_ci_low"], row["fnr_ci_high"] = (math.nan, math.nan) if small else (low, high)
        if small:
            notes.append(f"FNR without interval: {positives} positives (fewer than {MIN_FOR_INTERVAL})")
    else:
        row["fnr"] = row["fnr_ci_low"] = row["fnr_ci_high"] = math.nan
        notes.append("no positives in this subgroup")
    row["subgroup_note"] = "; ".join(notes)
    return row


def subgroup_table(labels: dict[str, np.ndarray], scores: dict[str, np.ndarray], groups: dict[str, np.ndarray],
                   class_names: Sequence[str], thresholds: dict[str, float], *,
                   clusters: dict[str, np.ndarray | None] | None = None, by: str = "sex") -> pd.DataFrame:
    """One row per (image source, class, subgroup) with figures and the gap to the reference subgroup.

    ``labels[source]`` / ``scores[source]``: ``(N, C)`` (labels 1 / 0 / NaN unknown; NaN score columns: class not
    evaluable, skipped); ``groups[source]``: ``(N,)`` subgroup of each image ("" unknown: left out, counted in
    ``n_unknown_subgroup``); ``clusters[source]``: ``(N,)`` patient ids or None. Gap columns (``fnr_gap``,
    ``auroc_gap`` with ``_ci_low`` / ``_ci_high``): this subgroup minus the reference (``gap_reference``; empty on
    the reference's own row), the reference being the subgroup with the most positives of that source and class."""
    clusters = clusters or {}
    rows: list[dict[str, Any]] = []
    for source in labels:
        group = np.asarray(groups[source], dtype=object)
        ids = clusters.get(source)
        codes = cluster_codes(None if ids is None else np.asarray(ids), len(group))
        named = sorted({g for g in group if g != UNKNOWN})
        for j, name in enumerate(class_names):
            column = scores[source][:, j]
            if np.isnan(column).all():
                continue
            known = ~np.isnan(labels[source][:, j])
            per_group: dict[str, dict[str, Any]] = {}
            for value in named:
                where = known & (group == value)
                y = labels[source][where, j].astype(int)
                row = {"image_source": source, "class": name, "subgroup_by": by, "subgroup": value,
                       "threshold": thresholds[name],
                       "n_unknown_subgroup": int((known & (group == UNKNOWN)).sum()),
                       **_figures(y, column[where], codes[where], thresholds[name])}
                per_group[value] = row
            if not per_group:
                continue
            reference = max(per_group, key=lambda v: (per_group[v]["n_positive"], per_group[v]["n"]))
            ref = per_group[reference]
            for value, row in per_group.items():
                row["gap_reference"] = "" if value == reference else reference
                for metric in ("fnr", "auroc"):
                    if value == reference:
                        row[f"{metric}_gap"] = row[f"{metric}_gap_ci_low"] = row[f"{metric}_gap_ci_high"] = math.nan
                        continue
                    mine = (row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"])
                    theirs = (ref[metric], ref[f"{metric}_ci_low"], ref[f"{metric}_ci_high"])
                    gap = row[metric] - ref[metric]
                    low_high = auroc_difference_ci(mine, theirs)[1:]  # MOVER; NaN when either interval is
                    row[f"{metric}_gap"], (row[f"{metric}_gap_ci_low"], row[f"{metric}_gap_ci_high"]) = gap, low_high
                rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table["ci_method"] = ("AUROC: Newcombe score interval x patient design effect; FNR: Wilson on the "
                              "patient-effective n of positives at the fixed threshold; gaps: MOVER from the two "
                              "subgroups' intervals (disjoint patients)")
    return table
