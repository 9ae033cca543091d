"""Learning curves: training loss and real-validation AUROC per epoch of one unit (:func:`plot_learning_curves`)
and every unit's validation AUROC in one figure per sweep (:func:`plot_sweep_curves`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from benchmark.utility.retrained.planning import Unit


def plot_learning_curves(histories: dict[str, list[dict[str, float]]], best_epochs: dict[str, int], path: Path,
                         title: str) -> Path:
    """Training loss and real-validation AUROC per epoch for each model (the selected epoch marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, auroc_axis) = plt.subplots(1, 2, figsize=(8.5, 3.4), dpi=110)
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        loss_axis.plot(epochs, [h["train_loss"] for h in history], marker="o", label=name)
        line = auroc_axis.plot(epochs, [h["val_mean_auroc"] for h in history], marker="o", label=name)[0]
        best = next((h for h in history if h["epoch"] == best_epochs.get(name)), None)
        if best is not None:
            auroc_axis.scatter([best["epoch"]], [best["val_mean_auroc"]], s=90, facecolors="none",
                               edgecolors=line.get_color(), zorder=3)
    from matplotlib.ticker import MaxNLocator

    loss_axis.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for axis in (loss_axis, auroc_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    auroc_axis.set(xlabel="epoch", ylabel="mean AUROC", title="real validation AUROC (circle: selected)")
    auroc_axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    for axis in (loss_axis, auroc_axis):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=6)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_sweep_curves(folder: Path, units: Sequence[Unit]) -> Path | None:
    """All units' validation AUROC per epoch in one figure, ``<run>/learning_curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.0), dpi=110)
    colours: dict[str, str] = {}
    for unit in units:
        path = folder / "units" / unit.id / "history.json"
        if not path.is_file():
            continue
        for history in json.loads(path.read_text())["histories"].values():
            label = None if unit.spec.label in colours else unit.spec.label
            colour = colours.setdefault(unit.spec.label, f"C{len(colours) % 10}")
            axis.plot([h["epoch"] for h in history], [h["val_mean_auroc"] for h in history], color=colour,
                      alpha=0.8, label=label)
    if not colours:
        plt.close(figure)
        return None
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set(xlabel="epoch", ylabel="real validation mean AUROC", title="learning curves (one line per seed)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "learning_curves.png")
    plt.close(figure)
    return folder / "learning_curves.png"
