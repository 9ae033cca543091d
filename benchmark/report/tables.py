"""``./scripts/report.sh``: leaderboard and plots of everything in ``results/``, as Markdown and one static HTML page.

Owns the report: :func:`build_report` (the core: a results folder in; ``report.md``, ``report.html`` and
``figures/*.png`` out, and what each section found) and :func:`main` (the CLI). Nothing is computed afresh: every
number comes from the result tables of SPEC §4 (read with :func:`benchmark.core.results.read_results`) and every curve
from the per-run files under ``results/runs/<run_id>/``.

Sections, in this order (HTML anchors in brackets):

* Leaderboard [``leaderboard``]: one row per model with the headline figure of each stage that ran;
* Pretrained-classifier utility [``pretrained``]: per class AUROC / accuracy / precision / recall / F1 with CIs,
  the real test images shown once per classifier beside each model's synthetic images; an AUROC bar plot with CI
  bars and one ROC figure per class (from the runs' ``predictions_*.csv``);
* Retrained-classifier utility [``retrained``]: the RoentGen-shaped table (mean over seeds [CI], change vs real)
  and data-size curves (AUROC against the number of synthetic images, one line per setting, CI bands);
* Image quality [``image-quality``]: FID / KID / precision / recall / density / coverage per model and class, and
  bar plots of FID, precision, recall and coverage;
* Sample images [``samples``]: per class a grid of positive images, the real ones beside each model's;
* Memorisation [``memorisation``]: flagged shares and the closest synthetic / training pairs.

A stage that has not run (no CSV, or an empty one) is shown as missing with the command that writes it; a missing
run folder or image is reported (with the run id or file) and the rest renders. ``report.html`` is one static file:
images embedded as ``data:`` URIs, inline CSS, no script, and a Content-Security-Policy that forbids any request.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.results import ResultsFileError, read_results, results_dir
from benchmark.core.stats import SIGNAL_ALPHA
from benchmark.data import DataError, atomic_write_text, load_image

__all__ = ["SECTIONS", "Figure", "Note", "ReportResult", "Section", "Table", "build_report", "main"]

#: (anchor, heading) of every section, in report order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("leaderboard", "Leaderboard"),
    ("pretrained", "Pretrained-classifier utility"),
    ("retrained", "Retrained-classifier utility"),
    ("image-quality", "Image quality"),
    ("samples", "Sample images"),
    ("memorisation", "Memorisation"),
)
#: what writes each table, quoted when a stage is missing.
STAGE_COMMANDS: dict[str, str] = {
    "utility_pretrained": "./scripts/utility_metrics.sh --real CSV --synthetic DIR --model-name NAME",
    "utility_retrained": "./scripts/utility_metrics.sh --stage retrained --real CSV --synthetic DIR --model-name NAME",
    "image_quality_metrics": "./scripts/image_quality_metrics.sh --real CSV --synthetic DIR --model-name NAME "
                             "--per-class",
    "privacy_metrics": "./scripts/privacy_metrics.sh --real CSV --synthetic DIR --model-name NAME --reid-train",
    "alignment_metrics": "./scripts/privacy_metrics.sh --real CSV --synthetic DIR --model-name NAME "
                         "--alignment-model MODEL",
}
# prevalence-free figures first (AUROC, sensitivity at a fixed specificity, recall, specificity), then the ones that
# depend on the prevalence of the images scored (precision, accuracy) and F1
PRETRAINED_METRICS: tuple[str, ...] = ("auroc", "sens_at_spec", "recall", "specificity", "precision", "accuracy", "f1")
#: the columns of the RoentGen-shaped table; mirrors ``benchmark.utility.retrained.TABLE_METRICS`` (not imported:
#: that module loads torch, which the report does not need).
RETRAINED_METRICS: tuple[str, ...] = ("auroc", "sens_at_spec", "recall", "specificity", "accuracy", "precision")
PRIMARY_DELTA = "retrained Δ AUROC vs real (pre-specified setting)"
QUALITY_PLOTS: tuple[tuple[str, str], ...] = (("fid", "FID (lower is better)"), ("precision", "precision"),
                                              ("recall", "recall"), ("coverage", "coverage"))
REAL = "real"
MISSING = "–"
DPI = 90
THUMBNAIL = 64
DEFAULT_SAMPLES = 6
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
           "tab:cyan", "tab:grey")


# ------------------------------------------------------------------------------------------------ the document


@dataclass
class Table:
    """A table: header and rows of display text; ``caption`` above it."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    """A PNG written under ``<out>/figures/``; embedded in the HTML page, linked relatively from the Markdown."""

    path: Path
    caption: str


@dataclass
class Note:
    """A paragraph. ``kind``: ``text``, ``missing`` (something the report could not show) or ``warning``.
    Text between backticks is shown as code."""

    text: str
    kind: str = "text"


Block = Table | Figure | Note


@dataclass
class Section:
    """One section of the report: ``status`` is ``present`` or ``missing`` (its stage has not run); ``missing``
    lists what could not be shown (a run folder, a figure, an image) while the rest rendered."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    status: str = "present"
    missing: list[str] = field(default_factory=list)

    def add(self, block: Block) -> None:
        self.blocks.append(block)

    def note(self, text: str) -> None:
        self.blocks.append(Note(text))

    def warn(self, text: str) -> None:
        self.blocks.append(Note(text, "warning"))

    def lack(self, text: str) -> None:
        """Something this section cannot show; recorded in :attr:`missing` and shown in the report."""
        self.missing.append(text)
        self.blocks.append(Note(text, "missing"))

    def not_run(self, text: str) -> None:
        """The section's input does not exist: the whole section is missing."""
        self.status = "missing"
        self.lack(text)

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: the two documents, every figure, the sections (in report order) and the
    leaderboard as numbers (display columns; NaN where a stage is missing)."""

    markdown: Path
    html: Path
    figures: list[Path]
    sections: list[Section]
    leaderboard: pd.DataFrame
    seconds: float = 0.0

    def section(self, section_id: str) -> Section:
        return next(s for s in self.sections if s.id == section_id)


# ---------------------------------------------------------------------------------------------- small helpers


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")
    return slug or "x"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def _fmt(value: Any, digits: int = 3, sign: bool = False) -> str:
    if not _finite(value):
        return MISSING
    return f"{float(value):+.{digits}f}" if sign else f"{float(value):.{digits}f}"


def _fmt_ci(value: Any, low: Any, high: Any, digits: int = 3) -> str:
    text = _fmt(value, digits)
    if text != MISSING and _finite(low) and _finite(high):
        text += f" [{float(low):.{digits}f}, {float(high):.{digits}f}]"
    return text


def _positives(f: _Frame, i: int) -> str:
    """A row's positives: ``n_positive`` (rows since the prevalence columns), else the older ``positives``."""
    return _count(f.text("n_positive").iloc[i] or f.text("positives").iloc[i])


def _count(text: str) -> str:
    """A count as stored (``2``, ``2.0``) shown as an integer; anything else unchanged, empty as missing."""
    text = str(text).strip()
    try:
        value = float(text)
    except ValueError:
        return text or MISSING
    return str(int(value)) if math.isfinite(value) and value == int(value) else text


def _fmt_p(value: Any) -> str:
    return f"{float(value):.3g}" if _finite(value) else MISSING


def _stars(p: Any) -> str:
    """Significance marks as the printed retrained table uses them."""
    if not _finite(p):
        return ""
    p = float(p)
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else " ns"


def _label(model: str, extra: str) -> str:
    return f"{model} [{extra}]" if extra else model


