"""``./scripts/image_quality_metrics.sh``: fidelity, diversity and memorisation of a synthetic set against a split.

Owns the image-quality stage end to end: :func:`evaluate` (the pure core: split + synthetic set + extractor in,
result rows and the memorisation result out) and :func:`main` (the CLI: reads the inputs, writes
``results/image_quality_metrics.csv`` rows keyed by model_name, extra_info, feature_extractor and class, and the
memorisation report under ``results/runs/<run_id>/``).

* Fidelity (FID and FD∞ with delete-a-group jackknife intervals over patients, KID, PRDC; see
  :mod:`benchmark.fidelity.metrics`) compares the synthetic images with the real images of ``--real-split`` (default
  ``test``, the split whose prompts a generator is run on); ``--n N`` draws N images from each side first (stops
  when a side has fewer). With ``--per-class``, every class of the split adds a row: synthetic images whose label
  for the class is 1 against real images whose label is 1 (both sides down to the smaller count when ``--n`` is
  given; figures left empty, with a note, when a side has ``k`` or fewer images). Real images are clustered by
  patient; synthetic ones by ``patient_id`` when synthetic.csv has it, else by ``source_row``.
* FID floor: every row with figures also gets the FID between its real images and as many *other* real images
  (same class; held-out splits first, then train; patient-disjoint) as it has synthetic ones, in the same feature
  space: what FID reads between two real samples of these sizes. FID is driven by sample size, so FID next to its
  floor is comparable across classes and models; FID alone is not.
* Detectability (every row with figures): the held-out AUROC of a linear probe telling the row's synthetic images
  from its real ones in the same features, on a patient-disjoint split (:mod:`benchmark.fidelity.detectability`).
* Subgroups (``--by sex,age-band,view``): one more row per subgroup of the reference (class column ``sex=F``),
  its real images against the synthetic images of the same subgroup (:mod:`benchmark.data.subgroups`).
* ``--protocol chexgenbench``: CheXGenBench's own protocol (their RAD-DINO preprocessing, real prompts deduplicated,
  per class the synthetic images made from the class's real prompts, their KID beside ours), as rows of their own.
* Reference statistics: ``--save-reference FILE`` also writes the real images' feature statistics (no image);
  ``--reference FILE`` computes FID against such a file in place of ``--real`` (:mod:`benchmark.fidelity.reference`).
* Diversity (overall row): MS-SSIM within prompts and across random pairs, the real split's value beside each.
* Memorisation: every synthetic image against the ``train`` split (see :mod:`benchmark.fidelity.memorisation`), with the
  share of ``--real-split`` images flagged the same way beside it (the chance level: other patients).

Features are computed once per file and extractor and cached (:mod:`benchmark.fidelity.features`); under
``accelerate launch`` extraction is split over the processes and the main process computes every metric on the
pooled set. Nothing is written until every figure is computed, so a bad image stops the run with its name and
leaves existing results untouched.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.cli import parse_stage_args
from benchmark.core.errors import exit_status
from benchmark.core.progress import progress as progress_display
from benchmark.core.progress import track
from benchmark.core.provenance import new_run_id
from benchmark.core.results import check_writable, run_dir, write_run_rows
from benchmark.data import DataError, SplitTable, load_image, read_split_csv, undersized_note
from benchmark.data.generator_training import check_generator_overlap, training_references
from benchmark.data.generator_training import resolve as resolve_generator_training
from benchmark.data.leakage import extractor_note
from benchmark.data.subgroups import (
    DEFAULT_AGE_CUTS,
    age_cuts,
    subgroup_values,
    subgroup_variables,
    synthetic_subgroups,
)
from benchmark.data.synthetic import SyntheticSet, read_synthetic_set
from benchmark.data.tables import label_matrix
from benchmark.fidelity.defaults import CHEXGENBENCH, PROTOCOLS, build_parser  # noqa: F401  (build_parser: re-exported)
from benchmark.fidelity.detectability import CI_METHOD as DETECT_CI_METHOD
from benchmark.fidelity.detectability import detectability
from benchmark.fidelity.distances import (
    DEFAULT_JACKKNIFE_GROUPS,
    MIN_JACKKNIFE_GROUPS,
    balanced_groups,
    fid_jackknife,
    subsample_indices,
)
from benchmark.fidelity.diversity import (
    DEFAULT_PAIRS,
    DEFAULT_PER_PROMPT,
    DEFAULT_PROMPTS,
    DEFAULT_SIZE,
    diversity_metrics,
)
from benchmark.fidelity.features import (
    DEFAULT_PIXEL_SIZE,
    FeatureExtractor,
    default_cache_dir,
    extract_features,
    load_extractor,
    process_state,
    square_float,
)
from benchmark.fidelity.frd import frd_jackknife, radiomics_features
from benchmark.fidelity.kid import chexgenbench_kid
from benchmark.fidelity.memorisation import (
    DEFAULT_CALIBRATION_N,
    DEFAULT_MAX_SHIFT,
    DEFAULT_QUANTILE,
    MemorisationResult,
    memorisation_check,
    summary_row,
    write_report,
)
from benchmark.fidelity.metrics import fidelity_metrics

TABLE = "image_quality_metrics"
OVERALL = "overall"


@dataclass
class QualityOptions:
    """Everything that shapes the figures (also hashed into each row's ``config_hash``)."""

    real_split: tuple[str, ...] = ("test",)
    per_class: bool = False
    n: int | None = None
    #: ``n`` is a cap, not a demand: fewer images than ``n`` are all used (the quick preset's ``n``); a user's own
    #: ``--n`` larger than the images available stops instead
    n_at_most: bool = False
    k: int = 5
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    jackknife_groups: int = DEFAULT_JACKKNIFE_GROUPS
    seed: int = 0
    batch_size: int = 32
    num_workers: int = 0
    device: str = "auto"
    cache_dir: str | None = None
    use_cache: bool = True
    memorisation: bool = True
    pixel_size: int = DEFAULT_PIXEL_SIZE
    max_shift: int = DEFAULT_MAX_SHIFT
    quantile: float = DEFAULT_QUANTILE
    calibration_n: int = DEFAULT_CALIBRATION_N
    diversity: bool = True
    msssim_size: int = DEFAULT_SIZE
    diversity_pairs: int = DEFAULT_PAIRS
    diversity_prompts: int = DEFAULT_PROMPTS
    images_per_prompt: int = DEFAULT_PER_PROMPT
    detectability: bool = True
    frd: bool = False
    protocol: str = "ours"
    by: tuple[str, ...] = ()
    age_cuts: tuple[int, ...] = DEFAULT_AGE_CUTS
    progress: bool = False


@dataclass
class QualityReport:
    """What :func:`evaluate` found: result rows (overall first), the memorisation result and its inputs' paths,
    and how many feature vectors came from the cache or were computed."""

    rows: list[dict[str, Any]]
    memorisation: MemorisationResult | None
    synthetic_paths: list[Path]
    train_paths: list[Path]
    train_patients: list[str]
    features_cached: int = 0
    features_computed: int = 0
    notes: list[str] = field(default_factory=list)


def synthetic_clusters(frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Cluster id ``(n,)`` of each synthetic image and what the clusters are: its source patient where
    synthetic.csv has a ``patient_id``, else its ``source_row`` (images of one prompt row), else the image alone."""
    n = len(frame)
    ids = np.array([f"image:{i}" for i in range(n)], dtype=object)
    kinds = np.full(n, "image", dtype=object)
    for column, kind in (("source_row", "prompt row"), ("patient_id", "source patient")):
        if column in frame.columns:
            values = frame[column].astype(str).str.strip().to_numpy()
            has = (values != "") & (values != "nan")
            ids[has] = [f"{column}:{v}" for v in values[has]]
            kinds[has] = kind
    used = [k for k in ("source patient", "prompt row", "image") if (kinds == k).any()]
    return ids.astype(str), " / ".join(used)


@dataclass
class FloorPlan:
    """The two real samples of one row's FID floor: ``a`` (the row's own real images, or half of them) and ``b``
    (other real images, as many as the row's synthetic ones where there are enough), with their patients."""

    a_paths: list[Path]
    a_patients: np.ndarray
    b_paths: list[Path]
    b_patients: np.ndarray
    source: str


def floor_pool(real: SplitTable, reference_splits: Sequence[str]) -> SplitTable:
    """Real rows outside the reference splits whose patient is not in them, held-out splits (val, test) before
    train, in split order: where a row's FID floor draws its second sample from."""
    frame = real.frame
    in_reference = frame["split"].isin(list(reference_splits))
    patients = set(frame.loc[in_reference, "patient_id"])
    order = {"val": 0, "test": 1, "train": 2}
    pool = frame[~in_reference & ~frame["patient_id"].isin(patients)]
    pool = pool.iloc[np.argsort(pool["split"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    return SplitTable(pool, list(real.classes), real.dataset, real.source, real.image_root, dict(real.meta))


def plan_floor(reference: SplitTable, ref_rows: np.ndarray, n_b: int, pool: SplitTable, pool_rows: np.ndarray,
               seed: int) -> FloorPlan | str:
    """The floor of a row comparing reference rows ``ref_rows`` with ``n_b`` synthetic images: the same reference
    images against ``n_b`` rows drawn without replacement from ``pool_rows`` of ``pool`` (all of the first split
    in pool order before any of the next; the first ``n_b`` of a seeded shuffle, so draws of different sizes are
    nested and share cached features). With fewer pool rows: the reference images split into two
    patient-disjoint halves, the second drawn down to ``n_b``. A string (the reason) when neither is possible."""
    ref_paths = reference.image_paths()
    ref_patients = reference.frame["patient_id"].to_numpy().astype(str)
    rng = np.random.default_rng([seed, 8231])
    if len(pool_rows) >= n_b:
        splits = pool.frame["split"].to_numpy()[pool_rows]
        chosen: list[int] = []
        counts: dict[str, int] = {}
        for split in dict.fromkeys(splits.tolist()):
            rows = pool_rows[splits == split]
            take = min(n_b - len(chosen), len(rows))
            chosen += rng.permutation(rows)[:take].tolist()  # nested: a larger draw extends a smaller one
            counts[split] = take
            if len(chosen) == n_b:
                break
        paths = pool.image_paths()
        drawn = " + ".join(f"{n} {split}" for split, n in counts.items())
        return FloorPlan([ref_paths[i] for i in ref_rows], ref_patients[ref_rows], [paths[i] for i in chosen],
                         pool.frame["patient_id"].to_numpy().astype(str)[chosen],
                         f"{len(ref_rows)} reference vs {drawn} other real images (patient-disjoint), the row's sizes")
    patients = ref_patients[ref_rows]
    if len(np.unique(patients)) < 2:
        return (f"no FID floor: {len(pool_rows)} other real images for {n_b} synthetic ones, and the reference "
                "holds one patient, so it cannot be halved")
    half = balanced_groups(patients, 2, [seed, 8232])
    a_rows, b_rows = ref_rows[half == 0], ref_rows[half == 1]
    if len(b_rows) > n_b:
        b_rows = np.sort(rng.choice(b_rows, n_b, replace=False))
    return FloorPlan([ref_paths[i] for i in a_rows], ref_patients[a_rows], [ref_paths[i] for i in b_rows],
                     ref_patients[b_rows],
                     f"two patient-disjoint halves of the reference ({len(a_rows)} vs {len(b_rows)} images; only "
                     f"{len(pool_rows)} other real images for {n_b}): smaller than the row's sizes, so this floor "
                     "reads higher than one at them")


def floor_columns(plan: FloorPlan | str | None, take: Any, options: QualityOptions, fid_value: float) -> dict[str, Any]:
    """``fid_floor`` (+ jackknife interval, sizes, source) and ``fid_minus_floor`` of a row; a note instead when
    there is no floor. ``take``: paths -> features ``(n, D)``."""
    if plan is None:
        return {}
    if isinstance(plan, str):
        return {"fid_floor_source": "", "floor_note": plan}
    result = fid_jackknife(take(plan.a_paths), take(plan.b_paths), real_clusters=plan.a_patients,
                           fake_clusters=plan.b_patients, n_groups=options.jackknife_groups, seed=options.seed,
                           device=options.device)
    return {"fid_floor": result.fid, "fid_floor_ci_low": result.ci_low, "fid_floor_ci_high": result.ci_high,
            "fid_floor_n_a": len(plan.a_paths), "fid_floor_n_b": len(plan.b_paths),
            "fid_floor_source": plan.source, "fid_minus_floor": fid_value - result.fid,
            "floor_groups": result.groups,
            "floor_note": "; ".join(f"FID floor: {n}" for n in result.notes)}


def detection_groups(real_patients: np.ndarray, synthetic_clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ids of the detectability split: real images by patient; a synthetic image by its source patient
    (the same id as that patient's real images, so the two stay on one side), else by its own cluster."""
    real_ids = np.array([f"patient:{p}" for p in real_patients], dtype=object)
    fake_ids = np.array([f"patient:{c.split(':', 1)[1]}" if c.startswith("patient_id:") else f"synthetic {c}"
                         for c in synthetic_clusters.astype(str)], dtype=object)
    return real_ids.astype(str), fake_ids.astype(str)


def label_strata(frame: pd.DataFrame, classes: Sequence[str], source: str) -> np.ndarray:
    """Each row's labels for ``classes`` as one string (``1`` / ``0`` / ``?`` per class; empty without classes):
    the strata the detectability split keeps in proportion."""
    if not classes:
        return np.full(len(frame), "", dtype=object).astype(str)
    labels = label_matrix(frame, list(classes), source)
    return np.array(["".join("?" if np.isnan(v) else str(int(v)) for v in row) for row in labels], dtype=str)


def _figures_or_note(real: np.ndarray, fake: np.ndarray, options: QualityOptions, seed: int, *,
                     real_clusters: np.ndarray, fake_clusters: np.ndarray, fake_kind: str,
                     real_strata: np.ndarray | None = None, fake_strata: np.ndarray | None = None) -> dict[str, Any]:
    if len(real) <= options.k or len(fake) <= options.k:
        return {"n_real": len(real), "n_synthetic": len(fake),
                "notes": f"too few images for the figures (need more than k={options.k} per side)"}
    row = fidelity_metrics(real, fake, real_clusters=real_clusters, fake_clusters=fake_clusters,
                           real_cluster_kind="patient", fake_cluster_kind=fake_kind, k=options.k,
                           kid_subset_size=options.kid_subset_size, kid_n_subsets=options.kid_subsets,
                           n_groups=options.jackknife_groups, seed=seed, device=options.device)
    if options.detectability:
        real_groups, fake_groups = detection_groups(real_clusters, fake_clusters)
        found = detectability(real, fake, real_groups=real_groups, fake_groups=fake_groups, real_strata=real_strata,
                              fake_strata=fake_strata, seed=seed)
        row.update(found.columns())
        row["ci_method"] += f"; {DETECT_CI_METHOD}"
        row["notes"] = "; ".join(filter(None, [row.get("notes", ""), found.note]))
    return row


@dataclass
class _RowPlan:
    name: str
    real_rows: np.ndarray
    synthetic_rows: np.ndarray
    n_real_available: int
    n_synthetic_available: int
    floor: FloorPlan | str | None = None
    subgroup_by: str = ""
    subgroup: str = ""


def _equal_sides(n: int | None, n_real: int, n_synthetic: int) -> int | None:
    """Images per side of a class / subgroup row under ``--n``: both sides at the smaller count, at most ``n``;
    None (no subsampling: the row gets its sample sizes and a too-few note) without ``--n`` or when a side is empty."""
    if n is None or min(n_real, n_synthetic) == 0:
        return None
    return min(n, n_real, n_synthetic)


def _plan_rows(reference: SplitTable, synthetic: SyntheticSet, options: QualityOptions,
               subgroups: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[_RowPlan]:
    """Which real and synthetic rows each result row compares (overall first, then each class, then each subgroup
    of ``subgroups``: ``{by: (reference rows' subgroups, synthetic images' subgroups)}``)."""
    subgroups = subgroups or {}
    n_ref, n_syn = len(reference.frame), len(synthetic.frame)
    plans = [_RowPlan(OVERALL, subsample_indices(n_ref, options.n, options.seed),
                      subsample_indices(n_syn, options.n, options.seed + 1), n_ref, n_syn)]
    if options.per_class:
        real_labels, syn_labels = reference.labels(), synthetic.labels()
        real_prompts = reference.frame["prompt"].fillna("").astype(str).to_numpy()
        syn_prompts = synthetic.frame["prompt"].fillna("").astype(str).to_numpy()
        for j, name in enumerate(reference.classes):
            real_idx = np.flatnonzero(real_labels[:, j] == 1)
            if options.protocol == CHEXGENBENCH:  # their conditional script: images made from those real prompts
                syn_idx = np.flatnonzero(np.isin(syn_prompts, real_prompts[real_idx]))
            else:
                syn_idx = np.flatnonzero(syn_labels[:, j] == 1)
            n_class = _equal_sides(options.n, len(real_idx), len(syn_idx))
            plans.append(_RowPlan(name, real_idx[subsample_indices(len(real_idx), n_class, options.seed)],
                                  syn_idx[subsample_indices(len(syn_idx), n_class, options.seed + 1)],
                                  len(real_idx), len(syn_idx)))
    for by, (real_groups, syn_groups) in subgroups.items():
        for value in sorted({g for g in real_groups if g}):
            real_idx, syn_idx = np.flatnonzero(real_groups == value), np.flatnonzero(syn_groups == value)
            n_group = _equal_sides(options.n, len(real_idx), len(syn_idx))
            plans.append(_RowPlan(f"{by}={value}", real_idx[subsample_indices(len(real_idx), n_group, options.seed)],
                                  syn_idx[subsample_indices(len(syn_idx), n_group, options.seed + 1)],
                                  len(real_idx), len(syn_idx), subgroup_by=by, subgroup=value))
    return plans


def _radiomics(ref_paths: list[Path], syn_paths: list[Path], progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw radiomics features of the real and synthetic images (:mod:`benchmark.fidelity.frd`), each image once."""
    with progress_display(len(ref_paths) + len(syn_paths), "image quality: radiomics (FRD)", "img",
                          enabled=progress) as bar:
        real, _ = radiomics_features(ref_paths, progress=bar.update)
        synthetic, _ = radiomics_features(syn_paths, progress=bar.update)
    return real, synthetic


def evaluate(real: SplitTable, synthetic: SyntheticSet, extractor: FeatureExtractor, options: QualityOptions, *,
             pixel_extractor: FeatureExtractor | None = None,
             generator_references: tuple[list[Path], list[str]] | None = None) -> QualityReport | None:
    """Compute every figure of the stage; returns None on non-main accelerate processes (after extraction).

    ``real``: the whole split (its ``--real-split`` rows are the fidelity reference, its other rows the FID
    floor's second sample, its ``train`` rows the memorisation reference); ``synthetic``: read with the split's
    classes when ``options.per_class``. ``generator_references``: the generator's own training images and their
    patients (from its manifest's ``generator_training``), searched for memorised copies instead of the split's
    train rows. Raises :class:`DataError` (naming the file for an unreadable image) before
    anything is written anywhere.
    """
    reference = real.subset(list(options.real_split))
    if len(reference.frame) == 0:
        raise DataError(f"{real.source}: no real images in split {'+'.join(options.real_split)}")
    if options.protocol == CHEXGENBENCH:  # their metrics/fid.py keeps the first real row of each prompt
        kept = reference.frame.drop_duplicates("prompt").reset_index(drop=True)
        reference = SplitTable(kept, list(reference.classes), reference.dataset, reference.source,
                               reference.image_root, dict(reference.meta))
    train = real.subset("train")
    notes: list[str] = []
    if generator_references is not None:
        train_candidates, train_patients = list(generator_references[0]), list(generator_references[1])
        notes.append(f"memorisation searched the generator's own {len(train_candidates)} training images")
    else:
        train_candidates, train_patients = train.image_paths(), train.frame["patient_id"].tolist()
    do_memorisation = options.memorisation and len(set(train_patients)) >= 2
    if options.memorisation and not do_memorisation:
        notes.append("memorisation skipped: the training images do not hold two patients to calibrate on")
    ref_paths, syn_paths = reference.image_paths(), synthetic.image_paths()
    if extractor.input_size:
        notes += [n for n in (undersized_note(ref_paths, extractor.input_size, "real"),
                              undersized_note(syn_paths, extractor.input_size, "synthetic")) if n]
    if options.n is not None and (len(ref_paths) < options.n or len(syn_paths) < options.n):
        if options.n_at_most:
            notes.append(f"n capped at {options.n}: all {min(len(ref_paths), options.n)} real and "
                         f"{min(len(syn_paths), options.n)} synthetic images used")
        else:
            raise DataError(f"--n {options.n}: only {len(ref_paths)} real ({'+'.join(options.real_split)}) and "
                            f"{len(syn_paths)} synthetic images; lower --n or add images")
    ref_patients = reference.frame["patient_id"].to_numpy().astype(str)
    syn_clusters, syn_kind = synthetic_clusters(synthetic.frame)
    subgroups = {by: (subgroup_values(reference.frame, by, options.age_cuts),
                      synthetic_subgroups(synthetic.frame, real.frame, by, options.age_cuts)) for by in options.by}
    plans = _plan_rows(reference, synthetic, options, subgroups)
    pool = floor_pool(real, options.real_split)
    pool_labels = pool.labels()
    pool_groups = {by: subgroup_values(pool.frame, by, options.age_cuts) for by in options.by}
    for plan in plans:
        if len(plan.real_rows) > options.k and len(plan.synthetic_rows) > options.k:
            if plan.subgroup_by:  # the floor's other real images come from the same subgroup
                pool_rows = np.flatnonzero(pool_groups[plan.subgroup_by] == plan.subgroup)
            elif plan.name == OVERALL:
                pool_rows = np.arange(len(pool.frame))
            else:
                pool_rows = np.flatnonzero(pool_labels[:, real.classes.index(plan.name)] == 1)
            plan.floor = plan_floor(reference, plan.real_rows, len(plan.synthetic_rows), pool, pool_rows,
                                    options.seed)
    floor_paths = [p for plan in plans if isinstance(plan.floor, FloorPlan) for p in plan.floor.b_paths]
    train_paths = train_candidates if do_memorisation else []
    held_out = [p for p, split in zip(ref_paths, reference.frame["split"], strict=True) if split != "train"]
    everything = list(dict.fromkeys([*ref_paths, *syn_paths, *train_paths, *floor_paths]))
    position = {p: i for i, p in enumerate(everything)}
    cache_dir = options.cache_dir if options.cache_dir is not None else default_cache_dir()
    common = {"cache_dir": cache_dir, "use_cache": options.use_cache, "batch_size": options.batch_size,
              "num_workers": options.num_workers, "progress": options.progress}
    extracted = extract_features(everything, extractor, **common)
    cached, computed = extracted.n_cached, extracted.n_computed
    pixels = None
    if do_memorisation:
        pixel_extractor = pixel_extractor or load_extractor("pixels", image_size=options.pixel_size,
                                                            device=options.device)
        pixel_paths = list(dict.fromkeys([*syn_paths, *train_paths, *held_out]))
        pixels = extract_features(pixel_paths, pixel_extractor, **common)
        pixel_position = {p: i for i, p in enumerate(pixel_paths)}
    if not process_state().is_main_process:
        return None

    def take(paths: list[Path]) -> np.ndarray:
        return extracted.features[[position[p] for p in paths]]

    ref_features, syn_features = take(ref_paths), take(syn_paths)
    radiomics = _radiomics(ref_paths, syn_paths, options.progress) if options.frd else None
    memorisation = None
    if do_memorisation and pixels is not None:
        size = options.pixel_size

        def take_pixels(paths: list[Path]) -> np.ndarray:
            return pixels.features[[pixel_position[p] for p in paths]].reshape(len(paths), size, size)

        memorisation = memorisation_check(
            syn_features, take_pixels(syn_paths), take(train_paths), take_pixels(train_paths),
            train_patients, real_features=take(held_out), real_pixels=take_pixels(held_out),
            quantile=options.quantile, n_calibration=options.calibration_n,
            max_shift=options.max_shift, flip=True, seed=options.seed, device=options.device)

    base = {"feature_weights": extractor.weights, "feature_fingerprint": extractor.fingerprint[:16],
            "feature_dim": extractor.dim, "feature_trained_on": ",".join(extractor.trained_on),
            "feature_preprocessing": extractor.preprocessing, "real_csv": real.source, "real_dataset": real.dataset,
            "real_split": "+".join(options.real_split), "synthetic_dir": str(synthetic.root),
            "n_requested": options.n if options.n is not None else "", "seed": options.seed,
            "features_cached": cached, "features_computed": computed}
    syn_labels = synthetic.labels() if options.per_class else None
    shared = [c for c in real.classes if c in synthetic.frame.columns]
    ref_strata = label_strata(reference.frame, shared, real.source)
    syn_strata = label_strata(synthetic.frame, shared, str(synthetic.root / "synthetic.csv"))
    rows = []
    for plan in track(plans, "image quality: figures and intervals per class / subgroup", "set",
                      enabled=options.progress):
        row = dict(base, **{"class": plan.name, "n_real_available": plan.n_real_available,
                            "n_synthetic_available": plan.n_synthetic_available})
        if plan.subgroup_by:
            row.update({"subgroup_by": plan.subgroup_by, "subgroup": plan.subgroup,
                        "n_synthetic_unknown_subgroup": int((subgroups[plan.subgroup_by][1] == "").sum())})
        if options.protocol == CHEXGENBENCH and len(plan.real_rows) >= 2 and len(plan.synthetic_rows) >= 2:
            row.update(chexgenbench_kid(ref_features[plan.real_rows], syn_features[plan.synthetic_rows],
                                        seed=options.seed, device=options.device))
        row.update(_figures_or_note(ref_features[plan.real_rows], syn_features[plan.synthetic_rows], options,
                                    options.seed, real_clusters=ref_patients[plan.real_rows],
                                    fake_clusters=syn_clusters[plan.synthetic_rows], fake_kind=syn_kind,
                                    real_strata=ref_strata[plan.real_rows],
                                    fake_strata=syn_strata[plan.synthetic_rows]))
        if radiomics is not None and min(len(plan.real_rows), len(plan.synthetic_rows)) >= 2:
            found = frd_jackknife(radiomics[0][plan.real_rows], radiomics[1][plan.synthetic_rows],
                                  real_clusters=ref_patients[plan.real_rows],
                                  synthetic_clusters=syn_clusters[plan.synthetic_rows],
                                  n_groups=options.jackknife_groups, seed=options.seed)
            row.update(found.row())
            row["notes"] = "; ".join(filter(None, [row.get("notes", ""), *found.notes]))
        floor = floor_columns(plan.floor, take, options, row.get("fid", math.nan))
        floor_note, floor_groups = floor.pop("floor_note", ""), floor.pop("floor_groups", None)
        row.update(floor)
        if floor_groups is not None:
            row["ci_method"] += f"; FID floor: the same jackknife ({floor_groups} groups)" if floor_groups else \
                "; FID floor: no interval (too few patients)"
        row["notes"] = "; ".join(filter(None, [row.get("notes", ""), floor_note]))
        if plan.name == OVERALL:
            if options.diversity:
                row.update(diversity_metrics(
                    syn_paths, synthetic.frame["prompt"].tolist(), ref_paths, reference.frame["prompt"].tolist(),
                    size=options.msssim_size, n_pairs=options.diversity_pairs, per_prompt=options.images_per_prompt,
                    max_prompts=options.diversity_prompts, seed=options.seed, device=options.device))
            if memorisation is not None:
                row.update(summary_row(memorisation))
        elif plan.subgroup_by:
            if memorisation is not None and plan.n_synthetic_available:
                row.update(summary_row(memorisation, mask=subgroups[plan.subgroup_by][1] == plan.subgroup))
        elif memorisation is not None and syn_labels is not None and plan.n_synthetic_available:
            row.update(summary_row(memorisation, mask=syn_labels[:, real.classes.index(plan.name)] == 1))
        rows.append(row)
    return QualityReport(rows, memorisation, syn_paths, train_paths, train_patients, cached, computed, notes)


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------


def options_from_args(args: argparse.Namespace) -> QualityOptions:
    """The :class:`QualityOptions` of parsed CLI flags (``--bootstrap``, deprecated, is ignored with a warning)."""
    if args.bootstrap is not None:
        print(f"warning: --bootstrap {args.bootstrap} is deprecated and ignored: FID's interval is now a "
              "delete-a-group jackknife over patients (--jackknife-groups, default "
              f"{DEFAULT_JACKKNIFE_GROUPS}); the flag will be removed in the next release", file=sys.stderr)
    if args.jackknife_groups < MIN_JACKKNIFE_GROUPS:
        raise DataError(f"--jackknife-groups {args.jackknife_groups}: use at least {MIN_JACKKNIFE_GROUPS} (default "
                        f"{DEFAULT_JACKKNIFE_GROUPS})")
    for flag, value, least in (("--n", args.n, args.k + 1), ("--k", args.k, 1), ("--kid-subset-size",
                                                                                args.kid_subset_size, 2),
                               ("--kid-subsets", args.kid_subsets, 1), ("--batch-size", args.batch_size, 1),
                               ("--pixel-size", args.pixel_size, 8), ("--msssim-size", args.msssim_size, 16)):
        if value is not None and value < least:
            raise DataError(f"{flag} {value}: use at least {least}"
                            + (f" (PRDC with --k {args.k} needs more than k images per side)" if flag == "--n" else ""))
    splits = ("train", "val", "test") if args.real_split == "all" else \
        tuple(s.strip() for s in args.real_split.split(",") if s.strip())
    return QualityOptions(
        real_split=splits, per_class=args.per_class, n=args.n, k=args.k,
        n_at_most=str(getattr(args, "preset", "")).startswith("quick")
        and "n" not in getattr(args, "preset_changes", ()),
        kid_subset_size=args.kid_subset_size,
        kid_subsets=args.kid_subsets, jackknife_groups=args.jackknife_groups, seed=args.seed,
        batch_size=args.batch_size,
        num_workers=args.num_workers, device=args.device, cache_dir=args.cache_dir, use_cache=not args.no_cache,
        memorisation=not args.no_memorisation, pixel_size=args.pixel_size, max_shift=args.max_shift,
        quantile=args.memorisation_quantile, calibration_n=args.calibration_n, diversity=not args.no_diversity,
        msssim_size=args.msssim_size, diversity_pairs=args.diversity_pairs, diversity_prompts=args.diversity_prompts,
        images_per_prompt=args.images_per_prompt, detectability=not args.no_detectability, frd=args.frd,
        protocol=args.protocol,
        by=subgroup_variables(args.by), age_cuts=age_cuts(args.age_bands), progress=True)


def _grid_image(path: str | Path) -> np.ndarray:
    return square_float(load_image(path))


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def run(args: argparse.Namespace) -> Path | None:
    """Read the inputs, evaluate, write the run folder and the rows; returns the results CSV (None on
    non-main processes)."""
    if args.reference:
        from benchmark.fidelity.reference_stage import run_reference

        return run_reference(args)
    if not args.real or not args.synthetic:
        raise DataError("give --real CSV and --synthetic DIR (or set REAL_CSV and SYNTHETIC_DIR)")
    options = options_from_args(args)
    check_writable(TABLE, args.results_dir)  # before the features: a full disk or a corrupt CSV stops here
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    real = read_split_csv(args.real, image_root=args.image_root, classes=classes)
    synthetic = read_synthetic_set(args.synthetic, classes=real.classes if options.per_class else None)
    synthetic.check_labels(real.classes)  # overall rows use no label; a garbage label column stops all the same
    if options.cache_dir is None:
        options.cache_dir = str(default_cache_dir(args.results_dir))
    training = resolve_generator_training(synthetic.manifest.get("generator_training"),
                                          where=str(synthetic.root / "manifest.json"))
    generator = check_generator_overlap(training, real, allow=args.allow_generator_overlap)
    features = args.features
    if options.protocol == CHEXGENBENCH:
        if args.features not in ("xrv", "raddino-chexgenbench") or options.k != 5:
            raise DataError("--protocol chexgenbench fixes the features (RAD-DINO as CheXGenBench feeds it) and k = 5; "
                            "leave --features and --k out")
        features = "raddino-chexgenbench"
    extractor = load_extractor(features, args.weights, image_size=args.image_size, device=options.device,
                               xrv_cache_dir=args.xrv_cache_dir)
    extractor_warning = extractor_note(real.dataset, extractor.name, extractor.trained_on)
    if extractor_warning:
        print(f"warning: {extractor_warning}", file=sys.stderr)
    report = evaluate(real, synthetic, extractor, options,
                      generator_references=training_references(training, real))
    if report is None:
        return None
    model_name = args.model_name or synthetic.model_name
    run_id = new_run_id("iq")
    folder = run_dir(run_id, args.results_dir)
    if report.memorisation is not None:
        write_report(report.memorisation, folder, report.synthetic_paths, report.train_paths, report.train_patients,
                     load=_grid_image)
    rows = [{"model_name": model_name, "extra_info": args.extra_info or "", "feature_extractor": extractor.name,
             "protocol": options.protocol, "preset": getattr(args, "preset", None) or "", **row,
             **generator.columns(), "feature_note": extractor_warning,
             "report_dir": str(folder),
             "notes": "; ".join([*report.notes, *filter(None, [row.get("notes")])])}
            for row in report.rows]
    config = {"options": asdict(options), "real": str(args.real), "synthetic": str(args.synthetic),
              "features": extractor.describe(), "classes": real.classes, "preset": getattr(args, "preset", None) or ""}
    path = write_run_rows(TABLE, rows, folder, results_dir=args.results_dir, config=config, run_id=run_id)
    shown = ("class", "n_real", "n_synthetic", "fid", "fid_floor", "fd_inf", "kid_mean", "precision", "recall",
             "density", "coverage", "detect_auroc", "memorised_share")
    print(f"{model_name} [{extractor.name}] features: {report.features_computed} computed, "
          f"{report.features_cached} from cache")
    for row in rows:
        print("  " + "  ".join(f"{c}={_format(row.get(c, ''))}" for c in shown if c in row))
    print(f"wrote {len(rows)} row(s) to {path}; memorisation report in {folder}")
    if args.save_reference:
        from benchmark.fidelity.reference_stage import save_reference_file

        saved = save_reference_file(real, extractor, options, args.save_reference)
        print(f"reference statistics of {real.source} ({'+'.join(options.real_split)}, {extractor.name}) written to "
              f"{saved}: means and covariances only, no image, path or patient id")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_stage_args(build_parser(), argv)
    return exit_status(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
