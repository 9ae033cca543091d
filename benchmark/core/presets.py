"""Named settings of the evaluation stages: ``--preset quick`` (small images, few epochs, few resamples: a first look
in minutes on a CPU) and ``--preset paper`` (the documented defaults, the figures to publish).

A preset only changes defaults: a flag given on the command line wins. What ran is written into every result row
(``preset``: ``quick``, ``paper``, or either with ``+custom`` when a flag changed one of the preset's settings), and a
quick run's rows are keyed apart (``;preset=quick`` in ``extra_info``), so a quick figure never replaces or passes
for a final one. Before the stage starts, one line says what the preset sets and roughly how long it will take.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

PRESET_NAMES = ("quick", "paper")
DEFAULT_PRESET = "paper"
QUICK_TAG = "preset=quick"

#: the quick preset per stage: parser destination -> value; ``paper`` is the parser's own defaults of these keys
QUICK: dict[str, dict[str, Any]] = {
    "utility": {"n_resamples": 1000, "seeds": "0", "epochs": 2, "image_size": 64, "patience": 1, "n_real": "max200",
                "n_synthetic": "max200", "settings": "real,synthetic,real+synthetic"},
    "image_quality": {"n": 500, "kid_subset_size": 100, "kid_subsets": 20, "jackknife_groups": 10,
                      "calibration_n": 500, "diversity_pairs": 50, "diversity_prompts": 20, "msssim_size": 128},
    "privacy": {"bootstrap": 200, "reid_epochs": 3, "reid_features": 64},
}
#: settings the quick preset makes only when a condition on the other flags holds (a re-id model given with
#: ``--reid-model`` keeps the size it was trained at)
QUICK_WHEN: dict[str, dict[str, tuple[Any, Callable[[argparse.Namespace], bool]]]] = {
    "privacy": {"reid_image_size": (64, lambda args: bool(getattr(args, "reid_train", False)))},
}

#: images per second of a DenseNet-121 forward pass at 224 px on 2 CPU cores (measured here: ~15); other sizes
#: scale with the pixel count, training costs about three forward passes, more cores scale it linearly
FORWARD_PER_SECOND_2_CORES = 15.0


def add_preset_argument(parser: argparse.ArgumentParser, stage: str) -> None:
    """``--preset quick|paper`` (default paper: the documented defaults) for ``stage`` (a key of :data:`QUICK`),
    read by :func:`benchmark.core.cli.parse_stage_args`."""
    if stage not in QUICK:
        raise ValueError(f"no presets for stage {stage!r}; known: {', '.join(QUICK)}")
    parser.preset_stage = stage  # type: ignore[attr-defined]
    parser.add_argument("--preset", choices=PRESET_NAMES, default=None,
                        help="quick: small images, few epochs and resamples, rows marked preset=quick and keyed "
                        "apart; paper: the documented defaults (what runs when no preset is given). A flag given "
                        "beside it wins")


def parse_with_preset(parser: argparse.ArgumentParser, stage: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` with the chosen preset's values as defaults; sets ``args.preset`` to what ran (``quick``,
    ``paper``, ``...+custom``) and ``args.preset_changes`` to the preset settings a flag overrode, and tags a quick
    run's ``extra_info``."""
    first, _ = parser.parse_known_args(argv)
    name = first.preset or DEFAULT_PRESET
    paper = {key: parser.get_default(key) for key in QUICK[stage]}
    chosen = dict(QUICK[stage]) if name == "quick" else paper
    parser.set_defaults(**chosen)
    args = parser.parse_args(argv)
    if name == "quick":
        for key, (value, applies) in QUICK_WHEN.get(stage, {}).items():
            if getattr(args, key, None) is None and applies(args):
                setattr(args, key, value)
                chosen[key] = value
    changes = [key for key, value in chosen.items() if str(getattr(args, key)) != str(value)]
    args.preset = name + ("+custom" if changes else "")
    args.preset_changes = changes
    args.preset_settings = {key: getattr(args, key) for key in chosen}
    if name == "quick":
        args.extra_info = tag_quick(getattr(args, "extra_info", "") or "")
    return args