class _Frame:
    """A result table with typed access: text cells stay text; :meth:`num` converts a column to float and records
    (once) every cell that is not a number, so the report can name the file, row and column."""

    def __init__(self, table: str, frame: pd.DataFrame) -> None:
        self.table = table
        self.frame = frame.reset_index(drop=True)
        self.problems: list[str] = []
        self._checked: set[str] = set()

    def __len__(self) -> int:
        return len(self.frame)

    def text(self, column: str) -> pd.Series:
        if column not in self.frame:
            return pd.Series([""] * len(self.frame), index=self.frame.index, dtype=str)
        return self.frame[column].fillna("").astype(str).str.strip()

    def num(self, column: str) -> pd.Series:
        if column not in self.frame:
            return pd.Series(np.nan, index=self.frame.index, dtype=float)
        raw = self.frame[column].fillna("").astype(str).str.strip()
        values = pd.to_numeric(raw, errors="coerce")
        if column not in self._checked:
            self._checked.add(column)
            bad = (raw != "") & values.isna() & ~raw.str.lower().isin(["nan", "inf", "-inf"])
            for index in np.flatnonzero(bad.to_numpy())[:3]:
                self.problems.append(f"`{self.table}.csv` row {index + 1} (line {index + 2}), column `{column}`: "
                                     f"{raw.iloc[index]!r} is not a number (shown as {MISSING})")
        return values.astype(float)


def _load(table: str, folder: Path) -> _Frame:
    return _Frame(table, read_results(table, folder))


def _run_folder(results: Path, run_id: str) -> Path | None:
    """``<results>/runs/<run_id>`` when the id is a plain folder name; never created."""
    if not run_id or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", run_id) or ".." in run_id:
        return None
    return results / "runs" / run_id


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class _Figures:
    """Writes figures into ``<out>/figures`` (atomically, unique names) and remembers them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def _target(self, name: str) -> Path:
        stem, n = _slug(name), 1
        path = self.folder / f"{stem}.png"
        while path in self.written:
            n += 1
            path = self.folder / f"{stem}_{n}.png"
        return path

    def save(self, figure: Any, name: str) -> Path:
        plt = _pyplot()
        path = self._target(name)
        tmp = path.with_name(f".{path.name}.tmp.png")
        try:
            figure.savefig(tmp, dpi=DPI, bbox_inches="tight", pad_inches=0.08)
            os.replace(tmp, path)
        finally:
            plt.close(figure)
            tmp.unlink(missing_ok=True)
        self.written.append(path)
        return path

    def copy(self, source: Path, name: str) -> Path:
        path = self._target(name)
        tmp = path.with_name(f".{path.name}.tmp.png")
        tmp.write_bytes(source.read_bytes())
        os.replace(tmp, path)
        self.written.append(path)
        return path

    def remove_stale(self) -> None:
        """Delete PNGs of an earlier build that this one did not write (the folder is the report's own)."""
        keep = set(self.written)
        for path in self.folder.glob("*.png"):
            if path not in keep:
                path.unlink(missing_ok=True)


def _grouped_bars(axis: Any, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float], Sequence[float],
                                                                       Sequence[float]]]) -> None:
    """Bars per group (x) and series (colour), with CI error bars where both bounds are finite."""
    x = np.arange(len(groups), dtype=float)
    width = 0.8 / max(1, len(series))
    for k, (name, values, lows, highs) in enumerate(series):
        values = np.asarray(values, float)
        lows, highs = np.asarray(lows, float), np.asarray(highs, float)
        offset = x - 0.4 + width * (k + 0.5)
        axis.bar(offset, np.nan_to_num(values), width=width * 0.92, color=COLOURS[k % len(COLOURS)], label=name)
        ok = np.isfinite(values) & np.isfinite(lows) & np.isfinite(highs)
        if ok.any():
            err = np.vstack([np.clip(values[ok] - lows[ok], 0, None), np.clip(highs[ok] - values[ok], 0, None)])
            axis.errorbar(offset[ok], values[ok], yerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        for xi in offset[~np.isfinite(values)]:
            axis.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
    axis.set_xticks(x)
    axis.set_xticklabels(groups, fontsize=7, rotation=15 if len(groups) > 3 else 0)


# ------------------------------------------------------------------------------------------ pretrained stage


@dataclass
class _Pretrained:
    frame: _Frame
    classifiers: list[str]
    classes: dict[str, list[str]]
    models: list[tuple[str, str]]


def _pretrained_view(frame: _Frame) -> _Pretrained | None:
    if len(frame) == 0:
        return None
    classifiers = list(dict.fromkeys(frame.text("classifier")))
    classes = {c: list(dict.fromkeys(frame.text("class")[frame.text("classifier") == c])) for c in classifiers}
    synthetic = frame.text("image_source") != REAL
    models = list(dict.fromkeys(zip(frame.text("model_name")[synthetic], frame.text("extra_info")[synthetic],
                                    strict=True)))
    return _Pretrained(frame, classifiers, classes, models)


def _pretrained_rows(view: _Pretrained, classifier: str, name: str) -> list[tuple[str, pd.Series, int]]:
    """(row label, row index, colour index) for one class: the real rows once (one per distinct real result), then
    each model's synthetic row."""
    f = view.frame
    mask = (f.text("classifier") == classifier) & (f.text("class") == name)
    real = f.frame.index[mask & (f.text("image_source") == REAL)]
    distinct: dict[tuple[str, ...], int] = {}
    for i in real:
        key = (f.text("n").iloc[i], _positives(f, i), f.text("auroc").iloc[i])
        distinct.setdefault(key, i)
    out = []
    for i in distinct.values():
        owner = _label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i])
        label = REAL if len(distinct) == 1 else f"real (run of {owner})"
        out.append((label, i, 0))
    for k, (model, extra) in enumerate(view.models, start=1):
        hit = f.frame.index[mask & (f.text("image_source") != REAL) & (f.text("model_name") == model)
                            & (f.text("extra_info") == extra)]
        if len(hit):
            out.append((_label(model, extra), hit[0], k))
    return out


def _pretrained_section(section: Section, view: _Pretrained | None, results: Path, figures: _Figures) -> None:
    if view is None:
        section.not_run(f"Not run yet: `{STAGE_COMMANDS['utility_pretrained']}` writes `utility_pretrained.csv` "
                        "(with nothing configured it runs the built-in demo).")
        return
    f = view.frame
    section.note("A pretrained classifier scores the real test images and the synthetic images made from the same "
                 "rows; each metric with its 95% CI (the rows' `ci_method` says which). Sensitivity, specificity and "
                 "AUROC do not depend on how common the class is among the images; precision and accuracy do, so "
                 "they are shown beside the prevalence and, for synthetic images, also at the real test prevalence. "
                 "'detectable' is the smallest real − synthetic AUROC difference these sizes detect with 80% power: "
                 "above 0.1 (marked ~) a 'no significant difference' does not mean 'equal'. The real test images "
                 "are shown once per classifier.")
    names = {"auroc": "AUROC", "sens_at_spec": "sens @ spec 0.90", "recall": "sensitivity"}
    columns = ["class", "images", "n (positives, prevalence)",
               *[names.get(m, m) + " [95% CI]" for m in PRETRAINED_METRICS],
               "precision at real prevalence", "real − synthetic AUROC [95% CI]", "p", "detectable"]
    for classifier in view.classifiers:
        rows = []
        for name in view.classes[classifier]:
            for label, i, _ in _pretrained_rows(view, classifier, name):
                head = [name, label, f"{_count(f.text('n').iloc[i])} ({_positives(f, i)}, "
                                     f"{_fmt(f.num('prevalence').iloc[i], 3)})"]
                if f.text("evaluable").iloc[i].lower() == "false":
                    reason = f.text("not_evaluable_reason").iloc[i]
                    rows.append(head + [f"not evaluable: {reason}"] + [""] * (len(columns) - 4))
                    continue
                cells = [_fmt_ci(f.num(m).iloc[i], f.num(f"{m}_ci_low").iloc[i], f.num(f"{m}_ci_high").iloc[i])
                         for m in PRETRAINED_METRICS]
                at_real = _fmt_ci(f.num("precision_at_real_prevalence").iloc[i],
                                  f.num("precision_at_real_prevalence_ci_low").iloc[i],
                                  f.num("precision_at_real_prevalence_ci_high").iloc[i])
                if f.text("prevalence_comparable").iloc[i].lower() == "false":
                    at_real += " (prevalence differs)"
                gap = _fmt_ci(f.num("auroc_diff_real_minus_synthetic").iloc[i], f.num("auroc_diff_ci_low").iloc[i],
                              f.num("auroc_diff_ci_high").iloc[i])
                mdd = f.num("auroc_mdd80").iloc[i]
                detectable = MISSING if not _finite(mdd) else f"{mdd:.2f}" + (" ~" if mdd > 0.1 else "")
                rows.append(head + cells + [at_real, gap, _fmt_p(f.num("auroc_diff_p_value").iloc[i]), detectable])
        mask = f.text("classifier") == classifier
        threshold = next((t for t in f.text("threshold_source")[mask] if t), "")
        caption = f"Classifier `{classifier}`" + (f"; threshold: {threshold}" if threshold else "")
        section.add(Table(columns, rows, caption))
        for flag_i in f.frame.index[mask & (f.text("sanity_flag") != "")]:
            section.warn(f"{f.text('class').iloc[flag_i]} ({classifier}): {f.text('sanity_flag').iloc[flag_i]}")
        leaky = sorted(set(f.text("leakage")[mask]) - {"", "none"})
        for status in leaky:
            section.warn(f"leakage ({classifier}): {status}")
        section.add(_auroc_bars(view, classifier, figures))
    _roc_figures(section, view, results, figures)


