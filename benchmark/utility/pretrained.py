"""Pretrained-classifier utility (RoentGen Table 3 protocol): does a classifier find the labels in synthetic images
as well as in the real ones?

A pretrained classifier scores the real test images and the synthetic images made from the same prompts / labels.
Per class and image source: n, positives, prevalence, AUROC (Newcombe interval, widened for patients' several
images), sensitivity at a fixed specificity, and accuracy, precision, recall, specificity and F1 at a stated
threshold (Wilson intervals on the patient-effective n, or a joint patient bootstrap that re-chooses a validation
threshold); the real-minus-synthetic difference with its CI and p-value (unpaired: the images differ), the smallest
AUROC difference the sizes can detect, precision and accuracy at the real prevalence; and whether the classifier
finds each class above chance at all: a one-sided Brunner-Munzel p-value of AUROC > 0.5, Holm-adjusted over the
classes of one image source (``label_signal``).
The core (:func:`evaluate`) takes labels and scores and returns a table; the stage
function (:func:`run_pretrained_stage`) loads, guards against leakage, scores, writes and plots.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.progress import track
from benchmark.core.results import cache_dir as default_cache_root
from benchmark.core.results import check_writable, run_dir, write_run_rows
from benchmark.core.stats import (
    SIGNAL_ALPHA,
    at_prevalence,
    auroc,
    auroc_above_chance_p,
    auroc_ci,
    auroc_difference_ci,
    binary_metrics,
    bootstrap_metrics,
    cluster_bootstrap_weights,
    cluster_codes,
    clustered_proportion_ci,
    delong_auc_variance,
    detectable_difference,
    holm_adjust,
    joint_chunk,
    metrics_at_thresholds,
    sensitivity_at_specificity,
    smoothed_youden_thresholds,
    unpaired_difference,
)
from benchmark.core.stats import youden_threshold as stats_youden
from benchmark.data import DataError, SplitTable, scan_images, undersized_note
from benchmark.data.check_data import format_report
from benchmark.data.generator_training import check_generator_overlap
from benchmark.data.generator_training import resolve as resolve_generator_training
from benchmark.data.leakage import LeakageDecision, check_leakage
from benchmark.data.subgroups import DEFAULT_AGE_CUTS, subgroup_values, synthetic_subgroups
from benchmark.data.synthetic import SyntheticSet
from benchmark.models.classifiers import Classifier, declared_training_data, load_classifier
from benchmark.models.scoring import cached_predictions, classifier_space, score_images
from benchmark.utility.label_mapping import ClassMapping, class_scores, map_classes
from benchmark.utility.subgroups import subgroup_table
from benchmark.utility.test_labels import keyed_extra_info, test_label_mask

LOG = logging.getLogger(__name__)
TABLE = "utility_pretrained"
SUBGROUP_TABLE = "utility_pretrained_subgroups"
SANITY_FLAG = "real-image AUROC CI lies wholly below 0.5: likely a label or normalisation misalignment"


@dataclass
class PretrainedConfig:
    """Settings of the stage; every field is recorded in the results rows' ``config_hash``."""

    classifier: str = "densenet121-res224-all"
    cache_dir: str | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    threshold: str = "operating-point"
    n_resamples: int = 2000
    seed: int = 0
    batch_size: int = 32
    num_workers: int = 0
    allow_leakage: bool = False
    real_split: str = "test"
    allow_generator_overlap: bool = False
    test_labels: str = "all"  # "physician": only test rows whose labels a physician read (split column label_source)
    by: tuple[str, ...] = ()  # subgroup variables (sex, age-band, view): rows in utility_pretrained_subgroups
    age_cuts: tuple[int, ...] = DEFAULT_AGE_CUTS
    preset: str = ""  # what ran (benchmark.core.presets): quick, paper, ...+custom; written in every row


