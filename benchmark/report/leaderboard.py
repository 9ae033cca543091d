"""The report's leaderboard: one row per model with every headline figure and its 95% interval, ranked by the
README's rule (label signal first, then realism), with one line per column saying what it is; and the table of
pretrained utility per class with the models side by side.

Figures averaged over classes carry :func:`benchmark.core.stats.class_mean_interval` (the mean of the per-class
interval ends: at least 95% coverage whatever the correlation between classes scored on the same images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.stats import SIGNAL_ALPHA, class_mean_interval
from benchmark.report.document import Section, Table
from benchmark.report.loading import MISSING, REAL, _finite, _fmt, _Frame, _label, _Pretrained

PRIMARY_DELTA = "retrained Δ AUROC vs real (pre-specified setting)"
RANK_RULE = ("Ranked by the README's rule: models whose images carry label signal (the classifier finds at least one "
             "class above chance, Holm-adjusted one-sided test, family-wise alpha "
             f"{SIGNAL_ALPHA}) come first, by their mean pretrained AUROC; the others follow by realism (lower FID "
             "first); a model with neither figure comes last. Ranks are of point estimates: where two models' "
             "intervals overlap, their order is not established.")
MEAN_NOTE = ("averaged over the evaluable classes; its interval is the mean of the per-class 95% interval ends, which "
             "covers at least 95% whatever the correlation between classes (wider than needed when they are "
             "independent)")


@dataclass
class _Column:
    name: str
    description: str
    digits: int = 3
    sign: bool = False
    text: bool = False


@dataclass
class _Board:
    """Numbers per model key (``column``, ``column ci_low``, ``column ci_high``), the real reference row and the
    columns of each of the two tables, in order."""

    keys: list[tuple[str, str]]
    numbers: dict[tuple[str, str], dict[str, Any]]
    real: dict[str, Any]
    utility: list[_Column]
    realism: list[_Column]

    def put(self, key: tuple[str, str] | None, column: str, value: Any, low: Any = math.nan,
            high: Any = math.nan) -> None:
        target = self.real if key is None else self.numbers[key]
        target[column] = value
        if _finite(low) and _finite(high):
            target[f"{column} ci_low"], target[f"{column} ci_high"] = float(low), float(high)

    def add_column(self, table: list[_Column], column: _Column) -> None:
        if all(c.name != column.name for c in table):
            table.append(column)


def _rows(f: _Frame, key: tuple[str, str]) -> pd.Series:
    return (f.text("model_name") == key[0]) & (f.text("extra_info") == key[1])


def _mean_ci(f: _Frame, rows: pd.Series, value: str, low: str, high: str) -> tuple[float, float, float]:
    return class_mean_interval(f.num(value)[rows], f.num(low)[rows], f.num(high)[rows])


def _pretrained(board: _Board, pretrained: _Pretrained) -> None:
    f = pretrained.frame
    many = len(pretrained.classifiers) > 1
    for classifier in pretrained.classifiers:
        suffix = f" [{classifier}]" if many else ""
        signal, auroc, gap = f"label signal{suffix}", f"pretrained AUROC{suffix}", f"real − synthetic AUROC{suffix}"
        mine = f.text("classifier") == classifier
        real = mine & (f.text("image_source") == REAL)
        first_real = pd.Series(False, index=f.frame.index)
        first_real[f.text("class")[real].drop_duplicates().index] = True  # one real row per class
        board.put(None, auroc, *_mean_ci(f, first_real, "auroc", "auroc_ci_low", "auroc_ci_high"))
        for key in board.keys:
            rows = mine & (f.text("image_source") != REAL) & _rows(f, key)
            if not rows.any():
                continue
            board.put(key, auroc, *_mean_ci(f, rows, "auroc", "auroc_ci_low", "auroc_ci_high"))
            holm = f.num("auroc_p_above_chance_holm")[rows]
            tested = int(f.num("auroc")[rows].notna().sum())
            found = int((holm < SIGNAL_ALPHA).sum())
            board.put(key, signal, f"{found}/{tested}" if holm.notna().any() else "not recorded")
            if classifier == pretrained.classifiers[0] and holm.notna().any():
                board.numbers[key]["_signal"] = found
            board.put(key, gap, *_mean_ci(f, rows, "auroc_diff_real_minus_synthetic", "auroc_diff_ci_low",
                                          "auroc_diff_ci_high"))
        board.add_column(board.utility, _Column(signal, f"classes of {classifier} found above chance in the model's "
                                                "images / classes tested (one-sided Brunner-Munzel test of AUROC > "
                                                f"0.5, Holm over the classes, family-wise alpha {SIGNAL_ALPHA})",
                                                text=True))
        board.add_column(board.utility, _Column(auroc, f"{classifier} AUROC on the synthetic images, {MEAN_NOTE}; "
                                                "the reference row: the real test images"))
        board.add_column(board.utility, _Column(gap, "real minus synthetic AUROC (positive: the labels are weaker in "
                                                f"the synthetic images), {MEAN_NOTE}", sign=True))


def _retrained(board: _Board, f: _Frame) -> None:
    means = f.text("seed") == "mean"
    any_rows = False
    for key in board.keys:
        rows = means & _rows(f, key)
        if not rows.any():
            continue
        any_rows = True
        specs = f.text("setting_spec")[rows].where(f.text("setting_spec")[rows] != "", f.text("setting")[rows])
        baseline = next((b for b in f.text("baseline")[rows] if b), "")
        compared = [spec for spec in dict.fromkeys(specs) if spec != baseline
                    and f.num("auroc_diff_vs_real")[rows][specs == spec].notna().any()]
        synthetic_only = rows & (f.text("setting") == "synthetic")
        if synthetic_only.any():
            largest = f.num("n_synthetic")[synthetic_only].max()
            pick = synthetic_only & (f.num("n_synthetic") == largest)
            board.put(key, "retrained AUROC, synthetic only", *_mean_ci(f, pick, "auroc", "auroc_ci_low",
                                                                         "auroc_ci_high"))
        if compared:  # the first setting of the sweep, fixed before the results: no maximum over settings
            chosen = rows.copy()
            chosen[rows] = (specs == compared[0]).to_numpy()
            board.put(key, PRIMARY_DELTA, *_mean_ci(f, chosen, "auroc_diff_vs_real", "auroc_diff_vs_real_ci_low",
                                                    "auroc_diff_vs_real_ci_high"))
            board.put(key, "pre-specified setting", str(compared[0]))
    if any_rows:
        board.add_column(board.utility, _Column(
            "retrained AUROC, synthetic only", "DenseNet-121 trained on the model's images alone (largest size), "
            f"tested on held-out real images; seeds averaged, {MEAN_NOTE}"))
        board.add_column(board.utility, _Column(
            PRIMARY_DELTA, "change of the retrained AUROC against the real-only baseline, for the first setting the "
            "sweep lists (fixed before the results: the best of several would be biased upward); "
            f"{MEAN_NOTE}", sign=True))
        board.add_column(board.utility, _Column("pre-specified setting", "the setting of that change", text=True))


QUALITY = (("fid", "FID", "Fréchet distance to the real images (lower: closer), with its bootstrap interval", 2),
           ("precision", "precision", "share of synthetic images inside the real images' manifold (PRDC, k = 5)", 3),
           ("recall", "recall", "share of real images inside the synthetic images' manifold (PRDC)", 3),
           ("coverage", "coverage", "share of real images with a synthetic neighbour (PRDC; 1 = every real image)", 3),
           ("detect_auroc", "detectability AUROC", "held-out AUROC of a linear probe telling synthetic from real "
            "(0.5 = indistinguishable), patient-disjoint folds", 3))
PRIVACY = (("memorised_share", "memorised share", "share of synthetic images flagged as copies of a training image "
            "(feature and pixel nearest neighbours, calibrated on real pairs)", 3),)


def _quality(board: _Board, f: _Frame) -> None:
    overall = f.text("class") == "overall"
    extractors = list(dict.fromkeys(f.text("feature_extractor")[overall]))
    many = len(extractors) > 1
    for extractor in extractors:
        suffix = f" [{extractor}]" if many else ""
        for key in board.keys:
            rows = f.frame.index[overall & (f.text("feature_extractor") == extractor) & _rows(f, key)]
            if not len(rows):
                continue
            i = rows[0]
            for metric, column, _, _ in QUALITY + PRIVACY:
                board.put(key, f"{column}{suffix}", f.num(metric).iloc[i], f.num(f"{metric}_ci_low").iloc[i],
                          f.num(f"{metric}_ci_high").iloc[i])
            if extractor == extractors[0]:
                board.numbers[key]["_realism"] = float(f.num("fid").iloc[i])
        for metric, column, description, digits in QUALITY + PRIVACY:
            present = any(_finite(board.numbers[k].get(f"{column}{suffix}")) for k in board.keys)
            if present or metric == "fid":
                board.add_column(board.realism, _Column(f"{column}{suffix}", f"{description} ({extractor} "
                                                        "features, all classes)", digits))


def _privacy(board: _Board, f: _Frame) -> None:
    overall = f.text("class") == "overall"
    found = False
    for key in board.keys:
        rows = f.frame.index[overall & _rows(f, key)]
        if not len(rows):
            continue
        i = rows[-1]
        found = True
        board.put(key, "re-identified share", f.num("reid_share_above").iloc[i],
                  f.num("reid_share_above_ci_low").iloc[i], f.num("reid_share_above_ci_high").iloc[i])
        board.put(key, "re-identified share, chance", f.num("real_reid_share_above").iloc[i],
                  f.num("real_reid_share_above_ci_low").iloc[i], f.num("real_reid_share_above_ci_high").iloc[i])
    if found:
        board.add_column(board.realism, _Column("re-identified share", "share of synthetic images whose nearest "
                                                "training image a same-patient model calls the same patient (screen "
                                                "design, threshold at the stated false-match rate)"))
        board.add_column(board.realism, _Column("re-identified share, chance", "the same share for held-out real "
                                                "test images: what a model that copied nobody gets"))


def _rank(board: _Board) -> list[tuple[str, str]]:
    """Label signal first (by mean pretrained AUROC, higher first), then the rest by FID (lower first), then name."""
    auroc_column = next((c.name for c in board.utility if c.name.startswith("pretrained AUROC")), "")

    def order(key: tuple[str, str]) -> tuple:
        n = board.numbers[key]
        auroc = n.get(auroc_column, math.nan)
        realism = n.get("_realism", math.nan)
        if n.get("_signal", 0) > 0:
            return (0, -auroc if _finite(auroc) else math.inf, key)
        if _finite(realism):
            return (1, realism, key)
        return (2, 0.0, key)

    return sorted(board.keys, key=order)


def _cell(column: _Column, values: dict[str, Any]) -> str:
    value = values.get(column.name)
    if column.text:
        return value if isinstance(value, str) and value else MISSING
    text = _fmt(value, column.digits, sign=column.sign)
    low, high = values.get(f"{column.name} ci_low"), values.get(f"{column.name} ci_high")
    if text != MISSING and _finite(low) and _finite(high):
        form = f"+.{column.digits}f" if column.sign else f".{column.digits}f"
        text += f" [{float(low):{form}}, {float(high):{form}}]"
    return text


def leaderboard(section: Section, pretrained: _Pretrained | None, retrained: _Frame, quality: _Frame,
                privacy: _Frame, results: Path) -> pd.DataFrame:
    """The leaderboard's two tables (label signal and utility; realism and privacy) in ``section``; returns its
    numbers, one row per model in rank order (``rank``, ``model``, each figure and its ``ci_low`` / ``ci_high``)."""
    keys: list[tuple[str, str]] = []
    for frame in (pretrained.frame if pretrained else None, retrained, quality, privacy):
        if frame is not None and len(frame):
            keys += list(zip(frame.text("model_name"), frame.text("extra_info"), strict=True))
    keys = list(dict.fromkeys(keys))
    if not keys:
        section.not_run(f"No results yet in `{results}`: every stage is missing. With nothing configured, "
                        "`./scripts/utility_metrics.sh` runs the built-in demo and writes them.")
        return pd.DataFrame(columns=["rank", "model"])
    board = _Board(keys, {k: {} for k in keys}, {}, [], [])
    if pretrained is not None:
        _pretrained(board, pretrained)
    if len(retrained):
        _retrained(board, retrained)
    if len(quality):
        _quality(board, quality)
    if len(privacy):
        _privacy(board, privacy)
    ranked = _rank(board)
    section.note(RANK_RULE)
    for title, columns in (("Label signal and utility", board.utility), ("Realism and privacy", board.realism)):
        if not columns:
            continue
        header = ["rank", "model", *(c.name for c in columns)]
        rows = [[str(rank), _label(*key), *(_cell(c, board.numbers[key]) for c in columns)]
                for rank, key in enumerate(ranked, 1)]
        if any(c.name in board.real for c in columns):
            rows.insert(0, ["–", "real test images (reference)", *(_cell(c, board.real) for c in columns)])
        section.add(Table(header, rows, caption=f"{title} (every figure with its 95% interval)"))
        section.add(Table(["column", "what it is"], [[c.name, c.description] for c in columns]))
    names = [c.name for c in board.utility + board.realism]
    records = []
    for rank, key in enumerate(ranked, 1):
        record = {"rank": rank, "model": _label(*key)}
        for name in names:
            for column in (name, f"{name} ci_low", f"{name} ci_high"):
                if column in board.numbers[key]:
                    record[column] = board.numbers[key][column]
        records.append(record)
    if board.real:
        records.insert(0, {"rank": np.nan, "model": "real test images (reference)", **board.real})
    return pd.DataFrame(records)


def per_class_comparison(section: Section, pretrained: _Pretrained | None) -> None:
    """Pretrained AUROC per class, the real test images and every model side by side, with intervals and each
    column's positives / images."""
    if pretrained is None:
        return
    f = pretrained.frame
    for classifier in pretrained.classifiers:
        mine = f.text("classifier") == classifier
        models = list(dict.fromkeys(zip(f.text("model_name")[mine & (f.text("image_source") != REAL)],
                                        f.text("extra_info")[mine & (f.text("image_source") != REAL)], strict=True)))
        classes = list(dict.fromkeys(f.text("class")[mine]))
        if not models or not classes:
            continue

        def cell(rows: pd.Series) -> str:
            index = f.frame.index[rows]
            if not len(index):
                return MISSING
            i = index[0]
            text = _cell(_Column("auroc", ""), {"auroc": f.num("auroc").iloc[i],
                                                "auroc ci_low": f.num("auroc_ci_low").iloc[i],
                                                "auroc ci_high": f.num("auroc_ci_high").iloc[i]})
            positives = f.text("n_positive").iloc[i] or f.text("positives").iloc[i]
            n = f.text("n").iloc[i]
            if positives and n:
                text += f" ({_int(positives)}/{_int(n)})"
            if f.num("auroc_p_above_chance_holm").iloc[i] < SIGNAL_ALPHA:
                text += " ✓"
            return text

        header = ["class", "real test images", *(_label(*m) for m in models)]
        rows = []
        for name in classes:
            of_class = mine & (f.text("class") == name)
            rows.append([name, cell(of_class & (f.text("image_source") == REAL)),
                         *(cell(of_class & (f.text("image_source") != REAL) & _rows(f, m)) for m in models)])
        section.note(f"Pretrained AUROC per class, every model side by side (`{classifier}`): AUROC [95% CI] "
                     "(positives / images); ✓ = label signal (above chance after Holm's adjustment over the "
                     "classes). Read a model against the real column: the same classifier on the real test images.")
        section.add(Table(header, rows))


def _int(text: str) -> str:
    try:
        return str(int(float(text)))
    except ValueError:
        return text
