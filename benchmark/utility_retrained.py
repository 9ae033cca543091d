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
exists stops with an error unless ``with_replacement`` (then images repeat). For a seed, every setting of the same
real size draws the same real rows, and every setting of the same synthetic size the same synthetic images.

Per seed and class: AUROC, accuracy, precision, recall, specificity, F1 with stratified bootstrap CIs. Per setting and
class (``seed = mean``): mean, std and Student-t 95% CI over seeds. Every setting is compared with the ``real``
baseline on the same test images: paired DeLong for AUROC, paired bootstrap for the threshold metrics (each model at
its own threshold, Youden's J on real val by default), seed by seed and for the seed means (a DeLong contrast over all
seeds' AUROCs, a joint bootstrap), p-values Holm-adjusted over settings x classes. Real-only units do not depend on
the synthetic set and are reused by every sweep on the same split and training settings.

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
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from benchmark.cli import add_set_arguments
from benchmark.data import DataError, SplitTable, atomic_write_text, label_matrix
from benchmark.provenance import config_hash, new_run_id
from benchmark.results import run_dir, table_path, upsert_rows

# The comparisons reuse stats' DeLong covariance and resampling internals, so that for one model each they are exactly
# delong_roc_test / paired_bootstrap_difference (tested), and extend them to means over seeds.
from benchmark.stats import (
    METRICS,
    _bootstrap_p,
    _delong_covariance,
    _percentile_ci,
    _resampled,
    _z_and_p,
    bootstrap_metrics,
    delong_roc_test,
    holm_adjust,
    mean_ci_over_seeds,
    metrics_on_resamples,
)
from benchmark.synthetic import SyntheticSet

TABLE = "utility_retrained"
SETTING_KINDS: tuple[str, ...] = ("real", "synthetic", "real+synthetic", "mixed")
TASKS: tuple[str, ...] = ("multilabel", "binary")
THRESHOLDS: tuple[str, ...] = ("val-youden", "0.5")
COMPARED_BOOTSTRAP: tuple[str, ...] = ("accuracy", "precision", "recall", "f1")
TABLE_METRICS: tuple[str, ...] = ("auroc", "accuracy", "precision")
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
    synthetic_from: str = "any"
    baseline: str | None = None
    threshold: str = "val-youden"
    n_resamples: int = 2000
    stats_seed: int = 0
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.settings, str):
            self.settings = tuple(s.strip() for s in self.settings.split(",") if s.strip())
        if isinstance(self.seeds, (str, int)):
            self.seeds = str(self.seeds).split(",")
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        for name, value, allowed in (("task", self.task, TASKS), ("threshold", self.threshold, THRESHOLDS),
                                     ("synthetic_from", self.synthetic_from, ("any", "train")),
                                     ("balance", self.balance, ("none", "loss", "sampler"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not 0.0 < self.mix_fraction <= 1.0:
            raise ValueError(f"mix_fraction must be in (0, 1], got {self.mix_fraction}")
        if self.init in ("", "scratch", "none"):
            self.init = None

    def training_record(self) -> dict[str, Any]:
        """The fields that shape a trained model (what a resumed run must share)."""
        skip = {"settings", "seeds", "n_real", "n_synthetic", "mix_fraction", "baseline", "n_resamples", "stats_seed",
                "resume", "progress", "num_workers"}
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
    group.add_argument("--synthetic-from", choices=("any", "train"), default=default.synthetic_from,
                       help="train: only synthetic images made from real train rows may be trained on")
    group.add_argument("--baseline", help="the setting every other is compared with (default: the first real one)")
    group.add_argument("--decision-threshold", choices=THRESHOLDS, default=default.threshold,
                       help="threshold of accuracy / precision: Youden's J on the real val split, or 0.5")
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
        n_resamples=int(getattr(args, "n_resamples", 2000)), stats_seed=int(getattr(args, "seed", 0) or 0),
        resume=not args.no_resume)


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
    Labels are float32 1 / 0 / NaN.
    """

    train_rows: np.ndarray
    train_labels: np.ndarray
    synthetic_rows: np.ndarray
    synthetic_labels: np.ndarray
    synthetic_source: np.ndarray


def make_pools(real: SplitTable, synthetic: SyntheticSet, classes: Sequence[str], synthetic_from: str = "any") -> Pools:
    """Real train rows and usable synthetic images with their labels for ``classes``."""
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
    rows = np.arange(len(synthetic.frame))
    if synthetic_from == "train":
        rows = rows[np.isin(source, train_rows)]
    labels = label_matrix(synthetic.frame, list(classes))
    return Pools(train_rows, label_matrix(real.frame, list(classes))[train_rows], rows, labels[rows], source[rows])


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


def _draw(available: int, n: int, rng: np.random.Generator, with_replacement: bool, what: str,
          setting: str) -> np.ndarray:
    """``n`` distinct indices below ``available`` (with replacement: each index ``n // available`` times or once
    more); a size above ``available`` without replacement raises :class:`SizeError`."""
    if available == 0:
        raise SizeError(f"setting {setting!r} needs {what} but none are available")
    if n < 1:
        raise SizeError(f"setting {setting!r} resolves to {n} {what}; give a larger size")
    if n > available and not with_replacement:
        raise SizeError(f"setting {setting!r} asks for {n} {what} but only {available} exist; ask for at most "
                        f"{available} (or a fraction such as 0.5, or all) or pass --with-replacement to repeat images")
    repeats, rest = divmod(n, available)
    parts = [rng.permutation(available) for _ in range(repeats)] + [rng.permutation(available)[:rest]]
    return np.concatenate(parts).astype(np.int64)


def build_training_set(spec: SettingSpec, pools: Pools, seed: int, with_replacement: bool = False) -> TrainingSet:
    """The training images of ``spec`` for ``seed`` (deterministic; see the module docstring for the sharing rule)."""
    n_pool, m_pool = len(pools.train_rows), len(pools.synthetic_rows)

    def real_draw(n: int) -> np.ndarray:
        return _draw(n_pool, n, np.random.default_rng([seed, 1, n]), with_replacement, "real train images",
                     spec.label)

    def synthetic_draw(m: int) -> np.ndarray:
        return _draw(m_pool, m, np.random.default_rng([seed, 2, m]), with_replacement, "synthetic images",
                     spec.label)

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
    """One unit's test-split scores: ``scores`` float64 ``(N_test, C)``, ``thresholds`` ``(C,)``, ``info`` extra
    columns for its rows (best epoch, validation AUROC, ...)."""

    setting: str
    setting_spec: str
    n_real: int
    n_synthetic: int
    seed: int
    scores: np.ndarray
    thresholds: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def delong_mean_difference(y_true: np.ndarray, scores_a: Sequence[np.ndarray],
                           scores_b: Sequence[np.ndarray]) -> dict[str, float]:
    """Paired DeLong test of mean AUROC over the models ``scores_a`` minus mean over ``scores_b`` (same rows).

    ``y_true`` (n,) 0/1; each score array (n,). The variance is L S L' with DeLong's covariance S of all the AUCs and
    the contrast L = (1/k_a, ..., -1/k_b, ...); with one model each this is :func:`benchmark.stats.delong_roc_test`.
    Returns ``difference``, ``variance``, ``z``, ``p_value`` (NaN when a class has fewer than 2 rows).
    """
    y = np.asarray(y_true).astype(np.int8)
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in (*scores_a, *scores_b)])
    ka, kb = len(scores_a), len(scores_b)
    contrast = np.concatenate([np.full(ka, 1.0 / ka), np.full(kb, -1.0 / kb)])
    nan = float("nan")
    if y.min() == y.max():
        return {"difference": nan, "variance": nan, "z": nan, "p_value": nan}
    aucs = [roc_auc_score(y, s) for s in stacked]
    difference = float(contrast @ np.asarray(aucs))
    variance = float(contrast @ _delong_covariance(y, stacked) @ contrast)
    if not math.isnan(variance):
        variance = max(variance, 0.0)
    z, p = _z_and_p(difference, variance)
    return {"difference": difference, "variance": variance, "z": z, "p_value": p}


def bootstrap_mean_differences(y_true: np.ndarray, shifted_a: Sequence[np.ndarray],
                               shifted_b: Sequence[np.ndarray], metrics: Sequence[str] = COMPARED_BOOTSTRAP, *,
                               n_resamples: int = 2000, seed: int = 0,
                               confidence: float = 0.95) -> dict[str, tuple[float, float, float, float]]:
    """Paired bootstrap of (mean over models a) minus (mean over models b) of threshold ``metrics``.

    ``y_true`` (n,) 0/1; each score array (n,) is *shifted* by its model's threshold (prediction = score >= 0). Test
    rows are resampled jointly for all models (stratified). With one model each this is exactly
    :func:`benchmark.stats.paired_bootstrap_difference` (same resamples for the same seed; tested).
    Returns metric -> (difference, ci_low, ci_high, p_value); all NaN where the metric is undefined.
    """
    y = np.asarray(y_true).astype(np.int8)
    arrays = [np.asarray(s, dtype=np.float64) for s in (*shifted_a, *shifted_b)]
    ka = len(shifted_a)
    whole = np.arange(len(y))[None, :]  # the full sample as one "resample": the point estimates, vectorised
    points = [metrics_on_resamples(y, s, 0.0, whole, metrics) for s in arrays]
    boots = _resampled(y, arrays[0], 0.0, n_resamples, np.random.default_rng(seed), True, tuple(metrics), arrays[1:])
    out = {}
    for m in metrics:
        difference = float(np.mean([p[m][0] for p in points[:ka]]) - np.mean([p[m][0] for p in points[ka:]]))
        if math.isnan(difference):
            out[m] = (math.nan,) * 4
            continue
        values = np.stack([b[m] for b in boots])
        d = values[:ka].mean(axis=0) - values[ka:].mean(axis=0)
        out[m] = (difference, *_percentile_ci(d, confidence), _bootstrap_p(d))
    return out


def evaluate_units(units: Sequence[UnitPredictions], test_labels: np.ndarray, classes: Sequence[str], *,
                   baseline: str | None, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                   mean_rows: bool = True) -> pd.DataFrame:
    """The result rows: one per (unit, class) with ``seed`` = the training seed, and one per (setting, class) with
    ``seed = "mean"``.

    ``test_labels`` ``(N_test, C)`` 1 / 0 / NaN (unknown labels are masked per class). ``baseline`` is the
    ``setting_spec`` every other setting is compared with, seed by seed and on the seed means (same test images).
    Columns: each of :data:`METRICS` with ``_ci_low`` / ``_ci_high`` (seed rows: stratified bootstrap; mean rows:
    Student-t over seeds, or the bootstrap CI when there is one seed) and ``_std`` on mean rows;
    ``{auroc,accuracy,precision,recall,f1}_diff_vs_real`` with CI, ``_p_vs_real`` and ``_p_vs_real_holm``
    (Holm over settings x classes, per seed and for the means); ``auroc_vs_real`` the verdict at 1 - confidence.
    ``mean_rows=False`` leaves the mean rows out.
    """
    labels = np.asarray(test_labels, dtype=np.float64)
    alpha = 1.0 - confidence
    z_half = float(norm.ppf(0.5 + confidence / 2))
    specs = list(dict.fromkeys(u.setting_spec for u in units))
    rows: list[dict[str, Any]] = []
    for spec in specs:
        members = sorted((u for u in units if u.setting_spec == spec), key=lambda u: u.seed)
        base_by_seed = {u.seed: u for u in units if u.setting_spec == baseline} if baseline else {}
        for j, name in enumerate(classes):
            known = ~np.isnan(labels[:, j])
            y = labels[known, j].astype(np.int8)
            seed_rows = []
            for unit in members:
                s, t = unit.scores[known, j], float(unit.thresholds[j])
                row = _row_head(unit, name, str(unit.seed), y, baseline)
                row["threshold"] = t
                row.update(unit.info)
                estimates = bootstrap_metrics(y, s, t, n_resamples=n_resamples, seed=seed, confidence=confidence) \
                    if len(y) else {m: (math.nan,) * 3 for m in METRICS}
                for m in METRICS:
                    row[m], row[f"{m}_ci_low"], row[f"{m}_ci_high"] = estimates[m]
                base = base_by_seed.get(unit.seed)
                if base is not None and spec != baseline and len(y):
                    sb, tb = base.scores[known, j], float(base.thresholds[j])
                    test = delong_roc_test(y, s, sb)
                    half = z_half * math.sqrt(test["variance"]) if np.isfinite(test["variance"]) else math.nan
                    row.update({"auroc_diff_vs_real": test["difference"],
                                "auroc_diff_vs_real_ci_low": test["difference"] - half,
                                "auroc_diff_vs_real_ci_high": test["difference"] + half,
                                "auroc_p_vs_real": test["p_value"]})
                    compared = bootstrap_mean_differences(y, [s - t], [sb - tb], n_resamples=n_resamples,
                                                          seed=seed, confidence=confidence)
                    for m, (diff, low, high, p) in compared.items():
                        row.update({f"{m}_diff_vs_real": diff, f"{m}_diff_vs_real_ci_low": low,
                                    f"{m}_diff_vs_real_ci_high": high, f"{m}_p_vs_real": p})
                seed_rows.append(row)
            rows.extend(seed_rows)
            if mean_rows:
                rows.append(_mean_row(members, seed_rows, name, y, known, j, base_by_seed, spec, baseline, n_resamples,
                                      seed, confidence, z_half))
    table = pd.DataFrame(rows)
    for m in ("auroc", *COMPARED_BOOTSTRAP):
        column = f"{m}_p_vs_real"
        if column not in table:
            continue
        table[f"{m}_p_vs_real_holm"] = np.nan
        for _, index in table.groupby("seed").groups.items():
            table.loc[index, f"{m}_p_vs_real_holm"] = holm_adjust(table.loc[index, column].to_numpy(float))
    if "auroc_p_vs_real_holm" in table:
        diff = table["auroc_diff_vs_real"].to_numpy(float)
        p = table["auroc_p_vs_real_holm"].to_numpy(float)
        table["auroc_vs_real"] = np.where(np.isnan(p), "", np.where(p >= alpha, "no significant difference",
                                                                     np.where(diff < 0, "significantly worse",
                                                                              "significantly better")))
    return table


def _row_head(unit: UnitPredictions, name: str, seed: str, y: np.ndarray, baseline: str | None) -> dict[str, Any]:
    return {"setting": unit.setting, "n_real": unit.n_real, "n_synthetic": unit.n_synthetic, "seed": seed,
            "class": name, "setting_spec": unit.setting_spec, "baseline": baseline or "", "n_test": len(y),
            "positives": int(y.sum())}


def _mean_row(members: Sequence[UnitPredictions], seed_rows: Sequence[dict[str, Any]], name: str, y: np.ndarray,
              known: np.ndarray, j: int, base_by_seed: dict[int, UnitPredictions], spec: str, baseline: str | None,
              n_resamples: int, seed: int, confidence: float, z_half: float) -> dict[str, Any]:
    """The ``seed = mean`` row of one setting and class (see :func:`evaluate_units`)."""
    row = _row_head(members[0], name, "mean", y, baseline)
    row["seeds"] = ",".join(str(u.seed) for u in members)
    row["n_seeds"] = len(members)
    for key in ("best_epoch", "best_val_auroc", "n_train"):
        values = [r[key] for r in seed_rows if isinstance(r.get(key), (int, float))]
        if values:
            row[key] = float(np.mean(values))
    for m in METRICS:
        summary = mean_ci_over_seeds([r[m] for r in seed_rows], confidence)
        row[m], row[f"{m}_std"] = summary["mean"], summary["std"]
        if summary["n"] >= 2:
            # every metric lives in [0, 1]; a t interval over few seeds can reach past it, which no value can
            row[f"{m}_ci_low"] = max(0.0, summary["ci_low"]) if np.isfinite(summary["ci_low"]) else math.nan
            row[f"{m}_ci_high"] = min(1.0, summary["ci_high"]) if np.isfinite(summary["ci_high"]) else math.nan
        else:
            only = next((r for r in seed_rows if not math.isnan(r[m])), {})
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = only.get(f"{m}_ci_low", math.nan), only.get(f"{m}_ci_high",
                                                                                                   math.nan)
    row["ci_method"] = ("Student t over seeds, clipped to [0, 1]" if len(members) >= 2
                        else "bootstrap over test images (one seed)")
    paired = [(u, base_by_seed[u.seed]) for u in members if u.seed in base_by_seed]
    if spec == baseline or not paired or not len(y):
        return row
    a = [u.scores[known, j] for u, _ in paired]
    b = [v.scores[known, j] for _, v in paired]
    test = delong_mean_difference(y, a, b)
    half = z_half * math.sqrt(test["variance"]) if np.isfinite(test["variance"]) else math.nan
    row.update({"auroc_diff_vs_real": test["difference"], "auroc_diff_vs_real_ci_low": test["difference"] - half,
                "auroc_diff_vs_real_ci_high": test["difference"] + half, "auroc_p_vs_real": test["p_value"],
                "paired_seeds": ",".join(str(u.seed) for u, _ in paired)})
    shifted_a = [u.scores[known, j] - u.thresholds[j] for u, _ in paired]
    shifted_b = [v.scores[known, j] - v.thresholds[j] for _, v in paired]
    compared = bootstrap_mean_differences(y, shifted_a, shifted_b, n_resamples=n_resamples, seed=seed,
                                          confidence=confidence)
    for m, (diff, low, high, p) in compared.items():
        row.update({f"{m}_diff_vs_real": diff, f"{m}_diff_vs_real_ci_low": low, f"{m}_diff_vs_real_ci_high": high,
                    f"{m}_p_vs_real": p})
    return row


# ---------------------------------------------------------------------------------------------- the printed table


def _stars(p: float) -> str:
    if not isinstance(p, float) or math.isnan(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else " ns"


def format_retrained_table(summary: pd.DataFrame) -> str:
    """RoentGen-shaped text: one block per class, rows = settings with their sizes, columns = AUROC / accuracy /
    precision as mean [95% CI] with the change against the real baseline (Holm-adjusted significance stars).

    ``summary`` is :attr:`RetrainedOutcome.summary` (the ``seed = mean`` rows); a full table is filtered to them.
    """
    if summary is None or len(summary) == 0:
        return "(no retrained results)"
    frame = summary[summary["seed"].astype(str) == "mean"] if "seed" in summary else summary
    width = 34
    header = (f"{'setting':<30} {'real':>6} {'synth':>6} {'seeds':>5} | "
              + " | ".join(f"{m if m != 'auroc' else 'AUROC':<{width}}" for m in TABLE_METRICS))
    baseline = next((b for b in frame.get("baseline", pd.Series(dtype=str)) if isinstance(b, str) and b), "")
    lines = [f"Retrained {ARCHITECTURE}: selected on real val, tested on real test images; mean over seeds "
             f"[95% CI], then the change vs {baseline or 'the real baseline'} (paired DeLong / bootstrap, "
             "Holm-adjusted: * p<0.05, ** p<0.01, *** p<0.001, ns not significant)"]
    for name, block in frame.groupby("class", sort=False):
        first = block.iloc[0]
        lines += ["", f"== {name} (real test images: n={int(first['n_test'])}, {int(first['positives'])} positive) ==",
                  header, "-" * len(header)]
        for _, row in block.iterrows():
            cells = []
            for m in TABLE_METRICS:
                value = row.get(m)
                if not isinstance(value, float) or math.isnan(value):
                    cells.append(f"{'undefined':<{width}}")
                    continue
                cell = f"{value:.3f} [{row.get(f'{m}_ci_low', math.nan):.3f}, {row.get(f'{m}_ci_high', math.nan):.3f}]"
                diff = row.get(f"{m}_diff_vs_real")
                if isinstance(diff, float) and not math.isnan(diff):
                    cell += f" {diff:+.3f}{_stars(row.get(f'{m}_p_vs_real_holm', math.nan))}"
                cells.append(f"{cell:<{width}}")
            label = str(row["setting_spec"]) + (" (baseline)" if row["setting_spec"] == baseline else "")
            lines.append(f"{label:<30} {int(row['n_real']):>6} {int(row['n_synthetic']):>6} {int(row['n_seeds']):>5} | "
                         + " | ".join(cells))
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


def _load_unit(folder: Path, unit: Unit, classes: Sequence[str]) -> UnitPredictions:
    done = json.loads((folder / "units" / unit.id / "done.json").read_text())
    frame = pd.read_csv(folder / "units" / unit.id / "predictions_test.csv")
    scores = frame[[f"score:{c}" for c in classes]].to_numpy(np.float64)
    return UnitPredictions(unit.spec.kind, unit.spec.label, unit.n_real, unit.n_synthetic, unit.seed, scores,
                           np.asarray(done["thresholds"], dtype=np.float64), done["info"])


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
    from benchmark.utility_pretrained import youden_threshold

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
    """accelerate's process state, set up as :func:`benchmark.training.train_classifier` sets it up (``cpu`` when no
    GPU). Created first without ``cpu``, it would miss a CPU launch by torchrun / accelerate: one process each."""
    from accelerate import PartialState

    from benchmark.features import release_process_group_at_exit

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
    from benchmark.training import TrainConfig, train_classifier

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

    from benchmark.classifiers import save_checkpoint
    from benchmark.training import PRELOAD_LIMIT_BYTES, load_tensors

    state = _distributed_state()
    main = state.is_main_process
    talk = config.progress and main
    classes = list(real.classes)
    specs = parse_settings(config.settings, config.n_real, config.n_synthetic, config.mix_fraction)
    baseline = baseline_spec(specs, config.baseline)
    if baseline is not None:  # the baseline trains first, so every later unit can be compared as soon as it is done
        specs = [baseline] + [s for s in specs if s != baseline]
    pools = make_pools(real, synthetic, classes, config.synthetic_from)
    units = plan_units(specs, config.seeds, pools, config.with_replacement)
    val, test = real.subset("val"), real.subset("test")
    if len(val.frame) == 0 or len(test.frame) == 0:
        raise DataError(f"{real.source}: the retrained stage needs real val and test rows (patient-disjoint splits)")
    val_y, test_y = val.labels(), test.labels()
    if not any(0 < np.nansum(val_y[:, j]) < (~np.isnan(val_y[:, j])).sum() for j in range(len(classes))):
        raise DataError(f"{real.source}: no class has both labels among the real val rows; model selection needs them")
    test_paths = [str(p) for p in test.image_paths()]

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
                predictions.append(_load_unit(folder, unit, classes))
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
                                     baseline=baseline.label if baseline else None, n_resamples=config.n_resamples,
                                     seed=config.stats_seed, mean_rows=False)
            partial = partial[(partial["setting_spec"] == unit.spec.label) & (partial["seed"] == str(unit.seed))]
            _write_rows(partial, model_name, extra_info, run_id, real, synthetic, config, results_dir)
        state.wait_for_everyone()

    if not main:
        return RetrainedOutcome(pd.DataFrame(), pd.DataFrame(), run_id, folder, trained, resumed, reused)
    table = evaluate_units(predictions, test_y, classes, baseline=baseline.label if baseline else None,
                           n_resamples=config.n_resamples, seed=config.stats_seed)
    table = _write_rows(table, model_name, extra_info, run_id, real, synthetic, config, results_dir)
    table.to_csv(folder / "metrics.csv", index=False)
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
    return _load_unit(folder, unit, classes)


def _write_rows(table: pd.DataFrame, model_name: str, extra_info: str, run_id: str, real: SplitTable,
                synthetic: SyntheticSet, config: RetrainedConfig, results_dir: str | Path | None) -> pd.DataFrame:
    """Add the identifying columns and upsert into ``results/utility_retrained.csv``; returns the full rows."""
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
    record = {**asdict(config), "stage": "retrained", "model_name": model_name}
    upsert_rows(TABLE, table, results_dir=results_dir, config=record, run_id=run_id)
    return table


# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """``python -m benchmark.utility_retrained``: the stage alone (``accelerate launch`` / ``torchrun`` for DDP)."""
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m benchmark.utility_retrained",
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
    from benchmark.splits.common import parse_class_list
    from benchmark.synthetic import read_synthetic_set

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