def _auroc_bars(view: _Pretrained, classifier: str, figures: _Figures) -> Figure:
    plt = _pyplot()
    f = view.frame
    names = view.classes[classifier]
    series: dict[str, tuple[int, list[float], list[float], list[float]]] = {}
    for j, name in enumerate(names):
        for label, i, colour in _pretrained_rows(view, classifier, name):
            entry = series.setdefault(label, (colour, [np.nan] * len(names), [np.nan] * len(names),
                                              [np.nan] * len(names)))
            entry[1][j], entry[2][j], entry[3][j] = (f.num("auroc").iloc[i], f.num("auroc_ci_low").iloc[i],
                                                     f.num("auroc_ci_high").iloc[i])
    figure, axis = plt.subplots(figsize=(max(6.0, 1.5 * len(names) + 2.5), 3.6))
    _grouped_bars(axis, names, [(label, v, lo, hi) for label, (_, v, lo, hi) in series.items()])
    axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axis.set(ylim=(0, 1.05), ylabel="AUROC (95% CI)", title=f"Pretrained classifier {classifier}: AUROC per class")
    axis.title.set_fontsize(9)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    path = figures.save(figure, f"pretrained_auroc_{classifier}")
    return Figure(path, f"AUROC per class with 95% CI bars: real test images and each model's synthetic images "
                        f"(classifier {classifier}; dotted line: chance)")


def _read_predictions(path: Path, cache: dict[Path, pd.DataFrame | None]) -> pd.DataFrame | None:
    if path not in cache:
        try:
            cache[path] = pd.read_csv(path) if path.is_file() else None
        except (OSError, ValueError, pd.errors.ParserError):
            cache[path] = None
    return cache[path]


def _roc_figures(section: Section, view: _Pretrained, results: Path, figures: _Figures) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    f = view.frame
    cache: dict[Path, pd.DataFrame | None] = {}
    for classifier in view.classifiers:
        by_class = f.text("classifier") == classifier
        sources: list[tuple[str, pd.DataFrame | None, int]] = []  # (label, predictions, colour)
        real = None
        for i in f.frame.index[by_class]:
            folder = _run_folder(results, f.text("run_id").iloc[i])
            if folder is not None:
                real = _read_predictions(folder / "predictions_real.csv", cache)
            if real is not None:
                break
        if real is None:
            section.lack(f"ROC curves of the real test images ({classifier}): no run folder under "
                         f"`{results / 'runs'}` holds `predictions_real.csv`")
        sources.append((REAL, real, 0))
        for k, (model, extra) in enumerate(view.models, start=1):
            hit = f.frame.index[by_class & (f.text("image_source") != REAL) & (f.text("model_name") == model)
                                & (f.text("extra_info") == extra)]
            if not len(hit):
                continue
            run_id = f.text("run_id").iloc[hit[0]]
            folder = _run_folder(results, run_id)
            predictions = None if folder is None else _read_predictions(folder / "predictions_synthetic.csv", cache)
            if predictions is None:
                section.lack(f"ROC curve of {_label(model, extra)} ({classifier}): run folder `runs/{run_id}` or its "
                             "`predictions_synthetic.csv` is missing")
            sources.append((_label(model, extra), predictions, k))
        if all(p is None for _, p, _ in sources):
            section.lack(f"ROC figures ({classifier}): no per-image predictions found")
            continue
        for name in view.classes[classifier]:
            figure, axis = plt.subplots(figsize=(4.4, 4.0))
            drawn = 0
            for label, predictions, colour in sources:
                if predictions is None or f"label:{name}" not in predictions or f"score:{name}" not in predictions:
                    continue
                y = pd.to_numeric(predictions[f"label:{name}"], errors="coerce").to_numpy(float)
                s = pd.to_numeric(predictions[f"score:{name}"], errors="coerce").to_numpy(float)
                ok = np.isfinite(y) & np.isfinite(s)
                y, s = y[ok], s[ok]
                if not len(y) or not 0 < y.sum() < len(y):
                    continue
                fpr, tpr, _ = roc_curve(y, s)
                axis.plot(fpr, tpr, color=COLOURS[colour % len(COLOURS)], linewidth=1.2,
                          label=f"{label} (AUROC {roc_auc_score(y, s):.3f}, n={len(y)})")
                drawn += 1
            if not drawn:
                plt.close(figure)
                section.lack(f"ROC figure of {name} ({classifier}): no source has scores and both labels")
                continue
            axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
            axis.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
            axis.set_title(f"{name}\n{classifier}", fontsize=8)
            axis.legend(loc="lower right", fontsize=6)
            figure.tight_layout()
            path = figures.save(figure, f"roc_{classifier}_{name}")
            section.add(Figure(path, f"ROC curves of {name}: real test images and each model's synthetic images "
                                     f"(classifier {classifier})"))


# ------------------------------------------------------------------------------------------- retrained stage


