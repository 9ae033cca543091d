"""Pretrained-classifier utility (RoentGen Table 3 protocol): does a classifier find the labels in synthetic images
as well as in the real ones?

A pretrained classifier scores the real test images and the synthetic images made from the same prompts / labels.
Per class and image source: n, positives, AUROC, accuracy, precision, recall, specificity and F1 at a stated
threshold, each with a stratified bootstrap 95% CI, and the real-minus-synthetic difference with its CI and p-value
(unpaired: the images differ), and whether the classifier finds each class above chance at all: a one-sided
Mann-Whitney p-value of AUROC > 0.5, Holm-adjusted over the classes of one image source (``label_signal``).
The core (:func:`evaluate`) takes labels and scores and returns a table; the stage
function (:func:`run_pretrained_stage`) loads, guards against leakage, scores, writes and plots.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.classifiers import Classifier, load_classifier
from benchmark.data import SplitTable
from benchmark.label_mapping import ClassMapping, class_scores, map_classes
from benchmark.leakage import LeakageDecision, check_leakage
from benchmark.results import run_dir, upsert_rows
from benchmark.scoring import score_images
from benchmark.stats import (
    METRICS,
    SIGNAL_ALPHA,
    auroc_above_chance_p,
    bootstrap_metrics,
    holm_adjust,
    unpaired_difference,
)
from benchmark.synthetic import SyntheticSet

LOG = logging.getLogger(__name__)
TABLE = "utility_pretrained"
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


def youden_threshold(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (``sklearn.metrics.roc_curve``)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y_true, y_score)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def evaluate(
    labels: dict[str, np.ndarray],
    scores: dict[str, np.ndarray],
    mappings: Sequence[ClassMapping],
    thresholds: dict[str, float],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Metric table: one row per (image source, class).

    ``labels[source]`` is ``(N, C)`` with 1 / 0 / NaN (unknown, masked per class); ``scores[source]`` is ``(N, C)``
    class scores (NaN columns for classes that are not evaluable). Sources are ``real`` and ``synthetic``.
    Synthetic rows also carry the real-minus-synthetic difference of each metric with CI and p-value. Every row
    carries ``auroc_p_above_chance`` (one-sided Mann-Whitney p of AUROC > 0.5), its Holm adjustment over the
    evaluable classes of the same source (``auroc_p_above_chance_holm``) and ``label_signal`` (adjusted p below
    :data:`SIGNAL_ALPHA`): with several classes, "some class has a CI above 0.5" happens by chance alone far more
    often than 5% of the time; the adjusted test keeps that family-wise rate at 5%.
    """
    rows: list[dict[str, Any]] = []
    for j, mapping in enumerate(mappings):
        per_source: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for source in labels:
            known = ~np.isnan(labels[source][:, j])
            y, s = labels[source][known, j].astype(int), scores[source][known, j]
            per_source[source] = (y, s)
            row: dict[str, Any] = {"image_source": source, "class": mapping.name,
                                   "classifier_output": mapping.output or "", "evaluable": mapping.evaluable,
                                   "not_evaluable_reason": mapping.reason, "n": int(known.sum()),
                                   "positives": int(y.sum()), "n_unknown_label": int((~known).sum())}
            if mapping.evaluable and len(y):
                threshold = thresholds[mapping.name]
                row["threshold"] = threshold
                estimates = bootstrap_metrics(y, s, threshold, n_resamples=n_resamples, seed=seed)
                for metric in METRICS:
                    row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = estimates[metric]
                row["sanity_flag"] = (SANITY_FLAG if source == "real" and row["auroc_ci_high"] < 0.5 else "")
                row["auroc_p_above_chance"] = auroc_above_chance_p(y, s)
            rows.append(row)
        if mapping.evaluable and {"real", "synthetic"} <= per_source.keys():
            (y_real, s_real), (y_syn, s_syn) = per_source["real"], per_source["synthetic"]
            if len(y_real) and len(y_syn):
                differences = unpaired_difference(y_real, s_real, y_syn, s_syn, thresholds[mapping.name],
                                                  n_resamples=n_resamples, seed=seed)
                target = next(r for r in rows if r["class"] == mapping.name and r["image_source"] == "synthetic")
                for metric, (diff, low, high, p) in differences.items():
                    name = "auroc_delong" if metric == "auroc_delong_p" else metric
                    target[f"{name}_diff_real_minus_synthetic"] = diff
                    if metric == "auroc_delong_p":
                        target["auroc_delong_p_value"] = p
                        continue
                    target[f"{name}_diff_ci_low"], target[f"{name}_diff_ci_high"] = low, high
                    target[f"{name}_diff_p_value"] = p
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
) -> PretrainedOutcome:
    """Guard, score, evaluate and write one model's pretrained-classifier utility (SPEC §4 rows + run files)."""
    from benchmark.provenance import new_run_id

    classifier = classifier or load_classifier(config.classifier, config.cache_dir)
    trained_on = classifier.trained_on or _xrv_trained_on(classifier.name)
    leakage = check_leakage(real.dataset, classifier.name, trained_on, config.allow_leakage)
    if leakage.leaky:
        LOG.warning("leakage allowed: %s", leakage.reason)
    test = real.subset(config.real_split)
    classes = list(real.classes)
    missing = [c for c in classes if c not in synthetic.frame.columns]
    if missing:
        raise ValueError(f"{synthetic.root}/synthetic.csv has no label column {missing[0]!r}; the synthetic set must "
                         "carry the labels of the rows it was made from")
    synthetic_labels = SyntheticSet(synthetic.root, synthetic.frame, classes, synthetic.manifest).labels()
    mappings = map_classes(classes, classifier.outputs, config.label_map)
    for mapping in mappings:
        if not mapping.evaluable:
            LOG.warning("class %r is not evaluable with %s: %s", mapping.name, classifier.name, mapping.reason)

    def forward(batch):
        return classifier.predict(batch)

    probabilities = {
        "real": score_images(forward, test.image_paths(), classifier.input_size, config.batch_size,
                             config.num_workers),
        "synthetic": score_images(forward, synthetic.image_paths(), classifier.input_size, config.batch_size,
                                  config.num_workers),
    }
    labels = {"real": test.labels(), "synthetic": synthetic_labels}
    scores = {source: _class_score_matrix(p, mappings, classifier.outputs) for source, p in probabilities.items()}
    thresholds, threshold_source = _thresholds(real, classifier, mappings, config, forward)
    table = evaluate(labels, scores, mappings, thresholds, n_resamples=config.n_resamples, seed=config.seed)
    table.insert(0, "classifier", classifier.name)
    table.insert(0, "extra_info", extra_info)
    table.insert(0, "model_name", model_name)
    table["threshold_source"] = table["class"].map(threshold_source).fillna("")
    table["leakage"] = leakage.status
    table["allow_leakage"] = config.allow_leakage
    table["real_dataset"] = real.dataset
    table["real_split"] = config.real_split
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
    upsert_rows(TABLE, table, results_dir=results_dir, config=config_record, run_id=run_id)
    table.to_csv(folder / "metrics.csv", index=False)
    return PretrainedOutcome(table, run_id, folder, leakage, predictions)


