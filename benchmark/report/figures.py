"""The report's figures (matplotlib with the Agg backend, imported on first use): :class:`_Figures` writes each PNG
under ``<out>/figures``; the pretrained stage's AUROC bars and ROC curves, the retrained data-size curves, the
image-quality bars and the sample-image grids (the whole samples section)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data import DataError, load_image
from benchmark.report.document import Figure, Section
from benchmark.report.loading import (
    REAL,
    _finite,
    _fmt,
    _Frame,
    _label,
    _Pretrained,
    _pretrained_rows,
    _read_predictions,
    _run_folder,
    _slug,
)

QUALITY_PLOTS: tuple[tuple[str, str], ...] = (("fid", "FID (lower is better)"), ("precision", "precision"),
                                              ("recall", "recall"), ("coverage", "coverage"))
DPI = 90
THUMBNAIL = 64
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
           "tab:cyan", "tab:grey")


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
            axis.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=10, rotation=90)
    axis.set_xticks(x)
    axis.set_xticklabels(groups, fontsize=9, rotation=15 if len(groups) > 3 else 0)


# ------------------------------------------------------------------------------------------ pretrained stage


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
    axis.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    path = figures.save(figure, f"pretrained_auroc_{classifier}")
    return Figure(path, f"AUROC per class with 95% CI bars: real test images and each model's synthetic images "
                        f"(classifier {classifier}; dotted line: chance)")


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
            axis.set_title(f"{name}\n{classifier}", fontsize=10)
            axis.legend(loc="lower right", fontsize=10)
            figure.tight_layout()
            path = figures.save(figure, f"roc_{classifier}_{name}")
            section.add(Figure(path, f"ROC curves of {name}: real test images and each model's synthetic images "
                                     f"(classifier {classifier})"))


# ------------------------------------------------------------------------------------------- retrained stage


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
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("synthetic training images", fontsize=9)
        axis.set_ylabel("AUROC (mean over seeds, 95% CI)", fontsize=9)
        axis.tick_params(labelsize=8)
        axis.set_ylim(0, 1.02)
    for j in range(len(names), nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper right", fontsize=9)
    figure.suptitle(f"Retrained classifiers, {label}: AUROC against the number of synthetic images", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1 - 1.6 / (3.2 * ncols + 1.6), 0.95))
    path = figures.save(figure, f"retrained_data_size_{label}")
    return Figure(path, f"Data-size curves of {label}: test AUROC (mean over seeds, 95% CI band) against the number "
                        "of synthetic training images, one line per setting (a setting trained at one size only is "
                        "a single point with its interval bar); dashed: real images only")


# ------------------------------------------------------------------------------------------ image quality


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
        axis.set_title(title, fontsize=10)
        axis.tick_params(labelsize=8)
        if metric != "fid":
            axis.set_ylim(0, 1.05)
        else:
            positive = [v for _, values, _, _ in series for v in values if _finite(v) and v > 0]
            if positive and max(positive) > 30 * min(positive):
                axis.set_yscale("log")
                axis.set_title(f"{title}, log scale", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=9)
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
        axis.set_yticklabels([f"{label} ({n})" for (label, _), n in zip(sources, counts, strict=True)], fontsize=9)
        axis.set_title(f"{name}: positive images", fontsize=10)
        for spine in axis.spines.values():
            spine.set_visible(False)
        figure.tight_layout()
        path = figures.save(figure, f"samples_{name}")
        section.add(Figure(path, f"Sample images of {name}: real test images (top row) beside each model's synthetic "
                                 "images (number shown per row in brackets)", collapse=True))
    if unreadable:
        shown = ", ".join(f"`{p}`" for p in unreadable[:5])
        section.lack(f"{len(unreadable)} sample image(s) could not be read (grey tiles): {shown}"
                     + (" ..." if len(unreadable) > 5 else ""))