def _retrained_section(section: Section, frame: _Frame, figures: _Figures) -> None:
    if len(frame) == 0:
        section.not_run(f"Not run yet: `{STAGE_COMMANDS['utility_retrained']}` writes `utility_retrained.csv`.")
        return
    means = frame.text("seed") == "mean"
    if not means.any():
        section.not_run("`utility_retrained.csv` has no `seed = mean` rows (the stage writes them at the end of a "
                        "sweep): rerun the sweep to finish it.")
        return
    f = frame
    architecture = next((a for a in f.text("architecture")[means] if a), "DenseNet-121")
    keys = list(dict.fromkeys(zip(f.text("model_name")[means], f.text("extra_info")[means], strict=True)))
    names = {"auroc": "AUROC", "sens_at_spec": "sens @ spec 0.90", "recall": "sensitivity"}
    columns = ["setting", "n real", "n synthetic", "seeds (train +)",
               *[names.get(m, m) + " [95% CI] Δ vs real" for m in RETRAINED_METRICS], "detectable", "AUROC vs real"]
    for model, extra in keys:
        mine = means & (f.text("model_name") == model) & (f.text("extra_info") == extra)
        baseline = next((b for b in f.text("baseline")[mine] if b), "")
        family = next((h for h in f.text("holm_family")[mine] if h), "each metric over settings x classes")
        section.note(f"**{_label(model, extra)}**: retrained {architecture}, selected on real val and tested on real "
                     f"test images; mean over seeds [95% CI: seed spread + test-set sampling, patients resampled], "
                     f"then the change vs {baseline or 'the real baseline'} (seed-mean test, Welch t; Holm-adjusted "
                     f"within {family}: `*` p<0.05, `**` p<0.01, `***` p<0.001, `ns` not significant). Settings with "
                     "fewer than 3 seeds (`†`) get no test: their interval covers test-set sampling only. Accuracy "
                     "and precision are at the test prevalence given in each caption. 'detectable': the smallest "
                     "AUROC change these sizes detect with 80% power (above 0.1, `~`: 'ns' is not evidence of "
                     "equality).")
        for name in dict.fromkeys(f.text("class")[mine]):
            index = f.frame.index[mine & (f.text("class") == name)]
            first = index[0]
            rows = []
            for i in index:
                spec = f.text("setting_spec").iloc[i] or f.text("setting").iloc[i]
                cells = []
                for m in RETRAINED_METRICS:
                    cell = _fmt_ci(f.num(m).iloc[i], f.num(f"{m}_ci_low").iloc[i], f.num(f"{m}_ci_high").iloc[i])
                    diff = f.num(f"{m}_diff_vs_real").iloc[i]
                    if cell != MISSING and _finite(diff):
                        cell += f" {diff:+.3f}{_stars(f.num(f'{m}_p_vs_real_holm').iloc[i])}"
                    cells.append(cell)
                seeds = f.text("seeds").iloc[i]
                n_seeds = _count(f.text("n_seeds").iloc[i] or (str(len(seeds.split(","))) if seeds else ""))
                if n_seeds.isdigit() and int(n_seeds) < 3:
                    n_seeds += " †"
                if _finite(f.num("train_positives").iloc[i]):
                    n_seeds += f" ({f.num('train_positives').iloc[i]:.0f} +)"
                mdd = f.num("auroc_mdd80").iloc[i]
                detectable = MISSING if not _finite(mdd) else f"{mdd:.2f}" + (" ~" if mdd > 0.1 else "")
                rows.append([spec + (" (baseline)" if spec == baseline else ""), _count(f.text("n_real").iloc[i]),
                             _count(f.text("n_synthetic").iloc[i]), n_seeds, *cells, detectable,
                             f.text("auroc_vs_real").iloc[i]])
            prevalence = f.num("prevalence").iloc[first]
            caption = (f"{_label(model, extra)} / {name} (real test images: n={_count(f.text('n_test').iloc[first])}, "
                       f"{_positives(f, first)} positive"
                       + (f", prevalence {prevalence:.3f})" if _finite(prevalence) else ")"))
            section.add(Table(columns, rows, caption))
        section.add(_data_size_curves(f, mine, _label(model, extra), figures))


def _data_size_curves(f: _Frame, mine: pd.Series, label: str, figures: _Figures) -> Figure:
    plt = _pyplot()
    names = list(dict.fromkeys(f.text("class")[mine]))
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1.6, 2.8 * nrows), squeeze=False)
    settings = list(dict.fromkeys(f.text("setting")[mine]))
    colour = {s: COLOURS[k % len(COLOURS)] for k, s in enumerate(settings)}
    n_syn, auroc = f.num("n_synthetic"), f.num("auroc")
    low, high, n_real = f.num("auroc_ci_low"), f.num("auroc_ci_high"), f.num("n_real")
    for j, name in enumerate(names):
        axis = axes[j // ncols][j % ncols]
        for setting in settings:
            index = f.frame.index[mine & (f.text("class") == name) & (f.text("setting") == setting)]
            order = index[np.argsort(n_syn.iloc[index].to_numpy(), kind="stable")]
            x, y = n_syn.iloc[order].to_numpy(), auroc.iloc[order].to_numpy()
            lo, hi = low.iloc[order].to_numpy(), high.iloc[order].to_numpy()
            if len(x) and np.all(np.nan_to_num(x) == 0):  # real images only: a reference line across the plot
                for k in range(len(x)):
                    axis.axhline(y[k], color=colour[setting], linestyle="--", linewidth=1,
                                 label=f"{setting} (n_real={_fmt(n_real.iloc[order[k]], 0)})" if k == 0 else None)
                    if np.isfinite(lo[k]) and np.isfinite(hi[k]):
                        axis.axhspan(lo[k], hi[k], color=colour[setting], alpha=0.12)
                continue
            axis.plot(x, y, marker="o", markersize=4, color=colour[setting], label=setting)
            band = np.isfinite(lo) & np.isfinite(hi)
            if band.sum() >= 2:
                axis.fill_between(x[band], lo[band], hi[band], color=colour[setting], alpha=0.18)
            if band.any():
                err = np.vstack([np.clip(y[band] - lo[band], 0, None), np.clip(hi[band] - y[band], 0, None)])
                axis.errorbar(x[band], y[band], yerr=err, fmt="none", ecolor=colour[setting], elinewidth=0.8,
                              capsize=2)
        axis.axhline(0.5, color="grey", linestyle=":", linewidth=0.8)
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("synthetic training images", fontsize=7)
        axis.set_ylabel("AUROC (mean over seeds, 95% CI)", fontsize=7)
        axis.tick_params(labelsize=7)
        axis.set_ylim(0, 1.02)
    for j in range(len(names), nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper right", fontsize=7)
    figure.suptitle(f"Retrained classifiers, {label}: AUROC against the number of synthetic images", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1 - 1.6 / (3.2 * ncols + 1.6), 0.95))
    path = figures.save(figure, f"retrained_data_size_{label}")
    return Figure(path, f"Data-size curves of {label}: test AUROC (mean over seeds, 95% CI band) against the number "
                        "of synthetic training images, one line per setting; dashed: real images only")


# ------------------------------------------------------------------------------------------ image quality


def _quality_section(section: Section, frame: _Frame, figures: _Figures) -> None:
    if len(frame) == 0:
        section.not_run(f"Not run yet: `{STAGE_COMMANDS['image_quality_metrics']}` writes "
                        "`image_quality_metrics.csv`.")
        return
    f = frame
    section.note("Synthetic images against the real images of the reference split in the extractor's feature "
                 "space, overall and per class (positives of the class on both sides). FID depends on sample size: "
                 "read it next to its *floor*, the FID between two real samples of the same sizes (a generator at "
                 "its floor is indistinguishable from real images at this N); its interval covers the expected FID "
                 "at these sizes. FD∞ (FID extrapolated to infinitely many images; needs 1.5 images per feature "
                 "dimension) compares models and classes of different sizes, and its interval covers the "
                 "population distance. KID: mean ± std over subsets, with a 95% interval of the mean. Precision / "
                 "recall / density / coverage (k nearest neighbours) with 95% intervals; every interval resamples "
                 "patients, not images (`ci_method` in each row).")
    columns = ["model", "features", "class", "n real / synthetic", "FID [95% CI]", "FID floor (real vs real)",
               "FD∞ [95% CI]", "KID [95% CI]", "precision [95% CI]", "recall [95% CI]", "density [95% CI]",
               "coverage [95% CI]", "notes"]
    rows = []
    for i in f.frame.index:
        kid = f.num("kid_mean").iloc[i]
        kid_text = MISSING if not _finite(kid) else f"{kid:.4g}" + (
            f" ± {f.num('kid_std').iloc[i]:.2g}" if _finite(f.num("kid_std").iloc[i]) else "")
        if kid_text != MISSING and _finite(f.num("kid_ci_low").iloc[i]) and f.text("kid_subset_p025").iloc[i]:
            kid_text += f" [{f.num('kid_ci_low').iloc[i]:.4g}, {f.num('kid_ci_high').iloc[i]:.4g}]"
        rows.append([
            _label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i]), f.text("feature_extractor").iloc[i],
            f.text("class").iloc[i],
            f"{_count(f.text('n_real').iloc[i])} / {_count(f.text('n_synthetic').iloc[i])}",
            _fmt_ci(f.num("fid").iloc[i], f.num("fid_ci_low").iloc[i], f.num("fid_ci_high").iloc[i], 2),
            _fmt_ci(f.num("fid_floor").iloc[i], f.num("fid_floor_ci_low").iloc[i],
                    f.num("fid_floor_ci_high").iloc[i], 2),
            _fmt_ci(f.num("fd_inf").iloc[i], f.num("fd_inf_ci_low").iloc[i], f.num("fd_inf_ci_high").iloc[i], 2),
            kid_text,
            *[_fmt_ci(f.num(m).iloc[i], f.num(f"{m}_ci_low").iloc[i], f.num(f"{m}_ci_high").iloc[i])
              for m in ("precision", "recall", "density", "coverage")],
            f.text("notes").iloc[i]])
    section.add(Table(columns, rows))
    for extractor in dict.fromkeys(f.text("feature_extractor")):
        section.add(_quality_bars(f, extractor, figures))