def tag_quick(extra_info: str) -> str:
    """``extra_info`` with ``;preset=quick`` appended (once)."""
    parts = [p for p in extra_info.split(";") if p]
    return ";".join([*parts, QUICK_TAG]) if QUICK_TAG not in parts else extra_info


def _counts(args: argparse.Namespace) -> dict[str, int]:
    """Rows of the split CSV by split and of the synthetic set (0 where not given or unreadable: the stage's own
    checks name those)."""
    counts = {"train": 0, "val": 0, "test": 0, "synthetic": 0}
    try:
        if getattr(args, "real", None):
            split = pd.read_csv(args.real, usecols=lambda c: c == "split", dtype=str)
            if "split" in split:
                for name, n in split["split"].str.strip().str.lower().value_counts().items():
                    if name in counts:
                        counts[name] = int(n)
        if getattr(args, "synthetic", None):
            counts["synthetic"] = len(pd.read_csv(Path(args.synthetic) / "synthetic.csv", usecols=[0], dtype=str))
    except (OSError, ValueError):
        pass
    return counts


def _cap(requested: Any, available: int) -> int:
    text = str(requested).strip().lower().removeprefix("max")
    return available if text in ("", "all", "none") else min(available, int(float(text)))


def estimate_seconds(stage: str, args: argparse.Namespace, counts: dict[str, int] | None = None,
                     cores: int | None = None) -> float:
    """A rough CPU wall time of the stage from the image counts and its settings (DenseNet-121-sized networks at
    :data:`FORWARD_PER_SECOND_2_CORES`); 0 when nothing is known. A GPU is many times faster."""
    counts = counts if counts is not None else _counts(args)
    rate = FORWARD_PER_SECOND_2_CORES * max(1, cores or os.cpu_count() or 2) / 2

    def forward(images: float, size: int = 224) -> float:
        return images * (size / 224) ** 2 / rate

    real, synthetic = counts["test"], counts["synthetic"]
    if stage == "utility":
        seconds = forward(real + synthetic)
        if str(getattr(args, "stage", "") or "pretrained") in ("retrained", "all"):
            n_real, n_syn = _cap(args.n_real, counts["train"]), _cap(args.n_synthetic, synthetic)
            sizes = {"real": n_real, "synthetic": n_syn, "real+synthetic": n_real + n_syn, "mixed": n_real}
            seeds = len([s for s in str(args.seeds).split(",") if s.strip()])
            for setting in str(args.settings).split(","):
                images = sizes.get(setting.split(":")[0].strip(), n_real)
                per_unit = args.epochs * (3 * images + counts["val"]) + counts["test"]
                seconds += seeds * forward(per_unit, int(args.image_size))
        return seconds
    if stage == "image_quality":
        n = getattr(args, "n", None)
        images = (min(n, real) if n else real) + (min(n, synthetic) if n else synthetic)
        if not getattr(args, "no_memorisation", False):
            images += counts["train"]
        return forward(images)
    if stage == "privacy":
        size = int(getattr(args, "reid_image_size", None) or 224)
        images = counts["train"] + counts["val"] + counts["test"] + synthetic
        seconds = forward(images, size)
        if getattr(args, "reid_train", False):
            seconds += forward(args.reid_epochs * 2 * 3 * counts["train"], size)
        if getattr(args, "alignment_model", None):
            seconds += forward(real + synthetic)
        return seconds
    return 0.0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def preset_line(stage: str, args: argparse.Namespace) -> str:
    """What the preset set and a rough CPU time estimate, one line, printed before the stage starts."""
    settings = ", ".join(f"{key.replace('_', '-')} {value}" for key, value in args.preset_settings.items())
    changed = f"; changed by flags: {', '.join(k.replace('_', '-') for k in args.preset_changes)}" \
        if args.preset_changes else ""
    counts = _counts(args)
    seconds = estimate_seconds(stage, args, counts)
    estimate = ""
    if seconds > 0:
        estimate = (f"; rough estimate on {os.cpu_count() or 2} CPU cores: {_duration(seconds)} for {counts['test']} "
                    f"real test, {counts['train']} train and {counts['synthetic']} synthetic images (a GPU is many "
                    "times faster)")
    marked = " (rows marked preset=quick, keyed apart from final ones)" if args.preset.startswith("quick") else ""
    return f"preset {args.preset}{marked}: {settings}{changed}{estimate}"
