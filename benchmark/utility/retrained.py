"""Retrained-classifier utility (RoentGen's data-augmentation tables): does training on synthetic images help a
classifier on real ones?

A DenseNet-121 (torchxrayvision's architecture, 1 channel) is trained for each *setting* and seed, selected on the
real validation split and tested on the real test split; synthetic images are only ever training data. Settings
(``--settings``, comma separated, each ``kind[:size]``):

* ``real[:N]`` N real training rows; ``synthetic[:M]`` M synthetic images;
* ``real+synthetic[:N+M]`` both together (augmentation);
* ``mixed[:N[@F]]`` N real training rows of which a fraction F is replaced by the synthetic images made *from those
  rows* (matched on ``source_row``), so the set keeps its size and labels.

A size is a count (``1100``, ``1.1k``), a fraction of what exists (``0.5``, ``50%``) or ``all``; a size above what
exists stops with an error unless ``with_replacement`` (then images repeat). Real rows and synthetic images are drawn
within strata (each row's rarest positive class), so every class gets its share of a small set; for a seed, every
setting of the same real size draws the same real rows, and every setting of the same synthetic size the same
synthetic images. Each row records the unit's training positives of its class (real and synthetic).

Per seed and class: AUROC (Newcombe interval widened by the patients' design effect), ``sens_at_spec`` (sensitivity
at specificity 0.9, the primary threshold metric) and accuracy, precision, recall, specificity, F1 at the model's
threshold (Youden's J on real val by default), with intervals from a joint bootstrap of val and test *patients* that
chooses the threshold again on every val resample; prevalence beside them. Per setting and class (``seed = mean``):
the mean over seeds with an interval that adds the seed-to-seed spread to the test-set sampling of the seed mean
(:func:`benchmark.core.stats.seed_mean_interval`). Every setting is compared with the ``real`` baseline on the same test
images by the same two variance parts (:func:`benchmark.core.stats.seed_mean_difference`), Holm-adjusted per metric over
settings x classes; with fewer than 3 seeds per side no test is made. Per-seed differences are descriptive.
Compared rows carry the AUROC difference detectable at 80% power and an ``underpowered`` flag. Real-only units do
not depend on the synthetic set and are reused by every sweep on the same split and training settings.

A sweep is resumable: each (setting, sizes, seed) writes its checkpoint, predictions and a done-marker under
``results/runs/<run_id>/units/``, and rerunning the same command finds that run and trains only what is missing.
Under ``accelerate launch`` / ``torchrun`` every process trains (DDP) and only the main process writes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import textwrap
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from benchmark.core.cli import add_set_arguments
from benchmark.core.provenance import config_hash, new_run_id
from benchmark.core.results import check_writable, run_dir, table_path, write_run_rows
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
    seed_mean_difference,
    seed_mean_interval,
    sensitivity_at_specificity,
    smoothed_youden_thresholds,
    youden_threshold,
)
from benchmark.data import DataError, SplitTable, atomic_write_text, label_matrix
from benchmark.data.generator_training import (
    SYNTHETIC_FROM,
    check_generator_overlap,
    check_synthetic_origins,
    synthetic_origins,
)
from benchmark.data.generator_training import resolve as resolve_generator_training
from benchmark.data.splits.common import image_strata
from benchmark.data.synthetic import SyntheticSet

TABLE = "utility_retrained"
SETTING_KINDS: tuple[str, ...] = ("real", "synthetic", "real+synthetic", "mixed")
TASKS: tuple[str, ...] = ("multilabel", "binary")
THRESHOLDS: tuple[str, ...] = ("val-youden", "0.5")
#: sensitivity is reported at this specificity by default (``--spec-target``), its threshold chosen on the test images
SPEC_TARGET = 0.9
#: a comparison whose smallest detectable AUROC difference (80% power, two-sided 0.05) exceeds this is underpowered
DETECTABLE_LIMIT = 0.1
THRESHOLD_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "specificity", "f1")
RESAMPLED: tuple[str, ...] = ("sens_at_spec", *THRESHOLD_METRICS)
#: the metrics of every row, each with its interval; every one is compared with the baseline
ROW_METRICS: tuple[str, ...] = ("auroc", *RESAMPLED)
COMPARED: tuple[str, ...] = ROW_METRICS
#: the printed table leads with the metrics that do not depend on prevalence, then those that do
PREVALENCE_FREE: tuple[str, ...] = ("auroc", "sens_at_spec", "recall", "specificity")
AT_PREVALENCE: tuple[str, ...] = ("accuracy", "precision")
TABLE_METRICS: tuple[str, ...] = (*PREVALENCE_FREE, *AT_PREVALENCE)
ARCHITECTURE = "DenseNet-121 (torchxrayvision, 1 channel)"


class SizeError(DataError):
    """A training-set size that the real split or the synthetic set cannot provide."""


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class RetrainedConfig:
    """Settings of the stage. Everything but the statistics and the progress bar shapes the trained models."""

    settings: tuple[str, ...] = ("real", "synthetic", "real+synthetic", "mixed")
    n_real: str = "all"
    n_synthetic: str = "all"
    mix_fraction: float = 0.5
    seeds: tuple[int, ...] = (0, 1, 2)
    task: str = "multilabel"
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    balance: str = "none"
    init: str | None = None
    augment: bool = True
    patience: int = 3
    mixed_precision: str = "no"
    num_workers: int = 0
    cpu_threads: int | None = None
    with_replacement: bool = False
    synthetic_from: str = "train"
    baseline: str | None = None
    threshold: str = "val-youden"
    spec_target: float = SPEC_TARGET
    n_resamples: int = 2000
    stats_seed: int = 0
    resume: bool = True
    progress: bool = True
    allow_generator_overlap: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.settings, str):
            self.settings = tuple(s.strip() for s in self.settings.split(",") if s.strip())
        if isinstance(self.seeds, (str, int)):
            self.seeds = str(self.seeds).split(",")
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        for name, value, allowed in (("task", self.task, TASKS), ("threshold", self.threshold, THRESHOLDS),
                                     ("synthetic_from", self.synthetic_from, SYNTHETIC_FROM),
                                     ("balance", self.balance, ("none", "loss", "sampler"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not 0.0 < self.mix_fraction <= 1.0:
            raise ValueError(f"mix_fraction must be in (0, 1], got {self.mix_fraction}")
        if not 0.0 < self.spec_target < 1.0:
            raise ValueError(f"spec_target must be in (0, 1), got {self.spec_target}")
        if self.init in ("", "scratch", "none"):
            self.init = None

    def training_record(self) -> dict[str, Any]:
        """The fields that shape a trained model (what a resumed run must share)."""
        skip = {"settings", "seeds", "n_real", "n_synthetic", "mix_fraction", "baseline", "n_resamples", "stats_seed",
                "resume", "progress", "num_workers", "spec_target", "allow_generator_overlap"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def add_retrained_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the stage's flags to ``parser`` (shared ones such as --n-resamples, --num-workers, --seed are not added)."""
    group = parser.add_argument_group("retrained-classifier utility")
    default = RetrainedConfig()
    group.add_argument("--settings", default=",".join(default.settings),
                       help="comma-separated kind[:size]: real[:N], synthetic[:M], real+synthetic[:N+M], "
                            "mixed[:N[@F]]; sizes are counts (1100, 1.1k), fractions (0.5, 50%%) or all, e.g. "
                            "'real:1.1k,synthetic:1.1k,mixed:1.1k,synthetic:5.5k,real+synthetic:1.1k+5.5k'")
    group.add_argument("--n-real", default=default.n_real, help="real size where a setting gives none (default all)")
    group.add_argument("--n-synthetic", default=default.n_synthetic,
                       help="synthetic size where a setting gives none (default all)")
    group.add_argument("--mix-fraction", type=float, default=default.mix_fraction,
                       help="mixed: fraction of the real rows replaced by their synthetic images (default 0.5)")
    group.add_argument("--seeds", default=",".join(map(str, default.seeds)), help="training seeds (default 0,1,2)")
    group.add_argument("--task", choices=TASKS, default=default.task,
                       help="one multi-label model, or one binary one-vs-rest model per class")
    group.add_argument("--epochs", type=int, default=default.epochs)
    group.add_argument("--image-size", type=int, default=default.image_size, help="training size in px (default 224)")
    group.add_argument("--train-batch-size", type=int, default=default.batch_size, help="per process")
    group.add_argument("--lr", type=float, default=default.lr)
    group.add_argument("--weight-decay", type=float, default=default.weight_decay)
    group.add_argument("--balance", choices=("none", "loss", "sampler"), default=default.balance,
                       help="class balance: positive weights in the loss, or a weighted sampler")
    group.add_argument("--init", default="scratch",
                       help="scratch, a torchxrayvision weights key (all, nih, pc, ...) or a checkpoint folder")
    group.add_argument("--no-augment", action="store_true", help="no random affine augmentation")
    group.add_argument("--patience", type=int, default=default.patience, help="early stopping on real val AUROC")
    group.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=default.mixed_precision)
    group.add_argument("--cpu-threads", type=int, default=default.cpu_threads,
                       help="on CPU, train with this many torch threads (CPU results depend on the thread count; "
                            "fix it for numbers that are the same on every machine; default: torch's setting)")
    group.add_argument("--with-replacement", action="store_true",
                       help="a size larger than what exists repeats images instead of stopping")
    group.add_argument("--synthetic-from", choices=SYNTHETIC_FROM, default=default.synthetic_from,
                       help="train (default): a synthetic image made from a val/test row stops the run (the "
                            "classifier would be tested on its real twin); train-subset: such images are left out; "
                            "any: they are used, and every row says so")
    group.add_argument("--baseline", help="the setting every other is compared with (default: the first real one)")
    group.add_argument("--decision-threshold", choices=THRESHOLDS, default=default.threshold,
                       help="threshold of accuracy / precision / recall / specificity / F1: Youden's J on the real "
                            "val split (re-chosen in every bootstrap resample of the val patients), or 0.5")
    group.add_argument("--spec-target", type=float, default=default.spec_target,
                       help="sens_at_spec, the primary threshold metric: sensitivity at this specificity "
                            "(default 0.9)")
    group.add_argument("--no-resume", action="store_true", help="start a new run even if this sweep was begun")