def _quality_bars(f: _Frame, extractor: str, figures: _Figures) -> Figure:
    plt = _pyplot()
    mine = f.text("feature_extractor") == extractor
    classes = list(dict.fromkeys(f.text("class")[mine]))
    if "overall" in classes:
        classes.remove("overall")
        classes.insert(0, "overall")
    models = list(dict.fromkeys(zip(f.text("model_name")[mine], f.text("extra_info")[mine], strict=True)))
    figure, axes = plt.subplots(2, 2, figsize=(max(8.0, 1.2 * len(classes) * max(1, len(models)) / 2 + 4), 6.0),
                                squeeze=False)
    for k, (metric, title) in enumerate(QUALITY_PLOTS):
        axis = axes[k // 2][k % 2]
        series = []
        for model, extra in models:
            values, lows, highs = [], [], []
            for name in classes:
                hit = f.frame.index[mine & (f.text("model_name") == model) & (f.text("extra_info") == extra)
                                    & (f.text("class") == name)]
                i = hit[0] if len(hit) else None
                values.append(f.num(metric).iloc[i] if i is not None else np.nan)
                lows.append(f.num(f"{metric}_ci_low").iloc[i] if i is not None else np.nan)
                highs.append(f.num(f"{metric}_ci_high").iloc[i] if i is not None else np.nan)
            series.append((_label(model, extra), values, lows, highs))
        _grouped_bars(axis, classes, series)
        axis.set_title(title, fontsize=8)
        axis.tick_params(labelsize=7)
        if metric != "fid":
            axis.set_ylim(0, 1.05)
        else:
            positive = [v for _, values, _, _ in series for v in values if _finite(v) and v > 0]
            if positive and max(positive) > 30 * min(positive):
                axis.set_yscale("log")
                axis.set_title(f"{title}, log scale", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7)
    figure.suptitle(f"Image quality ({extractor} features), per model and class", fontsize=9)
    figure.tight_layout(rect=(0, 0.07, 1, 0.96))
    path = figures.save(figure, f"image_quality_{extractor}")
    return Figure(path, f"FID, precision, recall and coverage per model and class ({extractor} features; bars: "
                        "95% intervals where the table has them)")


# ------------------------------------------------------------------------------------------- sample images


def _thumbnail(path: str) -> np.ndarray:
    """``(THUMBNAIL, THUMBNAIL)`` float in [0, 1]: true-bit-depth scaling, centre crop to a square (as
    :func:`benchmark.fidelity.features.square_float`, xrv's crop), resize."""
    from PIL import Image

    pixels = load_image(path).to_float()
    h, w = pixels.shape
    side = min(h, w)
    top, left = h // 2 - side // 2, w // 2 - side // 2
    square = np.ascontiguousarray(pixels[top:top + side, left:left + side])
    image = Image.fromarray(square, mode="F").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR
                                                     if side <= THUMBNAIL else Image.Resampling.BOX)
    return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)


def _samples_section(section: Section, view: _Pretrained | None, results: Path, figures: _Figures,
                     n_samples: int) -> None:
    if view is None:
        section.not_run("No per-image predictions: the pretrained stage (`utility_pretrained.csv`) lists the images "
                        "and their labels; run it first.")
        return
    plt = _pyplot()
    f = view.frame
    cache: dict[Path, pd.DataFrame | None] = {}
    sources: list[tuple[str, pd.DataFrame]] = []
    real = None
    for i in f.frame.index:
        folder = _run_folder(results, f.text("run_id").iloc[i])
        real = None if folder is None else _read_predictions(folder / "predictions_real.csv", cache)
        if real is not None:
            break
    if real is None:
        section.lack("real sample images: no run folder holds `predictions_real.csv`")
    else:
        sources.append((REAL, real))
    for model, extra in view.models:
        hit = f.frame.index[(f.text("image_source") != REAL) & (f.text("model_name") == model)
                            & (f.text("extra_info") == extra)]
        predictions, run_ids = None, list(dict.fromkeys(f.text("run_id").iloc[hit]))
        for run_id in run_ids:
            folder = _run_folder(results, run_id)
            predictions = None if folder is None else _read_predictions(folder / "predictions_synthetic.csv", cache)
            if predictions is not None:
                break
        if predictions is None:
            section.lack(f"sample images of {_label(model, extra)}: run folder `runs/{', '.join(run_ids)}` or its "
                         "`predictions_synthetic.csv` is missing")
        else:
            sources.append((_label(model, extra), predictions))
    if not sources:
        section.status = "missing"
        return
    section.note(f"Up to {n_samples} images per row whose label for the class is 1, in file order: the real test "
                 "images, then each model's synthetic images.")
    classes = list(dict.fromkeys(name for c in view.classifiers for name in view.classes[c]))
    unreadable: list[str] = []
    for name in classes:
        grid = np.ones((len(sources) * (THUMBNAIL + 4), n_samples * (THUMBNAIL + 4)), dtype=np.float32)
        counts = []
        for r, (_label_text, predictions) in enumerate(sources):
            column = f"label:{name}"
            if column not in predictions:
                counts.append(0)
                continue
            positive = pd.to_numeric(predictions[column], errors="coerce") == 1
            paths = predictions.loc[positive, "image"].astype(str).tolist()[:n_samples]
            counts.append(len(paths))
            for c, path in enumerate(paths):
                top, left = r * (THUMBNAIL + 4) + 2, c * (THUMBNAIL + 4) + 2
                try:
                    grid[top:top + THUMBNAIL, left:left + THUMBNAIL] = _thumbnail(path)
                except (DataError, OSError, ValueError):
                    grid[top:top + THUMBNAIL, left:left + THUMBNAIL] = 0.5
                    unreadable.append(path)
        if not any(counts):
            section.lack(f"sample images of {name}: no source has a positive image")
            continue
        height = max(1.2, 0.85 * len(sources) + 0.5)
        figure, axis = plt.subplots(figsize=(0.85 * n_samples + 2.2, height))
        axis.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([r * (THUMBNAIL + 4) + THUMBNAIL / 2 + 2 for r in range(len(sources))])
        axis.set_yticklabels([f"{label} ({n})" for (label, _), n in zip(sources, counts, strict=True)], fontsize=7)
        axis.set_title(f"{name}: positive images", fontsize=8)
        for spine in axis.spines.values():
            spine.set_visible(False)
        figure.tight_layout()
        path = figures.save(figure, f"samples_{name}")
        section.add(Figure(path, f"Sample images of {name}: real test images (top row) beside each model's synthetic "
                                 "images (number shown per row in brackets)"))
    if unreadable:
        shown = ", ".join(f"`{p}`" for p in unreadable[:5])
        section.lack(f"{len(unreadable)} sample image(s) could not be read (grey tiles): {shown}"
                     + (" ..." if len(unreadable) > 5 else ""))