def youden_threshold(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (:func:`.stats.youden_threshold`), at most 1."""
    return float(min(stats_youden(y_true, y_score), 1.0))


#: synthetic / real prevalence ratios outside [1 / PREVALENCE_FACTOR, PREVALENCE_FACTOR] make precision and accuracy
#: incomparable between the two sources (sensitivity, specificity and AUROC do not depend on prevalence)
PREVALENCE_FACTOR = 2.0
#: a class whose smallest detectable AUROC difference (80% power, two-sided 0.05) exceeds this is flagged
DETECTABLE_LIMIT = 0.1
#: sensitivity is reported at this specificity, with the threshold chosen on the evaluated images themselves
SPEC_TARGET = 0.9
#: the synthetic comparison of a class is made only when the classifier recognises the class in the *real* test
#: images: the lower end of the real AUROC's 95% interval at least this
RECOGNITION_FLOOR = 0.70
NOT_RECOGNISED = ("pretrained utility not evaluable for this class: the classifier does not recognise it in the real "
                  "test images (real AUROC lower 95% bound {low:.2f} < {floor:.2f}); a synthetic AUROC would measure "
                  "the classifier, not the images. Use the retrained stage (--stage retrained) for this class")
THRESHOLD_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "specificity", "f1")


@dataclass
class ValidationScores:
    """Real validation images of one class (labels known) and their scores and patients: a Youden threshold chosen
    on them is re-chosen on every bootstrap resample of their patients."""

    y: np.ndarray
    s: np.ndarray
    clusters: np.ndarray


def _ci_method(clustered: bool, threshold_from_val: bool) -> str:
    unit = "patients" if clustered else "images"
    thresholded = (f"accuracy/precision/recall/specificity/F1: joint bootstrap of {unit} over real validation "
                   "(Youden threshold re-chosen each time) and test images, percentile"
                   if threshold_from_val else
                   f"recall/specificity/accuracy/precision: Wilson on the {unit}-effective n; F1: bootstrap of "
                   f"{unit}, percentile")
    return (f"AUROC: Newcombe score interval{' x patient design effect' if clustered else ''}; {thresholded}; "
            f"sens_at_spec: bootstrap of {unit} (threshold re-chosen), percentile; AUROC difference: MOVER; "
            f"p-values: DeLong{' (Obuchowski clustered)' if clustered else ''}")


def _threshold_metric_intervals(y: np.ndarray, s: np.ndarray, clusters: np.ndarray | None, threshold: float,
                                val: ValidationScores | None, n_resamples: int, seed: int) -> dict[str, tuple]:
    """(ci_low, ci_high) of each threshold metric: with a validation-chosen threshold, a joint patient bootstrap
    that re-chooses it; with a fixed one, Wilson intervals on the effective n (F1: patient bootstrap)."""
    out: dict[str, tuple] = {}
    if val is not None:
        rng_val, rng_test = (np.random.default_rng(x) for x in np.random.SeedSequence([seed, 31]).spawn(2))
        chunk = joint_chunk(val.y.size, y.size)  # both sides in step, whatever their sizes
        rng_noise = np.random.default_rng([seed, 37])
        val_weights = cluster_bootstrap_weights(val.y, val.clusters, n_resamples, rng_val, chunk=chunk)
        test_weights = cluster_bootstrap_weights(y, clusters if clusters is not None else np.arange(y.size),
                                                 n_resamples, rng_test, chunk=chunk)
        parts: list[dict[str, np.ndarray]] = []
        for wv, wt in zip(val_weights, test_weights, strict=True):
            chosen = smoothed_youden_thresholds(val.y, val.s, wv, rng_noise.standard_normal(wv.shape))
            parts.append(metrics_at_thresholds(y, s, np.minimum(chosen, 1.0), wt, THRESHOLD_METRICS))
        for m in THRESHOLD_METRICS:
            values = np.concatenate([p[m] for p in parts])
            values = values[~np.isnan(values)]
            out[m] = tuple(float(v) for v in np.quantile(values, [0.025, 0.975])) if values.size else (np.nan,) * 2
        return out
    pred = s >= threshold
    positive, negative = y == 1, y == 0
    groups = {"recall": positive, "specificity": negative, "accuracy": np.ones(y.size, bool), "precision": pred}
    hits = {"recall": pred, "specificity": ~pred, "accuracy": pred == positive, "precision": positive}
    for m, where in groups.items():
        members = None if clusters is None else clusters[where]
        out[m] = clustered_proportion_ci(hits[m][where], members)[1:] if where.any() else (np.nan, np.nan)
    out["f1"] = bootstrap_metrics(y, s, threshold, n_resamples=n_resamples, seed=seed, clusters=clusters)["f1"][1:]
    return out


def _sens_at_spec(y: np.ndarray, s: np.ndarray, clusters: np.ndarray | None, n_resamples: int,
                  seed: int) -> tuple[float, float, float]:
    point = sensitivity_at_specificity(y, s, SPEC_TARGET)
    ids = clusters if clusters is not None else np.arange(y.size)
    values = np.concatenate([sensitivity_at_specificity(y, s, SPEC_TARGET, w)
                             for w in cluster_bootstrap_weights(y, ids, n_resamples, seed)])
    values = values[~np.isnan(values)]
    low, high = np.quantile(values, [0.025, 0.975]) if values.size else (np.nan, np.nan)
    return float(point), float(low), float(high)


def _source_row(y: np.ndarray, s: np.ndarray, clusters: np.ndarray | None, threshold: float,
                val: ValidationScores | None, n_resamples: int, seed: int) -> dict[str, Any]:
    """The figures of one (source, class): AUROC with its interval, threshold metrics with theirs, sens_at_spec,
    the above-chance p-value."""
    row: dict[str, Any] = {"threshold": threshold}
    point = binary_metrics(y, s, threshold)
    row["auroc"], row["auroc_ci_low"], row["auroc_ci_high"] = auroc_ci(y, s, clusters=clusters)
    intervals = _threshold_metric_intervals(y, s, clusters, threshold, val, n_resamples, seed)
    for m in THRESHOLD_METRICS:
        defined = not math.isnan(point[m])
        row[m] = point[m]
        row[f"{m}_ci_low"], row[f"{m}_ci_high"] = intervals[m] if defined else (np.nan, np.nan)
        if not defined:
            row.setdefault("undefined_metrics", []).append(m)
    if 0 < y.sum() < y.size:
        row["sens_at_spec"], row["sens_at_spec_ci_low"], row["sens_at_spec_ci_high"] = _sens_at_spec(
            y, s, clusters, n_resamples, seed)
        row["auroc_p_above_chance"] = auroc_above_chance_p(y, s)
        row["auroc_se"] = math.sqrt(max(delong_auc_variance(y, s, clusters), 0.0)) \
            if min(y.sum(), y.size - y.sum()) >= 2 else np.nan
    row["undefined_metrics"] = ",".join(row.get("undefined_metrics", []))
    return row


def _comparison(real: tuple, synthetic: tuple, real_row: dict[str, Any], syn_row: dict[str, Any], threshold: float,
                n_resamples: int, seed: int) -> dict[str, Any]:
    """Real-minus-synthetic differences (AUROC: MOVER interval, clustered DeLong p), the prevalence check and
    precision / accuracy of the synthetic images' sensitivity and specificity at the real prevalence."""
    (y_real, s_real, c_real), (y_syn, s_syn, c_syn) = real, synthetic
    out: dict[str, Any] = {}
    differences = unpaired_difference(y_real, s_real, y_syn, s_syn, threshold, n_resamples=n_resamples, seed=seed,
                                      clusters_a=c_real, clusters_b=c_syn)
    for metric, (diff, low, high, p) in differences.items():
        if metric == "auroc_delong_p":
            out["auroc_delong_p_value"] = p
            continue
        if metric == "auroc":
            diff, low, high = auroc_difference_ci(
                (real_row["auroc"], real_row["auroc_ci_low"], real_row["auroc_ci_high"]),
                (syn_row["auroc"], syn_row["auroc_ci_low"], syn_row["auroc_ci_high"]))
            p = differences["auroc_delong_p"][3]
        out[f"{metric}_diff_real_minus_synthetic"] = diff
        out[f"{metric}_diff_ci_low"], out[f"{metric}_diff_ci_high"] = low, high
        out[f"{metric}_diff_p_value"] = p
    prevalence = real_row["prevalence"]
    ratio = syn_row["prevalence"] / prevalence if prevalence > 0 else np.nan
    out["prevalence_ratio"] = ratio
    out["prevalence_comparable"] = bool(math.isfinite(ratio) and 1 / PREVALENCE_FACTOR <= ratio <= PREVALENCE_FACTOR)
    pred = s_syn >= threshold
    sens = clustered_proportion_ci(pred[y_syn == 1], None if c_syn is None else c_syn[y_syn == 1], 0.975)
    spec = clustered_proportion_ci(~pred[y_syn == 0], None if c_syn is None else c_syn[y_syn == 0], 0.975)
    for metric, (value, low, high) in at_prevalence(sens, spec, prevalence).items():
        out[f"{metric}_at_real_prevalence"] = value
        out[f"{metric}_at_real_prevalence_ci_low"], out[f"{metric}_at_real_prevalence_ci_high"] = low, high
    return out


def evaluate(
    labels: dict[str, np.ndarray],
    scores: dict[str, np.ndarray],
    mappings: Sequence[ClassMapping],
    thresholds: dict[str, float],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    clusters: dict[str, np.ndarray | None] | None = None,
    validation: dict[str, ValidationScores] | None = None,
    progress: str | None = None,
) -> pd.DataFrame:
    """Metric table: one row per (image source, class); ``progress``: a label for a progress display over the
    classes (None: silent).

    ``labels[source]`` is ``(N, C)`` with 1 / 0 / NaN (unknown, masked per class); ``scores[source]`` is ``(N, C)``
    class scores (NaN columns for classes that are not evaluable). Sources are ``real`` and ``synthetic``.
    ``clusters[source]`` is ``(N,)`` patient ids (real) or source ids (synthetic), or None: intervals then resample
    patients and AUROC variances are clustered. ``validation[class]``: when the class's threshold was chosen on real
    validation images (Youden), their labels, scores and patients, so the threshold metrics' intervals include that
    choice.

    Every row: n, n_positive, n_negative, prevalence; AUROC (Newcombe interval), the threshold metrics, sensitivity
    at specificity :data:`SPEC_TARGET` (``sens_at_spec``), ``auroc_p_above_chance`` (one-sided Brunner-Munzel) with
    its Holm adjustment over the evaluable classes of the same source and ``label_signal``; ``ci_method``.
    Synthetic rows also carry the real-minus-synthetic differences, ``auroc_mdd80`` (smallest AUROC difference
    detectable with 80% power at these sizes; also on the real row) and ``underpowered`` (above
    :data:`DETECTABLE_LIMIT`), ``prevalence_ratio`` / ``prevalence_comparable`` and precision and accuracy at the real
    prevalence.
    """
    clusters = clusters or {}
    validation = validation or {}
    rows: list[dict[str, Any]] = []
    for j, mapping in track(list(enumerate(mappings)), progress or "", "class"):
        per_source: dict[str, tuple] = {}
        by_source: dict[str, dict[str, Any]] = {}
        for source in labels:
            known = ~np.isnan(labels[source][:, j])
            y, s = labels[source][known, j].astype(int), scores[source][known, j]
            ids = clusters.get(source)
            ids = None if ids is None else cluster_codes(np.asarray(ids)[known], int(known.sum()))
            per_source[source] = (y, s, ids)
            row: dict[str, Any] = {"image_source": source, "class": mapping.name,
                                   "classifier_output": mapping.output or "", "evaluable": mapping.evaluable,
                                   "proxy": bool(mapping.proxy), "proxy_note": mapping.proxy,
                                   "not_evaluable_reason": mapping.reason, "n": int(known.sum()),
                                   "n_positive": int(y.sum()), "n_negative": int(len(y) - y.sum()),
                                   "prevalence": float(y.mean()) if len(y) else np.nan,
                                   "n_unknown_label": int((~known).sum()),
                                   "n_patients": int(np.unique(ids).size) if ids is not None else len(y),
                                   "sens_at_spec_target": SPEC_TARGET}
            if mapping.evaluable and len(y):
                val = validation.get(mapping.name) if source in ("real", "synthetic") else None
                row.update(_source_row(y, s, ids, thresholds[mapping.name], val, n_resamples, seed))
                row["ci_method"] = _ci_method(ids is not None, val is not None)
                row["sanity_flag"] = (SANITY_FLAG if source == "real" and row["auroc_ci_high"] < 0.5 else "")
            rows.append(row)
            by_source[source] = row
        if mapping.evaluable and {"real", "synthetic"} <= per_source.keys():
            real_row, syn_row = by_source["real"], by_source["synthetic"]
            if len(per_source["real"][0]) and len(per_source["synthetic"][0]) and "auroc" in real_row:
                mdd = detectable_difference(math.hypot(real_row.get("auroc_se", np.nan),
                                                       syn_row.get("auroc_se", np.nan)))
                for row in (real_row, syn_row):  # what a real-synthetic comparison of these sizes can detect
                    row["auroc_mdd80"] = mdd
                    row["underpowered"] = bool(mdd > DETECTABLE_LIMIT) if math.isfinite(mdd) else True
                low = real_row["auroc_ci_low"]
                recognised = bool(np.isfinite(low) and low >= RECOGNITION_FLOOR)
                real_row["recognised_in_real"] = syn_row["recognised_in_real"] = recognised
                if recognised:
                    syn_row.update(_comparison(per_source["real"], per_source["synthetic"], real_row, syn_row,
                                               thresholds[mapping.name], n_resamples, seed))
                else:
                    note = NOT_RECOGNISED.format(low=low, floor=RECOGNITION_FLOOR)
                    real_row["comparison_note"] = syn_row["comparison_note"] = note
    table = pd.DataFrame(rows)
    return add_label_signal(table)


def add_label_signal(table: pd.DataFrame, alpha: float = SIGNAL_ALPHA) -> pd.DataFrame:
    """Holm-adjust ``auroc_p_above_chance`` over the classes of each image source and set ``label_signal``
    (adjusted p < ``alpha``). Classes without a p-value (not evaluable, one label absent) are left out."""
    table = table.copy()
    if "auroc_p_above_chance" not in table:
        table["auroc_p_above_chance"] = np.nan
    table["auroc_p_above_chance"] = table["auroc_p_above_chance"].astype(float)
    table["auroc_p_above_chance_holm"] = np.nan
    for _, index in table.groupby("image_source").groups.items():
        table.loc[index, "auroc_p_above_chance_holm"] = holm_adjust(table.loc[index, "auroc_p_above_chance"])
    table["label_signal"] = table["auroc_p_above_chance_holm"] < alpha
    return table


@dataclass
class PretrainedOutcome:
    """What the stage produced: the metric table, where its files went, and the leakage decision."""

    table: pd.DataFrame
    run_id: str
    run_folder: Path
    leakage: LeakageDecision
    predictions: dict[str, pd.DataFrame]
    subgroups: pd.DataFrame = field(default_factory=pd.DataFrame)


def _class_score_matrix(probabilities: np.ndarray, mappings: Sequence[ClassMapping],
                        outputs: Sequence[str]) -> np.ndarray:
    columns = [class_scores(probabilities, m, outputs) if m.evaluable else np.full(len(probabilities), np.nan)
               for m in mappings]
    return np.stack(columns, axis=1) if columns else np.zeros((len(probabilities), 0))


def run_pretrained_stage(
    real: SplitTable,
    synthetic: SyntheticSet,
    config: PretrainedConfig,
    *,
    model_name: str,
    extra_info: str = "",
    results_dir: str | Path | None = None,
    run_id: str | None = None,
    classifier: Classifier | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> PretrainedOutcome:
    """Guard, score, evaluate and write one model's pretrained-classifier utility (SPEC §4 rows + run files).

    The classifier's outputs are kept in the feature cache (``cache_dir``, default ``<results>/cache/features``)
    by image content, weights and preprocessing: the real test images are scored once for every model compared.
    """
    from benchmark.core.provenance import new_run_id

    check_writable(TABLE, results_dir)  # a full disk or a corrupt results CSV stops here, not after the scoring
    declared = None if classifier is not None else declared_training_data(config.classifier)
    if declared is not None:  # xrv weights: the guard decides before they are loaded (or downloaded)
        leakage = check_leakage(real.dataset, *declared, config.allow_leakage)
    classifier = classifier or load_classifier(config.classifier, config.cache_dir)
    if declared is None:  # a checkpoint (or a given classifier) says what it saw once loaded
        leakage = check_leakage(real.dataset, classifier.name, classifier.trained_on, config.allow_leakage)
    if leakage.leaky:
        LOG.warning("leakage allowed: %s", leakage.reason)
    generator = check_generator_overlap(
        resolve_generator_training(synthetic.manifest.get("generator_training"),
                                   where=str(synthetic.root / "manifest.json")),
        real, allow=config.allow_generator_overlap)
    test = labelled_subset(real.subset(config.real_split), config.test_labels)
    classes = list(real.classes)
    missing = [c for c in classes if c not in synthetic.frame.columns]
    if missing:
        raise ValueError(f"{synthetic.root}/synthetic.csv has no label column {missing[0]!r}; the synthetic set must "
                         "carry the labels of the rows it was made from")
    synthetic_labels = synthetic.for_classes(classes).labels()
    mappings = map_classes(classes, classifier.outputs, config.label_map)
    for mapping in mappings:
        if not mapping.evaluable:
            LOG.warning("class %r is not evaluable with %s: %s", mapping.name, classifier.name, mapping.reason)

    scanned = {"real": test.image_paths(), "synthetic": synthetic.image_paths()}
    if config.threshold == "val-youden":
        scanned["real validation"] = real.subset("val").image_paths()
    for source, paths in scanned.items():  # every bad image, at once, before the first is scored
        problems = scan_images(paths, workers=max(1, config.num_workers))
        if problems:
            where = real.source if source != "synthetic" else str(synthetic.root / "synthetic.csv")
            raise DataError(format_report(f"{where} ({source} images)", len(paths), problems))

    size_notes = [undersized_note(paths, classifier.input_size, source) for source, paths in scanned.items()]
    size_notes = [n for n in size_notes if n]
    for note in size_notes:
        LOG.warning(note)

    def forward(batch):
        return classifier.predict(batch)

    store = cache_dir if cache_dir is not None else default_cache_root("features", results_dir)
    probabilities = {}
    space = classifier_space(classifier)
    for source, paths in (("real", test.image_paths()), ("synthetic", synthetic.image_paths())):
        scored = cached_predictions(space, paths, batch_size=config.batch_size, num_workers=config.num_workers,
                                    cache_dir=store, use_cache=use_cache,
                                    progress=f"pretrained: scoring {source} images")
        probabilities[source] = scored.features
        print(f"pretrained {model_name} / {source} images: {len(paths)} ({scored.n_computed} scored, "
              f"{scored.n_cached} from cache)", file=sys.stderr, flush=True)
    labels = {"real": test.labels(), "synthetic": synthetic_labels}
    scores = {source: _class_score_matrix(p, mappings, classifier.outputs) for source, p in probabilities.items()}
    thresholds, threshold_source, validation = _thresholds(real, classifier, mappings, config, forward)
    clusters = {"real": test.frame["patient_id"].to_numpy(), "synthetic": synthetic_clusters(synthetic)}
    table = evaluate(labels, scores, mappings, thresholds, n_resamples=config.n_resamples, seed=config.seed,
                     clusters=clusters, validation=validation, progress="pretrained: intervals per class")
    table.insert(0, "classifier", classifier.name)
    table.insert(0, "extra_info", keyed_extra_info(extra_info, config.test_labels))
    table.insert(0, "model_name", model_name)
    table["threshold_source"] = table["class"].map(threshold_source).fillna("")
    table["image_notes"] = "; ".join(size_notes)
    table["leakage"] = leakage.status
    for column, value in generator.columns().items():
        table[column] = value
    table["allow_leakage"] = config.allow_leakage
    table["real_dataset"] = real.dataset
    table["real_split"] = config.real_split
    table["test_labels"] = config.test_labels
    table["case_mix"] = real.meta.get("case_mix", "")
    if str(real.meta.get("case_mix", "")).startswith("enriched"):
        table["case_mix_note"] = CASE_MIX_NOTE
    table["preset"] = config.preset
    table["n_resamples"] = config.n_resamples
    table["bootstrap_seed"] = config.seed
    table["synthetic_dir"] = str(synthetic.root)

    run_id = run_id or new_run_id("pretrained")
    folder = run_dir(run_id, results_dir)
    predictions = {}
    for source, paths in (("real", test.image_paths()), ("synthetic", synthetic.image_paths())):
        frame = pd.DataFrame({"image": [str(p) for p in paths]})
        for j, mapping in enumerate(mappings):
            frame[f"label:{mapping.name}"] = labels[source][:, j]
            frame[f"score:{mapping.name}"] = scores[source][:, j]
        predictions[source] = frame
        frame.to_csv(folder / f"predictions_{source}.csv", index=False)
    plot_roc_curves(labels, scores, mappings, folder, title=f"{model_name} / {classifier.name}")
    for flagged in table[table.get("sanity_flag", pd.Series(dtype=str)).fillna("") != ""]["class"]:
        LOG.warning("%s: %s", flagged, SANITY_FLAG)
    config_record = {**config.__dict__, "stage": "pretrained", "model_name": model_name}
    subgroups = []
    for by in config.by:
        groups = {"real": subgroup_values(test.frame, by, config.age_cuts),
                  "synthetic": synthetic_subgroups(synthetic.frame, real.frame, by, config.age_cuts)}
        part = subgroup_table(labels, scores, groups, [m.name for m in mappings], thresholds, clusters=clusters, by=by)
        if len(part) == 0:
            LOG.warning("--by %s: no image of the test split or the synthetic set has a %s", by, by)
        subgroups.append(part)
    write_run_rows(TABLE, table, folder, results_dir=results_dir, config=config_record, run_id=run_id)
    subgroup_rows = pd.concat(subgroups, ignore_index=True) if subgroups else pd.DataFrame()
    if len(subgroup_rows):
        for column, value in (("classifier", classifier.name), ("extra_info", table["extra_info"].iat[0]),
                              ("model_name", model_name)):
            subgroup_rows.insert(0, column, value)
        subgroup_rows["real_dataset"], subgroup_rows["real_split"] = real.dataset, config.real_split
        subgroup_rows["synthetic_dir"] = str(synthetic.root)
        write_run_rows(SUBGROUP_TABLE, subgroup_rows, folder, results_dir=results_dir, config=config_record,
                       run_id=run_id, copy_name="subgroups.csv")  # beside the stage's own metrics.csv
    return PretrainedOutcome(table, run_id, folder, leakage, predictions, subgroup_rows)


CASE_MIX_NOTE = ("enriched case mix: each class's negatives are only images with another of the split's classes, "
                 "so absolute AUROCs are higher than on all images; compare real with synthetic here, not with "
                 "other studies (build the split with --keep-other for the full case mix)")


def labelled_subset(test: SplitTable, test_labels: str) -> SplitTable:
    """The test rows whose labels come from ``test_labels``: ``all``, or ``physician`` (PadChest's physician-read
    labels, the split's ``label_source`` column; see :mod:`benchmark.utility.test_labels`)."""
    mask = test_label_mask(test, test_labels)
    if mask.all():
        return test
    frame = test.frame[mask].reset_index(drop=True)
    return SplitTable(frame, list(test.classes), test.dataset, test.source, test.image_root, dict(test.meta))


def synthetic_clusters(synthetic: SyntheticSet) -> np.ndarray:
    """One cluster id per synthetic image: its source patient when ``synthetic.csv`` carries ``patient_id``, else
    its source row (images of one prompt row), else the image itself; rows without either are their own cluster."""
    frame = synthetic.frame
    ids = np.array([f"image:{i}" for i in range(len(frame))], dtype=object)
    for column in ("source_row", "patient_id"):  # the later one wins where present
        if column in frame.columns:
            values = frame[column].fillna("").astype(str).str.strip().to_numpy()
            ids = np.where(values != "", np.char.add(f"{column}:", values.astype(str)).astype(object), ids)
    return ids


def _thresholds(real: SplitTable, classifier: Classifier, mappings: Sequence[ClassMapping],
                config: PretrainedConfig, forward) -> tuple[dict[str, float], dict[str, str],
                                                           dict[str, ValidationScores]]:
    """Per class threshold, where it came from (operating point, or chosen on real validation images), and for the
    latter the validation scores, so intervals can re-choose it."""
    if config.threshold == "operating-point":
        source = ("xrv calibrated operating point (0.5 after op_norm)" if classifier.calibrated
                  else "0.5 (the checkpoint is not calibrated; consider --threshold val-youden)")
        return ({m.name: 0.5 for m in mappings}, {m.name: source for m in mappings}, {})
    if config.threshold != "val-youden":
        raise ValueError(f"unknown threshold policy {config.threshold!r}; use operating-point or val-youden")
    val = real.subset("val")
    if len(val.frame) == 0:
        raise ValueError("--threshold val-youden needs real validation images (split == 'val') in the split CSV")
    probabilities = score_images(forward, val.image_paths(), classifier.input_size, config.batch_size,
                                 config.num_workers, progress="pretrained: scoring real validation images")
    scores = _class_score_matrix(probabilities, mappings, classifier.outputs)
    labels = val.labels()
    patients = val.frame["patient_id"].to_numpy()
    thresholds, sources, validation = {}, {}, {}
    for j, mapping in enumerate(mappings):
        known = ~np.isnan(labels[:, j])
        y = labels[known, j]
        if mapping.evaluable and 0 < y.sum() < len(y):
            thresholds[mapping.name] = youden_threshold(y, scores[known, j])
            sources[mapping.name] = (f"Youden J on {int(known.sum())} real validation images "
                                     f"({int(y.sum())} positive; re-chosen in every bootstrap resample)")
            validation[mapping.name] = ValidationScores(y.astype(int), scores[known, j],
                                                        cluster_codes(patients[known], int(known.sum())))
        else:
            thresholds[mapping.name] = 0.5
            sources[mapping.name] = "0.5 (validation images lack both labels)"
    return thresholds, sources, validation


def plot_roc_curves(labels: dict[str, np.ndarray], scores: dict[str, np.ndarray], mappings: Sequence[ClassMapping],
                    folder: Path, title: str = "") -> list[Path]:
    """One PNG per evaluable class with the ROC curve of each image source; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    written = []
    for j, mapping in enumerate(mappings):
        if not mapping.evaluable:
            continue
        figure, axis = plt.subplots(figsize=(4.2, 4.2), dpi=110)
        for source, colour in (("real", "tab:blue"), ("synthetic", "tab:orange")):
            known = ~np.isnan(labels[source][:, j])
            y, s = labels[source][known, j], scores[source][known, j]
            if len(y) and 0 < y.sum() < len(y):
                fpr, tpr, _ = roc_curve(y, s)
                axis.plot(fpr, tpr, color=colour, label=f"{source} (AUROC {auroc(y, s):.3f}, n={len(y)})")
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axis.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{mapping.name}\n{title}", xlim=(0, 1),
                 ylim=(0, 1))
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="lower right", fontsize=7)
        else:
            axis.text(0.5, 0.5, "no source has both labels", ha="center", fontsize=8)
        figure.tight_layout()
        path = folder / f"roc_{_slug(mapping.name)}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def _cell(row: pd.Series, metric: str) -> str:
    value = row.get(metric)
    if not isinstance(value, float) or math.isnan(value):
        return f"{metric} undefined"
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    return f"{metric} {value:.3f} [{low:.3f}, {high:.3f}]"


def format_table(table: pd.DataFrame) -> str:
    """The printed per-class table, prevalence-free figures first: AUROC, sensitivity at the target specificity,
    recall, specificity with CIs; then precision and accuracy beside the prevalence; the real-minus-synthetic AUROC
    gap and the smallest difference the data can detect. An undefined metric prints as "undefined"."""
    lines = []
    for _, row in table.iterrows():
        head = f"{row['class']:<22} {row['image_source']:<10}"
        if not row.get("evaluable", True):
            lines.append(f"{head} not evaluable: {row['not_evaluable_reason']}")
            continue
        counts = f"n={row['n']:<5} pos={row['n_positive']:<4} prev={row['prevalence']:.3f}"
        if not isinstance(row.get("auroc"), float) or math.isnan(row["auroc"]):
            lines.append(f"{head} {counts} AUROC undefined: both labels are needed")
            continue
        spec = f"sens@spec{row['sens_at_spec_target']:.2f}"
        cells = [_cell(row, "auroc"), _cell(row, "sens_at_spec").replace("sens_at_spec", spec),
                 *(_cell(row, m) for m in ("recall", "specificity", "precision", "accuracy", "f1"))]
        line = f"{head} {counts} " + "  ".join(cells)
        gap = row.get("auroc_diff_real_minus_synthetic")
        if isinstance(gap, float) and not math.isnan(gap):
            line += (f"  | real-synthetic AUROC {gap:+.3f} [{row['auroc_diff_ci_low']:+.3f}, "
                     f"{row['auroc_diff_ci_high']:+.3f}] p={row['auroc_diff_p_value']:.3g}")
            if not row.get("prevalence_comparable", True):
                line += f"  (prevalence x{row['prevalence_ratio']:.2g} of real: precision/accuracy not comparable)"
        mdd = row.get("auroc_mdd80")
        if isinstance(mdd, float) and math.isfinite(mdd) and row.get("underpowered"):
            line += f"  ~ can detect only AUROC differences >= {mdd:.2f} (80% power)"
        if row.get("proxy"):
            line += f"  (proxy: {row['proxy_note']})"
        if isinstance(row.get("comparison_note"), str) and row["comparison_note"]:
            line += f"  -- {row['comparison_note']}"
        if row.get("sanity_flag"):
            line += f"  !! {row['sanity_flag']}"
        lines.append(line)
    return "\n".join(lines)