def retrained_config_from_args(args: argparse.Namespace) -> RetrainedConfig:
    """The :class:`RetrainedConfig` of parsed arguments (``add_retrained_arguments`` plus shared flags if present)."""
    return RetrainedConfig(
        settings=tuple(s.strip() for s in args.settings.split(",") if s.strip()), n_real=args.n_real,
        n_synthetic=args.n_synthetic, mix_fraction=args.mix_fraction,
        seeds=tuple(int(s) for s in str(args.seeds).split(",") if s.strip()), task=args.task,
        image_size=args.image_size, epochs=args.epochs, batch_size=args.train_batch_size, lr=args.lr,
        weight_decay=args.weight_decay, balance=args.balance, init=args.init, augment=not args.no_augment,
        patience=args.patience, mixed_precision=args.mixed_precision, cpu_threads=args.cpu_threads,
        num_workers=int(getattr(args, "num_workers", 0) or 0), with_replacement=args.with_replacement,
        synthetic_from=args.synthetic_from, baseline=args.baseline, threshold=args.decision_threshold,
        spec_target=float(getattr(args, "spec_target", SPEC_TARGET)),
        n_resamples=int(getattr(args, "n_resamples", 2000)), stats_seed=int(getattr(args, "seed", 0) or 0),
        resume=not args.no_resume, allow_generator_overlap=bool(getattr(args, "allow_generator_overlap", False)))


# ---------------------------------------------------------------------------------------------- settings, sizes

_SIZE = re.compile(r"(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<unit>k|%)?")


@dataclass(frozen=True)
class Size:
    """A training-set size: a count of images, or a fraction of those available."""

    count: int | None = None
    fraction: float | None = None

    def resolve(self, available: int) -> int:
        """The number of images this size means when ``available`` exist."""
        return self.count if self.count is not None else round(self.fraction * available)

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return "all" if self.fraction == 1.0 else f"{self.fraction:g}"