# ------------------------------------------------------------------------------------------- memorisation


def _memorisation_section(section: Section, frame: _Frame, results: Path, figures: _Figures) -> None:
    if len(frame) == 0:
        section.not_run(f"Not run yet: the image-quality stage (`{STAGE_COMMANDS['image_quality_metrics']}`) runs "
                        "the memorisation check.")
        return
    f = frame
    overall = f.frame.index[f.text("class") == "overall"]
    if not len(overall):
        overall = f.frame.index
    runs = {}
    for i in overall:
        key = (f.text("model_name").iloc[i], f.text("extra_info").iloc[i], f.text("feature_extractor").iloc[i])
        runs.setdefault(key, i)
    columns = ["model", "features", "flagged synthetic [95% CI]", "in feature space", "in pixel space",
               "held-out real flagged (chance)", "n synthetic", "n train"]
    rows, shown = [], []
    for (model, extra, extractor), i in runs.items():
        if not _finite(f.num("memorised_share").iloc[i]):
            section.lack(f"memorisation of {_label(model, extra)} ({extractor}) did not run"
                         + (f": {f.text('notes').iloc[i]}" if f.text("notes").iloc[i] else ""))
            continue
        rows.append([_label(model, extra), extractor,
                     _fmt_ci(f.num("memorised_share").iloc[i], f.num("memorised_share_ci_low").iloc[i],
                             f.num("memorised_share_ci_high").iloc[i]),
                     _fmt(f.num("memorised_share_feature").iloc[i]), _fmt(f.num("memorised_share_pixel").iloc[i]),
                     _fmt(f.num("memorised_share_real").iloc[i]), _count(f.text("memorisation_n_synthetic").iloc[i]),
                     _count(f.text("memorisation_n_train").iloc[i])])
        shown.append(((model, extra, extractor), i))
    if not rows:
        section.status = "missing"
        return
    section.note("Every synthetic image against its nearest real *training* image in feature space (cosine) and in "
                 "pixel space (RMSE, tolerant to a flip and small shifts); flagged when closer than 99.9% of real "
                 "pairs of different patients. Held-out real images flagged the same way give the chance level.")
    section.add(Table(columns, rows))
    for (model, extra, extractor), i in shown:
        candidates = [Path(d) / "memorisation_closest.png" for d in (f.text("report_dir").iloc[i],) if d]
        folder = _run_folder(results, f.text("run_id").iloc[i])
        if folder is not None:
            candidates.append(folder / "memorisation_closest.png")
        png = next((p for p in candidates if p.is_file()), None)
        if png is None:
            section.lack(f"closest pairs of {_label(model, extra)} ({extractor}): `memorisation_closest.png` is "
                         f"missing (run `{f.text('run_id').iloc[i] or MISSING}`)")
            continue
        path = figures.copy(png, f"memorisation_{_label(model, extra)}_{extractor}")
        section.add(Figure(path, f"Closest synthetic / training pairs of {_label(model, extra)} ({extractor} "
                                 "features and pixels)"))


# ------------------------------------------------------------------------------- re-identification, alignment


def _privacy_tables(section: Section, frame: _Frame, results: Path, figures: _Figures) -> None:
    """Re-identification rows beside memorisation (a note with the command when the stage has not run)."""
    if len(frame) == 0:
        section.note(f"Patient re-identification has no rows yet: `{STAGE_COMMANDS['privacy_metrics']}` writes "
                     "`privacy_metrics.csv`.")
        return
    f = frame
    section.note("Patient re-identification. *Screen*: a Siamese same-patient model scores every synthetic image "
                 "against its nearest real *training* image; the threshold keeps the false-match rate on real pairs "
                 "of different patients, and held-out real test images scored the same way give a chance level. "
                 "*Prompt-matched* (CheXGenBench's design): each synthetic image made from a training row against "
                 "its own source image, tested against the same image scored against another training patient "
                 "(the null; one-sided paired test over source patients). The model's own verification AUROC on val "
                 "patients says whether it works at all. Intervals resample source patients and the calibration "
                 "patients that set the threshold; the maximum has no interval (a bootstrap of an extreme is "
                 "inconsistent).")
    columns = ["model", "re-id model", "class", "re-id AUROC (val) [95% CI]", "screen: mean [95% CI]", "screen: max",
               "screen: above threshold [95% CI]", "held-out real above (chance) [95% CI]",
               "matched: mean / max / count above", "matched vs null above [95% CI]", "p (matched > null)", "FMR",
               "n synthetic / train", "notes"]
    rows = []
    for i in f.frame.index:
        def ci(name: str, digits: int = 3, i: int = i) -> str:
            return _fmt_ci(f.num(name).iloc[i], f.num(f"{name}_ci_low").iloc[i], f.num(f"{name}_ci_high").iloc[i],
                           digits)

        matched = MISSING
        if _finite(f.num("matched_reid_mean").iloc[i]):
            matched = (f"{_fmt(f.num('matched_reid_mean').iloc[i])} / {_fmt(f.num('matched_reid_max').iloc[i])} / "
                       f"{_count(f.text('matched_reid_count_above').iloc[i])} of "
                       f"{_count(f.text('matched_n_synthetic').iloc[i])}")
        versus = MISSING
        if _finite(f.num("matched_reid_share_above").iloc[i]):
            versus = (f"{ci('matched_reid_share_above')} vs {ci('matched_null_reid_share_above')}; "
                      f"difference {ci('matched_share_difference')}")
        rows.append([_label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i]),
                     Path(f.text("reid_model").iloc[i]).name or MISSING, f.text("class").iloc[i],
                     ci("reid_val_auroc"), ci("reid_mean"), _fmt(f.num("reid_max").iloc[i]), ci("reid_share_above"),
                     ci("real_reid_share_above"), matched, versus, _fmt_p(f.num("matched_p_value").iloc[i]),
                     _fmt(f.num("reid_fmr").iloc[i]),
                     f"{_count(f.text('reid_n_synthetic').iloc[i])} / {_count(f.text('reid_n_train').iloc[i])}",
                     f.text("notes").iloc[i]])
    section.add(Table(columns, rows))
    for i in f.frame.index[f.text("class") == "overall"]:
        label = _label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i])
        candidates = [Path(d) / "reid_closest.png" for d in (f.text("report_dir").iloc[i],) if d]
        folder = _run_folder(results, f.text("run_id").iloc[i])
        if folder is not None:
            candidates.append(folder / "reid_closest.png")
        png = next((p for p in candidates if p.is_file()), None)
        if png is None:
            section.lack(f"re-identified pairs of {label}: `reid_closest.png` is missing "
                         f"(run `{f.text('run_id').iloc[i] or MISSING}`)")
            continue
        section.add(Figure(figures.copy(png, f"reid_{label}"), f"Most re-identifiable synthetic images of {label} "
                                                                "and their nearest training image"))


def _alignment_table(section: Section, frame: _Frame) -> None:
    """Text-image alignment per class (a note with the command when the stage has not run)."""
    if len(frame) == 0:
        section.note(f"Text-image alignment has no rows yet: `{STAGE_COMMANDS['alignment_metrics']}` writes "
                     "`alignment_metrics.csv`.")
        return
    f = frame
    section.note("Text-image alignment: cosine of image and prompt embeddings in a vision-language model, per class; "
                 "shuffled prompts (each image with another image's prompt) are the chance level, the real test "
                 "images on their own prompts the reference. Bootstrap 95% CIs over images.")
    columns = ["model", "alignment model", "class", "n synthetic / real", "synthetic [95% CI]",
               "synthetic, shuffled prompts", "gain over shuffled [95% CI]", "real test [95% CI]",
               "real gain over shuffled [95% CI]"]
    rows = []
    for i in f.frame.index:
        def ci(name: str, i: int = i) -> str:
            return _fmt_ci(f.num(name).iloc[i], f.num(f"{name}_ci_low").iloc[i], f.num(f"{name}_ci_high").iloc[i])

        rows.append([_label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i]),
                     Path(f.text("alignment_model").iloc[i]).name or MISSING, f.text("class").iloc[i],
                     f"{_count(f.text('alignment_n').iloc[i])} / {_count(f.text('real_alignment_n').iloc[i])}",
                     ci("alignment_mean"), ci("alignment_shuffled_mean"), ci("alignment_gain"),
                     ci("real_alignment_mean"), ci("real_alignment_gain")])
    section.add(Table(columns, rows))


