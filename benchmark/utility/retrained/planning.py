"""What a sweep trains: settings and sizes parsed (:func:`parse_settings`), the pools of real train rows and usable
synthetic images (:func:`make_pools`), stratified draws (:func:`stratified_sample`) and the (setting, seed) units
(:func:`plan_units`), every size checked before anything trains.

A size is a count (``1100``, ``1.1k``), a count at most (``max200``: 200, or all when fewer exist), a fraction of
what exists (``0.5``, ``50%``) or ``all``; a size above what exists stops with an error unless ``with_replacement``
(then images repeat). Real rows and synthetic images are drawn
within strata (each row's rarest positive class), so every class gets its share of a small set; for a seed, every
setting of the same real size draws the same real rows, and every setting of the same synthetic size the same
synthetic images.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data import DataError, SplitTable, label_matrix
from benchmark.data.generator_training import check_synthetic_origins, synthetic_origins
from benchmark.data.splits.common import image_strata
from benchmark.data.synthetic import SyntheticSet
from benchmark.utility.retrained.config import SETTING_KINDS, SETTING_PRESETS


class SizeError(DataError):
    """A training-set size that the real split or the synthetic set cannot provide."""


# ---------------------------------------------------------------------------------------------- settings, sizes

_SIZE = re.compile(r"(?P<max>max)?(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<unit>k|%)?")


@dataclass(frozen=True)
class Size:
    """A training-set size: a count of images (``at_most``: or all of them when fewer exist), or a fraction of those
    available."""

    count: int | None = None
    fraction: float | None = None
    at_most: bool = False

    def resolve(self, available: int) -> int:
        """The number of images this size means when ``available`` exist."""
        if self.count is not None:
            return min(self.count, available) if self.at_most else self.count
        return round(self.fraction * available)

    def __str__(self) -> str:
        if self.count is not None:
            return f"max{self.count}" if self.at_most else str(self.count)
        return "all" if self.fraction == 1.0 else f"{self.fraction:g}"


def parse_size(text: str) -> Size:
    """``1100`` / ``1.1k`` (counts), ``max200`` (at most 200), ``0.5`` / ``50%`` (fractions of what exists) or
    ``all``."""
    t = str(text).strip().lower()
    if t == "all":
        return Size(fraction=1.0)
    match = _SIZE.fullmatch(t)
    if not match:
        raise ValueError(f"size {text!r}: use a count (1100, 1.1k), at most a count (max200), a fraction (0.5, 50%) "
                         "or all")
    value = float(match["num"])
    if match["unit"] == "k" or (match["unit"] is None and "." not in match["num"]):
        count = round(value * (1000 if match["unit"] == "k" else 1))
        if count < 1:
            raise ValueError(f"size {text!r} is no image at all")
        return Size(count=count, at_most=bool(match["max"]))
    if match["max"]:
        raise ValueError(f"size {text!r}: max takes a count (max200, max1.1k), not a fraction")
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
    """Parse ``kind[:size]`` items; ``n_real`` / ``n_synthetic`` / ``mix_fraction`` fill in what an item omits. A
    preset name (:data:`SETTING_PRESETS`, e.g. ``chexgenbench``) stands for its settings."""
    if isinstance(items, str):
        items = [s for s in items.split(",") if s.strip()]
    items = [part for item in items for part in SETTING_PRESETS.get(item.strip().lower(), (item,))]
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
                raise ValueError(f"unknown kind {kind!r}; use {', '.join(SETTING_KINDS)} or a preset "
                                 f"({', '.join(SETTING_PRESETS)})")
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