def parse_size(text: str) -> Size:
    """``1100`` / ``1.1k`` (counts), ``0.5`` / ``50%`` (fractions of what exists) or ``all``."""
    t = str(text).strip().lower()
    if t == "all":
        return Size(fraction=1.0)
    match = _SIZE.fullmatch(t)
    if not match:
        raise ValueError(f"size {text!r}: use a count (1100, 1.1k), a fraction (0.5, 50%) or all")
    value = float(match["num"])
    if match["unit"] == "k" or (match["unit"] is None and "." not in match["num"]):
        count = round(value * (1000 if match["unit"] == "k" else 1))
        if count < 1:
            raise ValueError(f"size {text!r} is no image at all")
        return Size(count=count)
    fraction = value / 100 if match["unit"] == "%" else value
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"size {text!r}: a fraction must lie in (0, 1] (write a whole number or 1.5k for counts)")
    return Size(fraction=fraction)


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its kind, the real size (mixed: the total before replacement), the synthetic size, the mix."""

    kind: str
    real: Size | None = None
    synthetic: Size | None = None
    mix_fraction: float | None = None

    @property
    def label(self) -> str:
        """Canonical text, e.g. ``real:all``, ``real+synthetic:1100+5500``, ``mixed:1100@0.5``."""
        if self.kind == "real":
            return f"real:{self.real}"
        if self.kind == "synthetic":
            return f"synthetic:{self.synthetic}"
        if self.kind == "real+synthetic":
            return f"real+synthetic:{self.real}+{self.synthetic}"
        return f"mixed:{self.real}@{self.mix_fraction:g}"


def parse_settings(items: Sequence[str] | str, n_real: str = "all", n_synthetic: str = "all",
                   mix_fraction: float = 0.5) -> list[SettingSpec]:
    """Parse ``kind[:size]`` items; ``n_real`` / ``n_synthetic`` / ``mix_fraction`` fill in what an item omits."""
    if isinstance(items, str):
        items = [s for s in items.split(",") if s.strip()]
    specs: list[SettingSpec] = []
    for item in items:
        kind, _, size = (part.strip() for part in item.strip().partition(":"))
        kind = kind.lower()
        try:
            if kind == "real":
                spec = SettingSpec("real", real=parse_size(size or n_real))
            elif kind == "synthetic":
                spec = SettingSpec("synthetic", synthetic=parse_size(size or n_synthetic))
            elif kind == "real+synthetic":
                real_text, plus, synthetic_text = size.partition("+")
                if size and not plus:
                    raise ValueError("give both sizes as N+M, e.g. real+synthetic:1100+5500")
                spec = SettingSpec(kind, real=parse_size(real_text or n_real),
                                   synthetic=parse_size(synthetic_text or n_synthetic))
            elif kind == "mixed":
                total, _, fraction = size.partition("@")
                f = float(fraction) if fraction else float(mix_fraction)
                if not 0.0 < f <= 1.0:
                    raise ValueError(f"the mixed fraction must lie in (0, 1], got {f:g}")
                spec = SettingSpec(kind, real=parse_size(total or n_real), mix_fraction=f)
            else:
                raise ValueError(f"unknown kind {kind!r}; use {', '.join(SETTING_KINDS)}")
        except ValueError as exc:
            raise ValueError(f"setting {item.strip()!r}: {exc}") from None
        if spec in specs:
            raise ValueError(f"setting {spec.label!r} is given twice")
        specs.append(spec)
    if not specs:
        raise ValueError("no settings given")
    return specs


# ---------------------------------------------------------------------------------------------- training sets


@dataclass
class Pools:
    """What training sets are drawn from.

    ``train_rows`` (R,): positions of the real train rows in the split CSV (the numbering of ``source_row``);
    ``train_labels`` (R, C); ``synthetic_rows`` (M,): rows of ``synthetic.csv`` that may be trained on;
    ``synthetic_labels`` (M, C); ``synthetic_source`` (M,): each image's ``source_row`` (-1 when unknown).
    Labels are float32 1 / 0 / NaN. Draws are stratified by :meth:`train_strata` / :meth:`synthetic_strata`.
    """

    train_rows: np.ndarray
    train_labels: np.ndarray
    synthetic_rows: np.ndarray
    synthetic_labels: np.ndarray
    synthetic_source: np.ndarray
    synthetic_from: str = ""  # which synthetic images were allowed, and the origin counts (rows carry it)

    def train_strata(self) -> np.ndarray:
        """(R,) stratum of each real train row: its rarest positive class in the pool, else ``none``."""
        return image_strata(self.train_labels, [str(j) for j in range(self.train_labels.shape[1])])

    def synthetic_strata(self) -> np.ndarray:
        """(M,) stratum of each usable synthetic image, as :meth:`train_strata`."""
        return image_strata(self.synthetic_labels, [str(j) for j in range(self.synthetic_labels.shape[1])])

    def positives(self, training: TrainingSet) -> np.ndarray:
        """(2, C) int: training images positive for each class, real rows then synthetic images."""
        return np.stack([(np.nan_to_num(labels, nan=0.0) > 0.5).sum(axis=0) for labels in
                         (self.train_labels[training.real], self.synthetic_labels[training.synthetic])])


def make_pools(real: SplitTable, synthetic: SyntheticSet, classes: Sequence[str],
               synthetic_from: str = "train") -> Pools:
    """Real train rows and usable synthetic images with their labels for ``classes``.

    Synthetic images made from val / test rows (:func:`benchmark.data.generator_training.synthetic_origins`) stop the
    run under ``synthetic_from="train"``, are left out under ``"train-subset"`` and used under ``"any"``."""
    missing = [c for c in classes if c not in synthetic.frame.columns]
    if missing:
        raise DataError(f"{synthetic.root}/synthetic.csv has no label column {missing[0]!r}; the synthetic set must "
                        "carry the labels of the rows it was made from")
    split = real.frame["split"].to_numpy()
    train_rows = np.flatnonzero(split == "train")
    if train_rows.size == 0:
        raise DataError(f"{real.source}: no train rows (split == 'train')")
    source = pd.to_numeric(synthetic.frame["source_row"], errors="coerce").to_numpy(dtype=float)
    source = np.where(np.isfinite(source) & (source >= 0) & (source == np.round(source)), source, -1).astype(np.int64)
    allowed, note = check_synthetic_origins(synthetic_origins(real, synthetic), synthetic_from,
                                            str(synthetic.root / "synthetic.csv"))
    rows = np.flatnonzero(allowed)
    labels = synthetic.for_classes(list(classes)).labels()
    return Pools(train_rows, real.labels()[train_rows] if list(real.classes) == list(classes)
                 else label_matrix(real.frame, list(classes), real.source)[train_rows], rows, labels[rows],
                 source[rows], note)


@dataclass
class TrainingSet:
    """One unit's training images as pool indices: ``real`` (n_real,) into ``Pools.train_rows``, ``synthetic``
    (n_synthetic,) into ``Pools.synthetic_rows``; for ``mixed``, ``replaced`` (n_synthetic,) lists the train-pool
    rows whose image was swapped for ``synthetic`` (same order)."""

    real: np.ndarray
    synthetic: np.ndarray
    replaced: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def labels(self, pools: Pools) -> np.ndarray:
        """Float32 ``(n_real + n_synthetic, C)``: the real rows' labels, then the synthetic images'."""
        return np.concatenate([pools.train_labels[self.real], pools.synthetic_labels[self.synthetic]])

    def fingerprint(self) -> str:
        """Short hash of the exact images drawn (a resumed unit must have drawn the same)."""
        digest = hashlib.sha256()
        for part in (self.real, self.synthetic, self.replaced):
            digest.update(np.asarray(part, dtype=np.int64).tobytes() + b"|")
        return digest.hexdigest()[:16]


def stratified_sample(strata: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct indices into ``strata`` (``n`` at most its length), each stratum's count its proportional share
    ``n * size / total`` rounded by largest remainder (ties at random): every stratum gets the floor or the ceiling of
    its expected count, so a class expected twice is drawn twice, never 0 times by chance. Returned in random order."""
    names, inverse, sizes = np.unique(np.asarray(strata).astype(str), return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    quota = n * sizes / sizes.sum()
    counts = np.floor(quota).astype(np.int64)
    rest = int(n - counts.sum())
    if rest:
        order = np.lexsort((rng.random(names.size), -(quota - counts)))  # largest remainder first, ties at random
        counts[order[:rest]] += 1
    parts = [np.flatnonzero(inverse == k)[rng.permutation(int(sizes[k]))[:counts[k]]] for k in range(names.size)]
    return rng.permutation(np.concatenate(parts)).astype(np.int64)


def _draw(strata: np.ndarray, n: int, rng: np.random.Generator, with_replacement: bool, what: str,
          setting: str) -> np.ndarray:
    """``n`` indices below ``len(strata)``, drawn within strata (:func:`stratified_sample`); with replacement each
    index ``n // available`` times and a stratified draw of the rest once more. A size above what is available
    without replacement raises :class:`SizeError`."""
    available = len(strata)
    if available == 0:
        raise SizeError(f"setting {setting!r} needs {what} but none are available")
    if n < 1:
        raise SizeError(f"setting {setting!r} resolves to {n} {what}; give a larger size")
    if n > available and not with_replacement:
        raise SizeError(f"setting {setting!r} asks for {n} {what} but only {available} exist; ask for at most "
                        f"{available} (or a fraction such as 0.5, or all) or pass --with-replacement to repeat images")
    repeats, rest = divmod(n, available)
    parts = [rng.permutation(available) for _ in range(repeats)] + [stratified_sample(strata, rest, rng)]
    return np.concatenate(parts).astype(np.int64)


def build_training_set(spec: SettingSpec, pools: Pools, seed: int, with_replacement: bool = False) -> TrainingSet:
    """The training images of ``spec`` for ``seed`` (deterministic; see the module docstring for the sharing rule).

    Real rows and synthetic images are drawn within strata (each row's rarest positive class), so every class gets
    its share of a small training set."""
    n_pool, m_pool = len(pools.train_rows), len(pools.synthetic_rows)

    def real_draw(n: int) -> np.ndarray:
        return _draw(pools.train_strata(), n, np.random.default_rng([seed, 1, n]), with_replacement,
                     "real train images", spec.label)

    def synthetic_draw(m: int) -> np.ndarray:
        return _draw(pools.synthetic_strata(), m, np.random.default_rng([seed, 2, m]), with_replacement,
                     "synthetic images", spec.label)

    empty = np.zeros(0, dtype=np.int64)
    if spec.kind == "real":
        return TrainingSet(real_draw(spec.real.resolve(n_pool)), empty)
    if spec.kind == "synthetic":
        return TrainingSet(empty, synthetic_draw(spec.synthetic.resolve(m_pool)))
    if spec.kind == "real+synthetic":
        return TrainingSet(real_draw(spec.real.resolve(n_pool)), synthetic_draw(spec.synthetic.resolve(m_pool)))
    return _mixed(spec, pools, real_draw(spec.real.resolve(n_pool)), seed)


def _mixed(spec: SettingSpec, pools: Pools, chosen: np.ndarray, seed: int) -> TrainingSet:
    """Replace ``round(F * n)`` of the ``chosen`` train-pool rows by a synthetic image made from that row."""
    n = len(chosen)
    k = round(spec.mix_fraction * n)
    if k < 1:
        raise SizeError(f"setting {spec.label!r} replaces no image ({spec.mix_fraction:g} of {n}); raise the fraction")
    by_source: dict[int, list[int]] = {}
    for index, source in enumerate(pools.synthetic_source):
        if source >= 0:
            by_source.setdefault(int(source), []).append(index)
    eligible = np.array([p for p, row in enumerate(chosen) if int(pools.train_rows[row]) in by_source], dtype=np.int64)
    if len(eligible) < k:
        raise SizeError(f"setting {spec.label!r} replaces {k} of {n} real train rows, but only {len(eligible)} of them "
                        f"have synthetic images made from them (source_row); the synthetic set covers "
                        f"{len(by_source)} distinct source rows. Generate from the train split (generate --split "
                        "train), lower the fraction or the size")
    rng = np.random.default_rng([seed, 3, n, k])
    picked = np.sort(rng.choice(eligible, size=k, replace=False))
    replaced = chosen[picked]
    synthetic = np.array([rng.choice(by_source[int(pools.train_rows[row])]) for row in replaced], dtype=np.int64)
    real_labels, synthetic_labels = pools.train_labels[replaced], pools.synthetic_labels[synthetic]
    same = (real_labels == synthetic_labels) | (np.isnan(real_labels) & np.isnan(synthetic_labels))
    if not same.all():
        bad = int(np.flatnonzero(~same.all(axis=1))[0])
        raise DataError(f"setting {spec.label!r}: the synthetic image in synthetic.csv row "
                        f"{int(pools.synthetic_rows[synthetic[bad]]) + 1} claims source_row "
                        f"{int(pools.train_rows[replaced[bad]])} but its labels {synthetic_labels[bad].tolist()} "
                        f"differ from that row's {real_labels[bad].tolist()}: was the set made from another CSV?")
    return TrainingSet(np.delete(chosen, picked), synthetic, replaced)


@dataclass
class Unit:
    """One training run of the sweep: a setting at resolved sizes, a seed, and its training images."""

    spec: SettingSpec
    seed: int
    training: TrainingSet

    @property
    def n_real(self) -> int:
        return len(self.training.real)

    @property
    def n_synthetic(self) -> int:
        return len(self.training.synthetic)

    @property
    def id(self) -> str:
        """Folder name under ``units/``, e.g. ``real+synthetic_r392_s784_seed0`` (``+`` kept: it is folder-safe)."""
        return f"{self.spec.kind}_r{self.n_real}_s{self.n_synthetic}_seed{self.seed}"

    def record(self) -> dict[str, Any]:
        """What a done-marker must match for the unit to count as done."""
        return {"setting": self.spec.kind, "setting_spec": self.spec.label, "n_real": self.n_real,
                "n_synthetic": self.n_synthetic, "seed": self.seed, "training_set": self.training.fingerprint()}


def plan_units(specs: Sequence[SettingSpec], seeds: Sequence[int], pools: Pools,
               with_replacement: bool = False) -> list[Unit]:
    """Every (setting, seed) unit in sweep order (setting-major); every size is checked before anything trains."""
    units = [Unit(spec, int(seed), build_training_set(spec, pools, int(seed), with_replacement))
             for spec in specs for seed in seeds]
    seen: dict[str, str] = {}
    for unit in units:
        if unit.id in seen:
            raise ValueError(f"settings {seen[unit.id]!r} and {unit.spec.label!r} give the same training set "
                             f"({unit.id}); drop one")
        seen[unit.id] = unit.spec.label
    return units


def baseline_spec(specs: Sequence[SettingSpec], baseline: str | None) -> SettingSpec | None:
    """The setting compared against: ``baseline`` (a setting item) or the first ``real`` one; None if there is none."""
    if baseline:
        wanted = parse_settings([baseline])[0]
        for spec in specs:
            if spec == wanted or spec.label == baseline.strip():
                return spec
        raise ValueError(f"baseline {baseline!r} is not among the settings {[s.label for s in specs]}")
    return next((s for s in specs if s.kind == "real"), None)


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


def _percentile(values: np.ndarray, confidence: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(v, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


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
        boot = _percentile(e.reps[m], confidence)
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
        low, high = _percentile(e.reps[m] - b.reps[m], confidence) if math.isfinite(diff) else (math.nan, math.nan)
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
                   spec_target: float = SPEC_TARGET) -> pd.DataFrame:
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
    for j, name in enumerate(classes):
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


# ---------------------------------------------------------------------------------------------- the printed table


def _stars(p: float) -> str:
    if not isinstance(p, float) or math.isnan(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else " ns"


def _cell(row: pd.Series, m: str, width: int) -> str:
    value = row.get(m)
    if not isinstance(value, float) or math.isnan(value):
        return f"{'undefined':<{width}}"
    cell = f"{value:.3f} [{row.get(f'{m}_ci_low', math.nan):.3f}, {row.get(f'{m}_ci_high', math.nan):.3f}]"
    diff = row.get(f"{m}_diff_vs_real")
    if isinstance(diff, float) and not math.isnan(diff):
        cell += f" {diff:+.3f}{_stars(row.get(f'{m}_p_vs_real_holm', math.nan))}"
    return f"{cell:<{width}}"


def format_retrained_table(summary: pd.DataFrame) -> str:
    """RoentGen-shaped text: one block per class, rows = settings with their sizes; columns = the prevalence-free
    metrics (AUROC, sensitivity at the target specificity, recall and specificity at the val threshold), then
    accuracy and precision at the test prevalence; each as mean [95% CI] with the change against the real baseline
    (Holm-adjusted stars, only with enough seeds), the AUROC difference detectable at 80% power, and flags.

    ``summary`` is :attr:`RetrainedOutcome.summary` (the ``seed = mean`` rows); a full table is filtered to them.
    """
    if summary is None or len(summary) == 0:
        return "(no retrained results)"
    frame = summary[summary["seed"].astype(str) == "mean"] if "seed" in summary else summary
    width = 30
    target = next((float(t) for t in frame.get("sens_at_spec_target", pd.Series(dtype=float)) if pd.notna(t)),
                  SPEC_TARGET)
    names = {"auroc": "AUROC", "sens_at_spec": f"sens@spec{target:g}", "recall": "recall", "specificity":
             "specificity", "accuracy": "accuracy", "precision": "precision"}
    head = f"{'setting':<30} {'real':>6} {'synth':>6} {'seeds':>5} | "
    baseline = next((b for b in frame.get("baseline", pd.Series(dtype=str)) if isinstance(b, str) and b), "")
    family = next((f for f in frame.get("holm_family", pd.Series(dtype=str)) if isinstance(f, str) and f),
                  "per metric over settings x classes")
    against = baseline or "the real baseline"
    lines = [f"Retrained {ARCHITECTURE}: selected on real val, tested on real test images. Mean over seeds [95% CI: "
             f"seed spread + test-set sampling, patients resampled], then the change vs {against} (seed-mean test, "
             f"Welch t; Holm-adjusted {family}: "
             f"* p<0.05, ** p<0.01, *** p<0.001, ns not significant). No stars below {MIN_SEEDS_FOR_SPREAD} seeds "
             "per setting (seeds marked †: the CI covers test-set sampling only). recall / specificity / accuracy / "
             "precision at each model's threshold chosen on real val (re-chosen in every bootstrap resample); "
             "MDD80: the AUROC difference detectable with 80% power (! above "
             f"{DETECTABLE_LIMIT:g}: 'no significant difference' is not evidence of equality); train+: positive "
             "training images of the class (mean over seeds)."]
    lines = textwrap.wrap(lines[0], 120)
    for name, block in frame.groupby("class", sort=False):
        first = block.iloc[0]
        prevalence = first.get("prevalence", math.nan)
        lines += ["", f"== {name} (real test images: n={int(first['n_test'])}, {int(first['positives'])} positive, "
                      f"prevalence {prevalence:.3f}) =="]
        for group, metrics in (("prevalence-free", PREVALENCE_FREE), (f"at the test prevalence {prevalence:.3f}",
                                                                      AT_PREVALENCE)):
            header = head + " | ".join(f"{names[m]:<{width}}" for m in metrics)
            if group == "prevalence-free":
                header += " | MDD80  train+"
            lines += [f"-- {group}", header, "-" * len(header)]
            for _, row in block.iterrows():
                label = str(row["setting_spec"]) + (" (baseline)" if row["setting_spec"] == baseline else "")
                n_seeds = int(row["n_seeds"])
                seeds = f"{n_seeds}{'†' if n_seeds < MIN_SEEDS_FOR_SPREAD else ''}"
                line = (f"{label:<30} {int(row['n_real']):>6} {int(row['n_synthetic']):>6} {seeds:>5} | "
                        + " | ".join(_cell(row, m, width) for m in metrics))
                if group == "prevalence-free":
                    mdd = row.get("auroc_mdd80", math.nan)
                    mdd = (f"{mdd:.3f}{'!' if mdd > DETECTABLE_LIMIT else ' '}"
                           if isinstance(mdd, float) and math.isfinite(mdd) else f"{'-':<6}")
                    train = row.get("train_positives", math.nan)
                    line += f" | {mdd:<6} {'' if not math.isfinite(float(train)) else f'{train:g}':>6}"
                lines.append(line.rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the stage


@dataclass
class RetrainedOutcome:
    """What the stage produced. ``table``: every row written (per seed and ``mean``); ``summary``: the mean rows;
    ``trained`` / ``resumed``: unit ids trained by this call / taken from an earlier call of the same sweep;
    ``reused``: real-only units copied from another sweep on the same real split and training settings. On non-main
    processes of a distributed run the frames are empty."""

    table: pd.DataFrame
    summary: pd.DataFrame
    run_id: str
    run_folder: Path
    trained: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def _frame_digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes()).hexdigest()


def sweep_key(real: SplitTable, synthetic: SyntheticSet, classes: Sequence[str], config: RetrainedConfig,
              model_name: str, extra_info: str, num_processes: int) -> str:
    """Identity of a sweep for resuming: data, classes, training settings, model name, process count."""
    return config_hash({"stage": "retrained", "model_name": model_name, "extra_info": extra_info,
                        "classes": list(classes), "real": _frame_digest(real.frame), "real_root": str(real.image_root),
                        "synthetic": _frame_digest(synthetic.frame), "synthetic_root": str(synthetic.root),
                        "training": config.training_record(), "num_processes": num_processes})


def real_key(real: SplitTable, classes: Sequence[str], config: RetrainedConfig, num_processes: int) -> str:
    """Identity of what a real-only unit depends on: the real split, classes, training settings, process count.

    Units trained on real images alone are the same whatever the synthetic set, so every sweep on this split reuses
    them (the same real baseline for every generator compared).
    """
    training = {k: v for k, v in config.training_record().items() if k != "synthetic_from"}
    return config_hash({"stage": "retrained-real", "classes": list(classes), "real": _frame_digest(real.frame),
                        "real_root": str(real.image_root), "training": training, "num_processes": num_processes})


def _find_run(runs_root: Path, key: str) -> str | None:
    """The newest run folder whose ``sweep.json`` has ``key``."""
    found = []
    for path in runs_root.glob("*/sweep.json"):
        try:
            if json.loads(path.read_text()).get("sweep_key") == key:
                found.append(path.parent.name)
        except (OSError, json.JSONDecodeError):
            continue
    return max(found) if found else None


def _unit_done(unit_folder: Path, unit: Unit, test_paths: Sequence[str], key: str | None = None) -> bool:
    """Whether ``unit_folder`` holds this unit finished (done-marker last), tested on ``test_paths`` (and, if given,
    trained under real-only ``key``)."""
    try:
        done = json.loads((unit_folder / "done.json").read_text())
        predictions = pd.read_csv(unit_folder / "predictions_test.csv", usecols=["image"])
    except (OSError, json.JSONDecodeError, ValueError):
        return False
    return (done.get("unit") == unit.record() and (key is None or done.get("real_key") == key)
            and predictions["image"].astype(str).tolist() == list(test_paths))


def _reuse_real_unit(runs_root: Path, folder: Path, unit: Unit, key: str, test_paths: Sequence[str]) -> bool:
    """Copy a finished real-only ``unit`` of another run with the same real ``key`` into ``folder``; True if found."""
    import shutil

    for source in sorted(runs_root.glob(f"*/units/{unit.id}"), reverse=True):
        if source.parent.parent.resolve() == folder.resolve() or not _unit_done(source, unit, test_paths, key):
            continue
        target = folder / "units" / unit.id
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("done.json"))
        done = json.loads((source / "done.json").read_text())
        done["reused_from"] = done.get("reused_from") or source.parent.parent.name
        atomic_write_text(target / "done.json", json.dumps(done, indent=2) + "\n")
        return True
    return False


def _load_unit(folder: Path, unit: Unit, classes: Sequence[str], pools: Pools) -> UnitPredictions:
    """A finished unit's test and val scores, thresholds and training positives, as written (or copied) there."""
    target = folder / "units" / unit.id
    done = json.loads((target / "done.json").read_text())
    columns = [f"score:{c}" for c in classes]
    scores = pd.read_csv(target / "predictions_test.csv")[columns].to_numpy(np.float64)
    val_file = target / "predictions_val.csv"
    val_scores = pd.read_csv(val_file)[columns].to_numpy(np.float64) if val_file.is_file() else None
    return UnitPredictions(unit.spec.kind, unit.spec.label, unit.n_real, unit.n_synthetic, unit.seed, scores,
                           np.asarray(done["thresholds"], dtype=np.float64), done["info"], val_scores=val_scores,
                           threshold_policy=done["info"].get("threshold_policy", "val-youden"),
                           train_positives=pools.positives(unit.training))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, flush=True)


@torch.no_grad()
def _predict(model: torch.nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 128) -> np.ndarray:
    """Probabilities float64 ``(N, n_outputs)`` of a selected model (sigmoid outputs) for ``(N, 1, S, S)`` images."""
    model = model.to(device).eval()
    out = [model(images[i:i + batch_size].to(device)).float().cpu().numpy() for i in range(0, len(images), batch_size)]
    model.to("cpu")
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def _thresholds(val_labels: np.ndarray, val_scores: np.ndarray, policy: str) -> np.ndarray:
    """Per class: Youden's J on the real validation split (0.5 where it lacks both labels), or 0.5."""
    out = np.full(val_labels.shape[1], 0.5)
    if policy == "0.5":
        return out
    for j in range(val_labels.shape[1]):
        known = ~np.isnan(val_labels[:, j])
        y = val_labels[known, j]
        if 0 < y.sum() < len(y):
            out[j] = youden_threshold(y, val_scores[known, j])
    return out


def _distributed_state() -> Any:
    """accelerate's process state, set up as :func:`benchmark.models.training.train_classifier` sets it up (``cpu``
    when no
    GPU). Created first without ``cpu``, it would miss a CPU launch by torchrun / accelerate: one process each."""
    from accelerate import PartialState

    from benchmark.fidelity.features import release_process_group_at_exit

    state = PartialState(cpu=not torch.cuda.is_available())
    release_process_group_at_exit()
    return state


def _model_checksum(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


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


def _train_unit(unit: Unit, x: torch.Tensor, y: np.ndarray, val_x: torch.Tensor, val_y: np.ndarray,
                classes: Sequence[str], config: RetrainedConfig) -> dict[str, Any]:
    """Train the unit's model(s) (every process); returns models, histories, best epochs, val AUROCs by model name.

    ``x`` ``(n, 1, S, S)`` in [-1024, 1024], ``y`` ``(n, C)``; multilabel trains one model named ``all``, binary one
    model per class (named after it) on that class's column.
    """
    from benchmark.models.training import TrainConfig, train_classifier

    train_config = TrainConfig(image_size=config.image_size, epochs=config.epochs, batch_size=config.batch_size,
                               lr=config.lr, weight_decay=config.weight_decay, seed=unit.seed, init=config.init,
                               balance=config.balance, augment=config.augment, patience=config.patience,
                               num_workers=config.num_workers, mixed_precision=config.mixed_precision,
                               cpu_threads=config.cpu_threads)
    targets = {"all": slice(None)} if config.task == "multilabel" else {c: slice(j, j + 1) for j, c in
                                                                        enumerate(classes)}
    out: dict[str, Any] = {"models": {}, "histories": {}, "best_epochs": {}, "best_val_auroc": {}}
    for name, columns in targets.items():
        result = train_classifier(x, y[:, columns], val_x, val_y[:, columns], train_config, progress=config.progress,
                                  description=unit.id if name == "all" else f"{unit.id} {name}")
        out["models"][name] = result.model
        out["histories"][name] = result.history
        out["best_epochs"][name] = result.best_epoch
        out["best_val_auroc"][name] = result.best_val_auroc
    return out


def run_retrained_stage(
    real: SplitTable,
    synthetic: SyntheticSet,
    config: RetrainedConfig,
    *,
    model_name: str,
    extra_info: str = "",
    results_dir: str | Path | None = None,
    run_id: str | None = None,
) -> RetrainedOutcome:
    """Plan, train (or resume), evaluate and write a retrained-classifier sweep (SPEC §4 rows + run files).

    Sizes and the mixed matching are checked for every unit before anything trains. The run folder is ``run_id``'s,
    else (with ``config.resume``) the newest run of the same sweep, else a new one.
    """
    from accelerate.utils import broadcast_object_list, gather_object

    from benchmark.models.classifiers import save_checkpoint
    from benchmark.models.training import PRELOAD_LIMIT_BYTES, load_tensors

    state = _distributed_state()
    main = state.is_main_process
    talk = config.progress and main
    classes = list(real.classes)
    check_writable(TABLE, results_dir)  # before any training: a full disk or a corrupt CSV stops here
    generator = check_generator_overlap(
        resolve_generator_training(synthetic.manifest.get("generator_training"),
                                   where=str(synthetic.root / "manifest.json")),
        real, allow=config.allow_generator_overlap)
    specs = parse_settings(config.settings, config.n_real, config.n_synthetic, config.mix_fraction)
    baseline = baseline_spec(specs, config.baseline)
    if baseline is not None:  # the baseline trains first, so every later unit can be compared as soon as it is done
        specs = [baseline] + [s for s in specs if s != baseline]
    pools = make_pools(real, synthetic, classes, config.synthetic_from)
    extra_columns = {**generator.columns(), "synthetic_from": pools.synthetic_from}
    units = plan_units(specs, config.seeds, pools, config.with_replacement)
    val, test = real.subset("val"), real.subset("test")
    if len(val.frame) == 0 or len(test.frame) == 0:
        raise DataError(f"{real.source}: the retrained stage needs real val and test rows (patient-disjoint splits)")
    val_y, test_y = val.labels(), test.labels()
    if not any(0 < np.nansum(val_y[:, j]) < (~np.isnan(val_y[:, j])).sum() for j in range(len(classes))):
        raise DataError(f"{real.source}: no class has both labels among the real val rows; model selection needs them")
    test_paths = [str(p) for p in test.image_paths()]
    statistics = {"n_resamples": config.n_resamples, "seed": config.stats_seed, "spec_target": config.spec_target,
                  "test_patients": test.frame["patient_id"].astype(str).to_numpy(), "val_labels": val_y,
                  "val_patients": val.frame["patient_id"].astype(str).to_numpy()}

    key = sweep_key(real, synthetic, classes, config, model_name, extra_info, state.num_processes)
    real_only_key = real_key(real, classes, config, state.num_processes)
    decision: list[Any] = [None, [], [], ""]
    if main:
        try:
            decision = list(_open_run(units, key, real_only_key, config, run_id, results_dir, test_paths, real,
                                      synthetic, model_name, extra_info, classes))
        except (ValueError, OSError) as exc:
            decision = [None, [], [], str(exc)]
    decision = broadcast_object_list(decision, from_process=0) if state.num_processes > 1 else decision
    run_id, done_ids, reused, error = decision
    if error:
        raise ValueError(error)
    folder = run_dir(run_id, results_dir)
    done_ids = set(done_ids) | set(reused)
    todo = [u for u in units if u.id not in done_ids]
    _say(f"retrained sweep {run_id}: {len(units)} units ({len(units) - len(todo) - len(reused)} done earlier, "
         f"{len(reused)} real-only taken from other runs, {len(todo)} to train) in {folder}", talk)

    real_needed = np.unique(np.concatenate([u.training.real for u in todo] or [np.zeros(0, np.int64)]))
    synthetic_needed = np.unique(np.concatenate([u.training.synthetic for u in todo] or [np.zeros(0, np.int64)]))
    n_images = len(real_needed) + len(synthetic_needed) + len(val.frame) + len(test.frame)
    if n_images * config.image_size**2 * 4 > PRELOAD_LIMIT_BYTES:
        raise MemoryError(f"{n_images} images at {config.image_size} px need "
                          f"{n_images * config.image_size**2 * 4 / 1e9:.1f} GB in memory; use a smaller --image-size")
    real_x = synthetic_x = val_x = test_x = None
    if todo:
        real_paths = real.image_paths()
        synthetic_paths = synthetic.image_paths()
        real_x = load_tensors([real_paths[int(pools.train_rows[i])] for i in real_needed], config.image_size,
                              config.num_workers) if len(real_needed) else None
        synthetic_x = load_tensors([synthetic_paths[int(pools.synthetic_rows[i])] for i in synthetic_needed],
                                   config.image_size, config.num_workers) if len(synthetic_needed) else None
        val_x = load_tensors(val.image_paths(), config.image_size, config.num_workers)
        test_x = load_tensors(test.image_paths(), config.image_size, config.num_workers) if main else None

    predictions: list[UnitPredictions] = []
    trained, resumed = [], []
    for number, unit in enumerate(units, 1):
        if unit.id in done_ids:
            if unit.id not in reused:
                resumed.append(unit.id)
            if main:
                predictions.append(_load_unit(folder, unit, classes, pools))
            continue
        _say(f"[{number}/{len(units)}] {unit.spec.label} seed {unit.seed}: {unit.n_real} real + {unit.n_synthetic} "
             f"synthetic training images", talk)
        started = time.perf_counter()
        parts = []
        if unit.n_real:
            parts.append(real_x[np.searchsorted(real_needed, unit.training.real)])
        if unit.n_synthetic:
            parts.append(synthetic_x[np.searchsorted(synthetic_needed, unit.training.synthetic)])
        trained_models = _train_unit(unit, torch.cat(parts), unit.training.labels(pools), val_x, val_y, classes,
                                     config)
        checksums = {name: _model_checksum(model) for name, model in trained_models["models"].items()}
        every = gather_object([checksums]) if state.num_processes > 1 else [checksums]
        if any(c != checksums for c in every):
            raise RuntimeError(f"{unit.id}: the processes selected different models ({every}); DDP went out of step")
        trained.append(unit.id)
        if main:
            prediction = _save_unit(folder, unit, trained_models, pools, real, synthetic, classes, config, val_x, val_y,
                                    test_x, test_y, test_paths, time.perf_counter() - started, state,
                                    save_checkpoint, real_only_key)
            predictions.append(prediction)
            base = [p for p in predictions if baseline is not None and p.setting_spec == baseline.label
                    and p.seed == unit.seed and p is not prediction]
            partial = evaluate_units([*base, prediction], test_y, classes,
                                     baseline=baseline.label if baseline else None, mean_rows=False, **statistics)
            partial = partial[(partial["setting_spec"] == unit.spec.label) & (partial["seed"] == str(unit.seed))]
            _write_rows(partial, model_name, extra_info, run_id, real, synthetic, config, results_dir,
                        folder=folder, extra_columns=extra_columns, copy_name=f"rows_{unit.id}.csv")
        state.wait_for_everyone()

    if not main:
        return RetrainedOutcome(pd.DataFrame(), pd.DataFrame(), run_id, folder, trained, resumed, reused)
    table = evaluate_units(predictions, test_y, classes, baseline=baseline.label if baseline else None,
                           **statistics)
    table = _write_rows(table, model_name, extra_info, run_id, real, synthetic, config, results_dir, folder=folder,
                        extra_columns=extra_columns)
    summary = table[table["seed"] == "mean"].reset_index(drop=True)
    atomic_write_text(folder / "summary.txt", format_retrained_table(summary) + "\n")
    plot_sweep_curves(folder, units)
    info = json.loads((folder / "sweep.json").read_text())
    info.update({"status": "complete", "completed": [u.id for u in units]})
    atomic_write_text(folder / "sweep.json", json.dumps(info, indent=2) + "\n")
    return RetrainedOutcome(table, summary, run_id, folder, trained, resumed, reused)


def _open_run(units: Sequence[Unit], key: str, real_only_key: str, config: RetrainedConfig, run_id: str | None,
              results_dir: str | Path | None, test_paths: Sequence[str], real: SplitTable, synthetic: SyntheticSet,
              model_name: str, extra_info: str,
              classes: Sequence[str]) -> tuple[str, list[str], list[str], str]:
    """Main process: choose the run folder (given, resumed or new), write ``sweep.json``, list the units done here
    and the real-only units copied from other runs."""
    runs_root = table_path(TABLE, results_dir).parent / "runs"
    if run_id is None and config.resume:
        run_id = _find_run(runs_root, key)
    run_id = run_id or new_run_id("retrained")
    folder = run_dir(run_id, results_dir)
    sweep_file = folder / "sweep.json"
    if sweep_file.is_file():
        existing = json.loads(sweep_file.read_text())
        if existing.get("sweep_key") != key:
            raise ValueError(f"{folder} holds another sweep (other data, classes or training settings); give a new "
                             "run id or none")
    done = [u.id for u in units if _unit_done(folder / "units" / u.id, u, test_paths)]
    reused = [u.id for u in units if u.id not in done and u.n_synthetic == 0 and config.resume
              and _reuse_real_unit(runs_root, folder, u, real_only_key, test_paths)]
    info = {"sweep_key": key, "real_key": real_only_key, "stage": "retrained", "model_name": model_name,
            "extra_info": extra_info, "real_csv": str(real.source), "synthetic_dir": str(synthetic.root),
            "classes": list(classes), "config": asdict(config),
            "units": [u.record() | {"id": u.id} for u in units], "status": "running", "command": sys.argv}
    atomic_write_text(sweep_file, json.dumps(info, indent=2, default=str) + "\n")
    return run_id, done, reused, ""


def _save_unit(folder: Path, unit: Unit, trained: dict[str, Any], pools: Pools, real: SplitTable,
               synthetic: SyntheticSet, classes: Sequence[str], config: RetrainedConfig, val_x: torch.Tensor,
               val_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray, test_paths: Sequence[str], elapsed: float,
               state: Any, save_checkpoint: Any, real_only_key: str) -> UnitPredictions:
    """Main process: checkpoint(s), predictions, training list, curves, then the done-marker (written last)."""
    target = folder / "units" / unit.id
    target.mkdir(parents=True, exist_ok=True)
    device = state.device
    if config.task == "multilabel":
        model = trained["models"]["all"]
        val_scores, test_scores = _predict(model, val_x, device), _predict(model, test_x, device)
    else:
        val_scores = np.column_stack([_predict(trained["models"][c], val_x, device)[:, 0] for c in classes])
        test_scores = np.column_stack([_predict(trained["models"][c], test_x, device)[:, 0] for c in classes])
    thresholds = _thresholds(val_y, val_scores, config.threshold)
    trained_on = ([real.dataset] if unit.n_real else []) + ([f"synthetic:{synthetic.model_name}"]
                                                           if unit.n_synthetic else [])
    for name, model in trained["models"].items():
        outputs = list(classes) if name == "all" else [name]
        save_checkpoint(model, target / ("checkpoint" if name == "all" else f"checkpoint_{_slug(name)}"), outputs,
                        trained_on=trained_on, input_size=config.image_size,
                        extra={"unit": unit.record(), "best_epoch": trained["best_epochs"][name],
                               "val_mean_auroc": trained["best_val_auroc"][name]})
    for split, scores, labels, paths in (("val", val_scores, val_y, [str(p) for p in
                                                                      real.subset("val").image_paths()]),
                                         ("test", test_scores, test_y, list(test_paths))):
        frame = pd.DataFrame({"image": paths})
        for j, name in enumerate(classes):
            frame[f"label:{name}"] = labels[:, j]
            frame[f"score:{name}"] = scores[:, j]
        frame.to_csv(target / f"predictions_{split}.csv", index=False)
    real_paths, synthetic_paths = real.image_paths(), synthetic.image_paths()
    listing = pd.DataFrame({
        "source": ["real"] * unit.n_real + ["synthetic"] * unit.n_synthetic,
        "image": [str(real_paths[int(pools.train_rows[i])]) for i in unit.training.real]
        + [str(synthetic_paths[int(pools.synthetic_rows[i])]) for i in unit.training.synthetic],
        "split_row": [int(pools.train_rows[i]) for i in unit.training.real] + [""] * unit.n_synthetic,
        "synthetic_row": [""] * unit.n_real + [int(pools.synthetic_rows[i]) for i in unit.training.synthetic],
        "replaces_split_row": [""] * unit.n_real + ([int(pools.train_rows[i]) for i in unit.training.replaced]
                                                    if len(unit.training.replaced) else [""] * unit.n_synthetic)})
    listing.to_csv(target / "training_set.csv", index=False)
    atomic_write_text(target / "history.json", json.dumps({"histories": trained["histories"],
                                                           "best_epochs": trained["best_epochs"]}, indent=1) + "\n")
    plot_learning_curves(trained["histories"], trained["best_epochs"], target / "learning_curve.png",
                         f"{unit.spec.label}, seed {unit.seed}")
    sources = pools.synthetic_source[unit.training.synthetic]
    split_of = dict(zip(range(len(real.frame)), real.frame["split"], strict=True))
    from_splits = pd.Series([split_of.get(int(s), "unknown") for s in sources]).value_counts().to_dict()
    best_auroc = [v for v in trained["best_val_auroc"].values() if np.isfinite(v)]
    info = {"n_train": unit.n_real + unit.n_synthetic, "n_replaced": len(unit.training.replaced),
            "best_epoch": (next(iter(trained["best_epochs"].values())) if len(trained["best_epochs"]) == 1
                           else float(np.mean(list(trained["best_epochs"].values())))),
            "best_val_auroc": float(np.mean(best_auroc)) if best_auroc else math.nan,
            "synthetic_source_splits": ";".join(f"{k}:{v}" for k, v in sorted(from_splits.items())),
            "train_seconds": round(elapsed, 1), "num_processes": state.num_processes, "task": config.task,
            "threshold_policy": config.threshold}
    done = {"unit": unit.record(), "real_key": real_only_key if unit.n_synthetic == 0 else None,
            "thresholds": thresholds.tolist(), "info": info,
            "model_checksums": {n: _model_checksum(m) for n, m in trained["models"].items()}}
    atomic_write_text(target / "done.json", json.dumps(done, indent=2) + "\n")
    # What was just written is what a resumed run reads back: evaluate from the files for identical results.
    return _load_unit(folder, unit, classes, pools)


def _write_rows(table: pd.DataFrame, model_name: str, extra_info: str, run_id: str, real: SplitTable,
                synthetic: SyntheticSet, config: RetrainedConfig, results_dir: str | Path | None, *, folder: Path,
                extra_columns: dict[str, str], copy_name: str = "metrics.csv") -> pd.DataFrame:
    """Add the identifying columns, save the run's copy (``folder/copy_name``) and upsert into
    ``results/utility_retrained.csv``; returns the full rows."""
    table = table.copy()
    table.insert(0, "extra_info", extra_info)
    table.insert(0, "model_name", model_name)
    table["real_dataset"] = real.dataset
    table["synthetic_dir"] = str(synthetic.root)
    table["architecture"] = ARCHITECTURE
    table["image_size"] = config.image_size
    table["epochs"] = config.epochs
    table["init"] = config.init or "scratch"
    table["balance"] = config.balance
    table["n_resamples"] = config.n_resamples
    table["model_selection"] = "best mean AUROC on the real val split"
    table["run_id"] = run_id
    for column, value in extra_columns.items():
        table[column] = value
    record = {**asdict(config), "stage": "retrained", "model_name": model_name}
    write_run_rows(TABLE, table, folder, results_dir=results_dir, config=record, run_id=run_id, copy_name=copy_name)
    return table


# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """``python -m benchmark.utility.retrained``: the stage alone (``accelerate launch`` / ``torchrun`` for DDP)."""
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m benchmark.utility.retrained",
                                     description=__doc__.splitlines()[0])
    add_set_arguments(parser, "classes to train on (default: the split's)")
    parser.add_argument("--run-id", help="run folder to use or resume (default: the newest run of this sweep)")
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument("--num-workers", type=int, default=int(env.get("NUM_WORKERS", "0")))
    parser.add_argument("--seed", type=int, default=int(env.get("SEED", "0")), help="seed of the bootstrap")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-unit lines")
    add_retrained_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stage from the command line; exit 2 on bad input."""
    from benchmark.data import read_split_csv
    from benchmark.data.splits.common import parse_class_list
    from benchmark.data.synthetic import read_synthetic_set

    args = build_parser().parse_args(argv)
    main_process = _distributed_state().is_main_process
    try:
        if not args.real or not args.synthetic:
            raise DataError("give --real (split CSV) and --synthetic (synthetic set folder)")
        config = retrained_config_from_args(args)
        config.progress = not args.quiet
        real = read_split_csv(args.real, image_root=args.image_root, classes=parse_class_list(args.classes) or None)
        synthetic = read_synthetic_set(args.synthetic, classes=real.classes)
        outcome = run_retrained_stage(real, synthetic, config, model_name=args.model_name or synthetic.model_name,
                                      extra_info=args.extra_info, results_dir=args.results_dir, run_id=args.run_id)
    except (DataError, ValueError, MemoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if main_process:
        print(format_retrained_table(outcome.summary))
        print(f"\nrun {outcome.run_id}: trained {len(outcome.trained)}, resumed {len(outcome.resumed)}; checkpoints, "
              f"predictions and learning curves in {outcome.run_folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