# -------------------------------------------------------------------------------------------- leaderboard


def _leaderboard(section: Section, pretrained: _Pretrained | None, retrained: _Frame, quality: _Frame,
                 results: Path) -> pd.DataFrame:
    """Leaderboard rows (numbers) and its section; models ordered by pretrained AUROC, else FID, else name."""
    keys: list[tuple[str, str]] = []
    for frame in (pretrained.frame if pretrained else None, retrained, quality):
        if frame is not None and len(frame):
            keys += list(zip(frame.text("model_name"), frame.text("extra_info"), strict=True))
    keys = list(dict.fromkeys(keys))
    if not keys:
        section.not_run(f"No results yet in `{results}`: every stage is missing. With nothing configured, "
                        "`./scripts/utility_metrics.sh` runs the built-in demo and writes them.")
        return pd.DataFrame(columns=["model"])
    numbers: dict[tuple[str, str], dict[str, float | str]] = {k: {} for k in keys}
    real_row: dict[str, float | str] = {}
    captions: list[str] = []
    text_columns: set[str] = set()
    sort_columns: list[tuple[str, bool]] = []

    if pretrained is not None:
        f = pretrained.frame
        many = len(pretrained.classifiers) > 1
        for classifier in pretrained.classifiers:
            suffix = f" [{classifier}]" if many else ""
            auroc_col, chance_col = f"pretrained AUROC{suffix}", f"classes with label signal{suffix}"
            gap_col = f"real − synthetic AUROC{suffix}"
            mine = f.text("classifier") == classifier
            real = mine & (f.text("image_source") == REAL)
            real_auroc = f.num("auroc")[real].groupby(f.text("class")[real]).first()
            real_row[auroc_col] = float(real_auroc.mean()) if len(real_auroc) else math.nan
            for key in keys:
                rows = mine & (f.text("image_source") != REAL) & (f.text("model_name") == key[0]) \
                    & (f.text("extra_info") == key[1])
                if not rows.any():
                    continue
                auroc = f.num("auroc")[rows]
                numbers[key][auroc_col] = float(auroc.mean()) if auroc.notna().any() else math.nan
                holm = f.num("auroc_p_above_chance_holm")[rows]
                numbers[key][chance_col] = (f"{int((holm < SIGNAL_ALPHA).sum())}/{int(auroc.notna().sum())}"
                                            if holm.notna().any() else "not recorded")
                gap = f.num("auroc_diff_real_minus_synthetic")[rows]
                numbers[key][gap_col] = float(gap.mean()) if gap.notna().any() else math.nan
            text_columns.add(chance_col)
            sort_columns.append((auroc_col, False))
            captions.append(f"*{auroc_col}*: classifier `{classifier}`, the synthetic images' AUROC averaged over "
                            f"the evaluable classes (the real row: the real test images); *{chance_col}*: classes "
                            "the classifier finds above chance (one-sided Brunner-Munzel test of AUROC > 0.5, "
                            f"Holm-adjusted over the classes, family-wise alpha {SIGNAL_ALPHA}).")
    if len(retrained):
        f = retrained
        means = f.text("seed") == "mean"
        for key in keys:
            rows = means & (f.text("model_name") == key[0]) & (f.text("extra_info") == key[1])
            if not rows.any():
                continue
            specs = f.text("setting_spec")[rows].where(f.text("setting_spec")[rows] != "", f.text("setting")[rows])
            baseline = next((b for b in f.text("baseline")[rows] if b), "")
            compared = [spec for spec in dict.fromkeys(specs) if spec != baseline
                        and f.num("auroc_diff_vs_real")[rows][specs == spec].notna().any()]
            synthetic_only = rows & (f.text("setting") == "synthetic")
            if synthetic_only.any():
                auroc = f.num("auroc")[synthetic_only].groupby(f.num("n_synthetic")[synthetic_only]).mean()
                numbers[key]["retrained AUROC, synthetic only"] = float(auroc.iloc[-1])
            if compared:  # the first setting of the sweep, fixed before the results: no maximum over settings
                first = compared[0]
                numbers[key][PRIMARY_DELTA] = float(f.num("auroc_diff_vs_real")[rows][specs == first].mean())
                numbers[key]["pre-specified setting"] = str(first)
        text_columns.add("pre-specified setting")
        if any("pre-specified setting" in numbers[k] or "retrained AUROC, synthetic only" in numbers[k] for k in keys):
            captions.append(f"*retrained AUROC, synthetic only*: DenseNet-121 trained on synthetic images alone "
                            "(the largest size), tested on real images, mean over seeds and classes; "
                            f"*{PRIMARY_DELTA}*: the mean change against the real-only baseline of the *first* "
                            "setting the sweep lists "
                            "after it (fixed before the results; the largest change over settings would be biased "
                            "upward, the winner's curse). Every setting, with its interval, is in the retrained "
                            "section.")
    if len(quality):
        f = quality
        overall = f.text("class") == "overall"
        extractors = list(dict.fromkeys(f.text("feature_extractor")[overall]))
        many = len(extractors) > 1
        for extractor in extractors:
            suffix = f" [{extractor}]" if many else ""
            for key in keys:
                rows = f.frame.index[overall & (f.text("feature_extractor") == extractor)
                                     & (f.text("model_name") == key[0]) & (f.text("extra_info") == key[1])]
                if not len(rows):
                    continue
                i = rows[0]
                for metric, column in (("fid", "FID"), ("precision", "precision"), ("recall", "recall"),
                                       ("coverage", "coverage"), ("memorised_share", "memorised share")):
                    numbers[key][f"{column}{suffix}"] = float(f.num(metric).iloc[i])
            sort_columns.append((f"FID{suffix}", True))
            captions.append(f"*FID*, *precision*, *recall*, *coverage*, *memorised share*: overall rows, "
                            f"`{extractor}` features.")

    table = pd.DataFrame([{"model": _label(*k), **numbers[k]} for k in keys])
    columns = ["model", *dict.fromkeys(c for k in keys for c in numbers[k])]
    columns += [c for c in real_row if c not in columns]
    table = table.reindex(columns=columns)
    by = [c for c, _ in sort_columns if c in table]
    if by:
        table = table.sort_values(by, ascending=[asc for c, asc in sort_columns if c in table], na_position="last",
                                  kind="stable").reset_index(drop=True)
    if real_row:
        reference = pd.DataFrame([{"model": "real test images (reference)", **real_row}]).reindex(columns=columns)
        table = pd.concat([reference, table], ignore_index=True)

    def cell(column: str, value: Any) -> str:
        if column == "model" or column in text_columns:
            return MISSING if not isinstance(value, str) or not value else value
        sign = "Δ" in column or "−" in column
        return _fmt(value, 2 if column.startswith("FID") else 3, sign=sign)

    rows = [[cell(c, row[c]) for c in columns] for _, row in table.iterrows()]
    section.note("One row per model: the headline figure of each stage that ran (details in the sections below). "
                 "Ordered by pretrained AUROC when that stage ran, else by FID.")
    section.add(Table(columns, rows))
    for caption in captions:
        section.note(caption)
    return table


# --------------------------------------------------------------------------------------------- rendering