def _xrv_trained_on(name: str) -> tuple[str, ...]:
    from benchmark.leakage import XRV_TRAINED_ON

    return XRV_TRAINED_ON.get(name, ())


def _thresholds(real: SplitTable, classifier: Classifier, mappings: Sequence[ClassMapping],
                config: PretrainedConfig, forward) -> tuple[dict[str, float], dict[str, str]]:
    """Per class threshold and where it came from (operating point, or chosen on real validation images)."""
    if config.threshold == "operating-point":
        source = ("xrv calibrated operating point (0.5 after op_norm)" if classifier.calibrated
                  else "0.5 (the checkpoint is not calibrated; consider --threshold val-youden)")
        return ({m.name: 0.5 for m in mappings}, {m.name: source for m in mappings})
    if config.threshold != "val-youden":
        raise ValueError(f"unknown threshold policy {config.threshold!r}; use operating-point or val-youden")
    val = real.subset("val")
    if len(val.frame) == 0:
        raise ValueError("--threshold val-youden needs real validation images (split == 'val') in the split CSV")
    probabilities = score_images(forward, val.image_paths(), classifier.input_size, config.batch_size,
                                 config.num_workers)
    scores = _class_score_matrix(probabilities, mappings, classifier.outputs)
    labels = val.labels()
    thresholds, sources = {}, {}
    for j, mapping in enumerate(mappings):
        known = ~np.isnan(labels[:, j])
        y = labels[known, j]
        if mapping.evaluable and 0 < y.sum() < len(y):
            thresholds[mapping.name] = youden_threshold(y, scores[known, j])
            sources[mapping.name] = f"Youden J on {int(known.sum())} real validation images"
        else:
            thresholds[mapping.name] = 0.5
            sources[mapping.name] = "0.5 (validation images lack both labels)"
    return thresholds, sources


def plot_roc_curves(labels: dict[str, np.ndarray], scores: dict[str, np.ndarray], mappings: Sequence[ClassMapping],
                    folder: Path, title: str = "") -> list[Path]:
    """One PNG per evaluable class with the ROC curve of each image source; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

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
                axis.plot(fpr, tpr, color=colour, label=f"{source} (AUROC {roc_auc_score(y, s):.3f}, n={len(y)})")
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


def format_table(table: pd.DataFrame) -> str:
    """The printed per-class table: AUROC, accuracy, precision, recall, F1 with CIs per source, and the gap."""
    lines = []
    for _, row in table.iterrows():
        if not row.get("evaluable", True):
            lines.append(f"{row['class']:<22} {row['image_source']:<10} not evaluable: {row['not_evaluable_reason']}")
            continue
        if not isinstance(row.get("auroc"), float) or math.isnan(row["auroc"]):
            lines.append(f"{row['class']:<22} {row['image_source']:<10} n={row['n']:<5} pos={row['positives']:<5} "
                         "AUROC undefined: both labels are needed")
            continue
        cells = [f"{m} {row[m]:.3f} [{row[m + '_ci_low']:.3f}, {row[m + '_ci_high']:.3f}]"
                 for m in ("auroc", "accuracy", "precision", "recall", "f1")]
        line = f"{row['class']:<22} {row['image_source']:<10} n={row['n']:<5} pos={row['positives']:<5} " + \
            "  ".join(cells)
        gap = row.get("auroc_diff_real_minus_synthetic")
        if isinstance(gap, float) and not math.isnan(gap):
            line += (f"  | real-synthetic AUROC {gap:+.3f} [{row['auroc_diff_ci_low']:+.3f}, "
                     f"{row['auroc_diff_ci_high']:+.3f}] p={row['auroc_diff_p_value']:.3g}")
        if row.get("sanity_flag"):
            line += f"  !! {row['sanity_flag']}"
        lines.append(line)
    return "\n".join(lines)