def _inline_html(text: str) -> str:
    """Escaped text with the little Markdown the notes use: `code`, **bold**, *emphasis* (never inside code)."""
    parts = re.split(r"`([^`]+)`", text)
    out = []
    for k, part in enumerate(parts):
        if k % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        part = html.escape(part)
        part = re.sub(r"\*\*(\S(?:[^*]*\S)?)\*\*", r"<strong>\1</strong>", part)
        out.append(re.sub(r"\*(\S(?:[^*]*\S)?)\*", r"<em>\1</em>", part))
    return "".join(out)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;
padding:0 1.2em 3em;color:#1d232a;line-height:1.45}
h1{margin-top:1em}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
nav ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1.2em}
nav .missing{color:#8a6d3b}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.82em;display:block;overflow-x:auto}
th,td{border:1px solid #d0d7de;padding:.25em .55em;text-align:left;vertical-align:top;white-space:nowrap}
th{background:#f3f5f7;white-space:normal;min-width:5em}
.gallery{display:flex;flex-wrap:wrap;gap:0 1.2em;align-items:flex-start}.gallery figure{display:table}
.gallery figcaption{display:table-caption;caption-side:bottom}
tr:nth-child(even) td{background:#fafbfc}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0 1.6em}figure img{max-width:100%;height:auto;border:1px solid #e5e8eb}
figcaption{font-size:.85em;color:#57606a}
code{background:#f3f5f7;padding:0 .25em;border-radius:3px;font-size:.9em}
p.missing{background:#fff8e1;border-left:4px solid #e0a800;padding:.4em .8em}
p.warning{background:#fdecea;border-left:4px solid #d9534f;padding:.4em .8em}
section.missing h2::after{content:" (missing)";color:#8a6d3b;font-size:.7em}
.meta{color:#57606a;font-size:.9em}
"""


def _render_html(sections: Sequence[Section], results: Path, generated: str) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
             'style-src \'unsafe-inline\'">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>synthcxr-bench report</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             "<header><h1>synthcxr-bench report</h1>",
             f'<p class="meta">Results: <code>{html.escape(str(results))}</code> · generated {html.escape(generated)}'
             "</p><nav><ul>"]
    for s in sections:
        status = ' class="missing"' if s.status == "missing" else ""
        parts.append(f'<li><a href="#{s.id}"{status}>{html.escape(s.title)}</a></li>')
    parts.append("</ul></nav></header>")
    for s in sections:
        parts.append(f'<section id="{s.id}" class="{s.status}"><h2>{html.escape(s.title)}</h2>')
        in_gallery = False
        for block in s.blocks:
            if isinstance(block, Figure) != in_gallery:  # consecutive figures share one wrapping row
                in_gallery = not in_gallery
                parts.append('<div class="gallery">' if in_gallery else "</div>")
            if isinstance(block, Note):
                parts.append(f'<p class="{block.kind}">{_inline_html(block.text)}</p>')
            elif isinstance(block, Table):
                parts.append("<table>")
                if block.caption:
                    parts.append(f"<caption>{_inline_html(block.caption)}</caption>")
                parts.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
                             + "</tr></thead><tbody>")
                for row in block.rows:
                    parts.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
                parts.append("</tbody></table>")
            elif isinstance(block, Figure):
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                alt = html.escape(block.caption, quote=True)
                parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                             f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
        if in_gallery:
            parts.append("</div>")
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _render_markdown(sections: Sequence[Section], results: Path, out: Path, generated: str) -> str:
    lines = ["# synthcxr-bench report", "", f"Results: `{results}` · generated {generated}", "",
             " · ".join(f"[{s.title}](#{s.id})" + (" (missing)" if s.status == "missing" else "") for s in sections),
             ""]
    for s in sections:
        lines += [f'<a id="{s.id}"></a>', "", f"## {s.title}", ""]
        for block in s.blocks:
            if isinstance(block, Note):
                prefix = {"missing": "> **Missing:** ", "warning": "> **Warning:** "}.get(block.kind, "")
                lines += [prefix + block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"**{block.caption}**", ""]
                lines.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
                lines.append("|" + "|".join("---" for _ in block.columns) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
            elif isinstance(block, Figure):
                relative = block.path.relative_to(out).as_posix()
                lines += [f"![{_md_cell(block.caption)}]({relative})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- core


def build_report(results: str | Path | None = None, out: str | Path | None = None, *,
                 n_samples: int = DEFAULT_SAMPLES) -> ReportResult:
    """Render the report of the results folder *results* (default ``$RESULTS_DIR`` or ``results/``) into *out*
    (default ``<results>/report``): ``report.md``, ``report.html`` and ``figures/*.png``.

    Missing stages, run folders and images are reported in their sections, never raised. Raises
    :class:`ResultsFileError` (naming the file and line) for a corrupt results CSV, before anything is written.
    """
    started = time.perf_counter()
    folder = results_dir(results)
    target = Path(out).expanduser().absolute() if out else folder / "report"
    frames = {table: _load(table, folder) for table in ("utility_pretrained", "utility_retrained",
                                                        "image_quality_metrics")}
    target.mkdir(parents=True, exist_ok=True)
    figures = _Figures(target / "figures")
    sections = {sid: Section(sid, title) for sid, title in SECTIONS}
    pretrained = _pretrained_view(frames["utility_pretrained"])
    leaderboard = _leaderboard(sections["leaderboard"], pretrained, frames["utility_retrained"],
                               frames["image_quality_metrics"], folder)
    _pretrained_section(sections["pretrained"], pretrained, folder, figures)
    _retrained_section(sections["retrained"], frames["utility_retrained"], figures)
    _quality_section(sections["image-quality"], frames["image_quality_metrics"], figures)
    _samples_section(sections["samples"], pretrained, folder, figures, n_samples)
    _memorisation_section(sections["memorisation"], frames["image_quality_metrics"], folder, figures)
    privacy_frame, alignment_frame = _load("privacy_metrics", folder), _load("alignment_metrics", folder)
    _privacy_tables(sections["memorisation"], privacy_frame, folder, figures)
    _alignment_table(sections["image-quality"], alignment_frame)
    owner = {"utility_pretrained": "pretrained", "utility_retrained": "retrained",
             "image_quality_metrics": "image-quality"}
    for table, frame in frames.items():
        for problem in frame.problems:
            sections[owner[table]].warn(problem)
    figures.remove_stale()
    ordered = [sections[sid] for sid, _ in SECTIONS]
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    markdown = atomic_write_text(target / "report.md", _render_markdown(ordered, folder, target, generated))
    page = atomic_write_text(target / "report.html", _render_html(ordered, folder, generated))
    for path in (markdown, page):
        path.chmod(0o644)  # a temp file's 0600 would hide the report from a web server or a colleague
    return ReportResult(markdown, page, list(figures.written), ordered, leaderboard,
                        time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="report.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=os.environ.get("RESULTS_DIR"),
                        help="results folder to report on (default: $RESULTS_DIR, else results/)")
    parser.add_argument("--out", help="where the report goes (default: <results-dir>/report)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"sample images per class and model (default {DEFAULT_SAMPLES})")
    return parser


def main(argv: Sequence[str] | None = None, *, echo: Callable[[str], None] = print) -> int:
    """Build the report; exit 0 (also when every stage is missing), 2 for a corrupt results CSV."""
    args = build_parser().parse_args(argv)
    if args.samples < 1:
        print("error: --samples must be at least 1", file=sys.stderr)
        return 2
    try:
        result = build_report(args.results_dir, args.out, n_samples=args.samples)
    except ResultsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    echo(f"report: {result.html} (one static page), {result.markdown} and {len(result.figures)} figure(s) in "
         f"{result.markdown.parent / 'figures'} ({result.seconds:.1f} s)")
    for section in result.sections:
        detail = f"; {len(section.missing)} item(s) missing" if section.missing and section.status != "missing" else ""
        echo(f"  {section.title:<32} {section.status}{detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
