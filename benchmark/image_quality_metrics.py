"""``./scripts/image_quality_metrics.sh``: fidelity, diversity and memorisation of a synthetic set against a split.

Owns the image-quality stage end to end: :func:`evaluate` (the pure core: split + synthetic set + extractor in,
result rows and the memorisation result out) and :func:`main` (the CLI: reads the inputs, writes
``results/image_quality_metrics.csv`` rows keyed by model_name, extra_info, feature_extractor and class, and the
memorisation report under ``results/runs/<run_id>/``).

* Fidelity (FID with bootstrap CI, KID, PRDC) compares the synthetic images with the real images of
  ``--real-split`` (default ``test``, the split whose prompts a generator is run on); ``--n N`` draws N images
  from each side first (stops when a side has fewer). With ``--per-class``, every class of the split adds a row:
  synthetic images whose label for the class is 1 against real images whose label is 1 (both sides down to the
  smaller count when ``--n`` is given; figures left empty, with a note, when a side has ``k`` or fewer images).
* Diversity (overall row): MS-SSIM within prompts and across random pairs, the real split's value beside each.
* Memorisation: every synthetic image against the ``train`` split (see :mod:`benchmark.memorisation`), with the
  share of ``--real-split`` images flagged the same way beside it (the chance level: other patients).

Features are computed once per file and extractor and cached (:mod:`benchmark.features`); under
``accelerate launch`` extraction is split over the processes and the main process computes every metric on the
pooled set. Nothing is written until every figure is computed, so a bad image stops the run with its name and
leaves existing results untouched.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.cli import add_set_arguments
from benchmark.data import DataError, SplitTable, load_image, read_split_csv
from benchmark.diversity import DEFAULT_PAIRS, DEFAULT_PER_PROMPT, DEFAULT_PROMPTS, DEFAULT_SIZE, diversity_metrics
from benchmark.features import (
    DEFAULT_PIXEL_SIZE,
    EXTRACTORS,
    FeatureExtractor,
    default_cache_dir,
    extract_features,
    load_extractor,
    process_state,
    square_float,
)
from benchmark.fidelity import fidelity_metrics, subsample_indices
from benchmark.memorisation import (
    DEFAULT_CALIBRATION_N,
    DEFAULT_MAX_SHIFT,
    DEFAULT_QUANTILE,
    MemorisationResult,
    memorisation_check,
    summary_row,
    write_report,
)
from benchmark.provenance import new_run_id
from benchmark.results import run_dir, upsert_rows
from benchmark.synthetic import SyntheticSet, read_synthetic_set

TABLE = "image_quality_metrics"
OVERALL = "overall"


@dataclass
class QualityOptions:
    """Everything that shapes the figures (also hashed into each row's ``config_hash``)."""

    real_split: tuple[str, ...] = ("test",)
    per_class: bool = False
    n: int | None = None
    k: int = 5
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    bootstrap: int = 100
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


def _figures_or_note(real: np.ndarray, fake: np.ndarray, options: QualityOptions, seed: int) -> dict[str, Any]:
    if len(real) <= options.k or len(fake) <= options.k:
        return {"n_real": len(real), "n_synthetic": len(fake),
                "notes": f"too few images for the figures (need more than k={options.k} per side)"}
    return fidelity_metrics(real, fake, k=options.k, kid_subset_size=options.kid_subset_size,
                            kid_n_subsets=options.kid_subsets, n_bootstrap=options.bootstrap, seed=seed,
                            device=options.device)


def evaluate(real: SplitTable, synthetic: SyntheticSet, extractor: FeatureExtractor, options: QualityOptions, *,
             pixel_extractor: FeatureExtractor | None = None) -> QualityReport | None:
    """Compute every figure of the stage; returns None on non-main accelerate processes (after extraction).

    ``real``: the whole split (its ``--real-split`` rows are the fidelity reference, its ``train`` rows the
    memorisation reference); ``synthetic``: read with the split's classes when ``options.per_class``.
    Raises :class:`DataError` (naming the file for an unreadable image) before anything is written anywhere.
    """
    reference = real.subset(list(options.real_split))
    if len(reference.frame) == 0:
        raise DataError(f"{real.source}: no real images in split {'+'.join(options.real_split)}")
    train = real.subset("train")
    notes: list[str] = []
    do_memorisation = options.memorisation and train.frame["patient_id"].nunique() >= 2
    if options.memorisation and not do_memorisation:
        notes.append("memorisation skipped: the split's train rows do not hold two patients to calibrate on")
    ref_paths, syn_paths = reference.image_paths(), synthetic.image_paths()
    if options.n is not None and (len(ref_paths) < options.n or len(syn_paths) < options.n):
        raise DataError(f"--n {options.n}: only {len(ref_paths)} real ({'+'.join(options.real_split)}) and "
                        f"{len(syn_paths)} synthetic images; lower --n or add images")
    train_paths = train.image_paths() if do_memorisation else []
    held_out = [p for p, split in zip(ref_paths, reference.frame["split"], strict=True) if split != "train"]
    everything = list(dict.fromkeys([*ref_paths, *syn_paths, *train_paths]))
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
    memorisation = None
    if do_memorisation and pixels is not None:
        size = options.pixel_size

        def take_pixels(paths: list[Path]) -> np.ndarray:
            return pixels.features[[pixel_position[p] for p in paths]].reshape(len(paths), size, size)

        memorisation = memorisation_check(
            syn_features, take_pixels(syn_paths), take(train_paths), take_pixels(train_paths),
            train.frame["patient_id"].tolist(), real_features=take(held_out), real_pixels=take_pixels(held_out),
            quantile=options.quantile, n_calibration=options.calibration_n,
            max_shift=options.max_shift, flip=True, seed=options.seed, device=options.device)

    base = {"feature_weights": extractor.weights, "feature_fingerprint": extractor.fingerprint[:16],
            "feature_dim": extractor.dim, "feature_trained_on": ",".join(extractor.trained_on),
            "feature_preprocessing": extractor.preprocessing, "real_csv": real.source, "real_dataset": real.dataset,
            "real_split": "+".join(options.real_split), "synthetic_dir": str(synthetic.root),
            "n_requested": options.n if options.n is not None else "", "seed": options.seed,
            "features_cached": cached, "features_computed": computed}
    overall = dict(base, **{"class": OVERALL, "n_real_available": len(ref_features),
                            "n_synthetic_available": len(syn_features)})
    idx_r = subsample_indices(len(ref_features), options.n, options.seed)
    idx_s = subsample_indices(len(syn_features), options.n, options.seed + 1)
    overall.update(_figures_or_note(ref_features[idx_r], syn_features[idx_s], options, options.seed))
    if options.diversity:
        overall.update(diversity_metrics(
            syn_paths, synthetic.frame["prompt"].tolist(), ref_paths, reference.frame["prompt"].tolist(),
            size=options.msssim_size, n_pairs=options.diversity_pairs, per_prompt=options.images_per_prompt,
            max_prompts=options.diversity_prompts, seed=options.seed, device=options.device))
    if memorisation is not None:
        overall.update(summary_row(memorisation))
    rows = [overall]
    if options.per_class:
        real_labels, syn_labels = reference.labels(), synthetic.labels()
        for j, name in enumerate(real.classes):
            real_idx = np.flatnonzero(real_labels[:, j] == 1)
            syn_idx = np.flatnonzero(syn_labels[:, j] == 1)
            row = dict(base, **{"class": name, "n_real_available": len(real_idx),
                                "n_synthetic_available": len(syn_idx)})
            n_class = None if options.n is None else min(options.n, len(real_idx), len(syn_idx))
            pick_r = real_idx[subsample_indices(len(real_idx), n_class, options.seed)]
            pick_s = syn_idx[subsample_indices(len(syn_idx), n_class, options.seed + 1)]
            row.update(_figures_or_note(ref_features[pick_r], syn_features[pick_s], options, options.seed))
            if memorisation is not None and len(syn_idx):
                row.update(summary_row(memorisation, mask=syn_labels[:, j] == 1))
            rows.append(row)
    return QualityReport(rows, memorisation, syn_paths, train_paths, train.frame["patient_id"].tolist(),
                         cached, computed, notes)


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``image_quality_metrics.sh``; environment variables (SPEC §3) are the defaults, flags win."""
    p = argparse.ArgumentParser(prog="image_quality_metrics.sh", description=__doc__.splitlines()[0])
    add_set_arguments(p, "comma-separated classes (default: the split's)")
    p.add_argument("--features", choices=[e for e in EXTRACTORS if e != "pixels"], default="xrv")
    p.add_argument("--weights", default=None, help="xrv weights key or checkpoint folder; RAD-DINO id or folder; "
                   "Inception weights file")
    p.add_argument("--xrv-cache-dir", default=None, help="torchxrayvision weights cache (default: xrv's own)")
    p.add_argument("--image-size", type=int, default=None, help="run the extractor at this size (default: native)")
    p.add_argument("--real-split", default="test", help="split(s) of the fidelity reference, e.g. test or val,test")
    p.add_argument("--per-class", action="store_true", help="one row per class as well as overall")
    p.add_argument("--n", type=int, default=None, help="subsample both sides to N images (e.g. 5000)")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage")
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--bootstrap", type=int, default=100, help="FID bootstrap resamples (0: no CI)")
    p.add_argument("--batch-size", type=int, default=_env_int("BATCH_SIZE", 32))
    p.add_argument("--num-workers", type=int, default=_env_int("NUM_WORKERS", 0))
    p.add_argument("--seed", type=int, default=_env_int("SEED", 0))
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--cache-dir", default=None, help="feature cache (default $SYNTHCXR_CACHE/features, else "
                   "<results>/cache/features)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--no-memorisation", action="store_true")
    p.add_argument("--pixel-size", type=int, default=DEFAULT_PIXEL_SIZE, help="side of the pixel-space images")
    p.add_argument("--max-shift", type=int, default=DEFAULT_MAX_SHIFT, help="pixel-space shift tolerance (px)")
    p.add_argument("--memorisation-quantile", type=float, default=DEFAULT_QUANTILE)
    p.add_argument("--calibration-n", type=int, default=DEFAULT_CALIBRATION_N,
                   help="training images used to calibrate the memorisation thresholds")
    p.add_argument("--no-diversity", action="store_true")
    p.add_argument("--msssim-size", type=int, default=DEFAULT_SIZE, help="MS-SSIM image size (176+: 5 scales)")
    p.add_argument("--diversity-pairs", type=int, default=DEFAULT_PAIRS, help="random pairs per set")
    p.add_argument("--diversity-prompts", type=int, default=DEFAULT_PROMPTS, help="prompts for same-prompt pairs")
    p.add_argument("--images-per-prompt", type=int, default=DEFAULT_PER_PROMPT)
    return p


def options_from_args(args: argparse.Namespace) -> QualityOptions:
    """The :class:`QualityOptions` of parsed CLI flags."""
    splits = ("train", "val", "test") if args.real_split == "all" else \
        tuple(s.strip() for s in args.real_split.split(",") if s.strip())
    return QualityOptions(
        real_split=splits, per_class=args.per_class, n=args.n, k=args.k, kid_subset_size=args.kid_subset_size,
        kid_subsets=args.kid_subsets, bootstrap=args.bootstrap, seed=args.seed, batch_size=args.batch_size,
        num_workers=args.num_workers, device=args.device, cache_dir=args.cache_dir, use_cache=not args.no_cache,
        memorisation=not args.no_memorisation, pixel_size=args.pixel_size, max_shift=args.max_shift,
        quantile=args.memorisation_quantile, calibration_n=args.calibration_n, diversity=not args.no_diversity,
        msssim_size=args.msssim_size, diversity_pairs=args.diversity_pairs, diversity_prompts=args.diversity_prompts,
        images_per_prompt=args.images_per_prompt, progress=True)


def _grid_image(path: str | Path) -> np.ndarray:
    return square_float(load_image(path))


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def run(args: argparse.Namespace) -> Path | None:
    """Read the inputs, evaluate, write the run folder and the rows; returns the results CSV (None on
    non-main processes)."""
    if not args.real or not args.synthetic:
        raise DataError("give --real CSV and --synthetic DIR (or set REAL_CSV and SYNTHETIC_DIR)")
    options = options_from_args(args)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    real = read_split_csv(args.real, image_root=args.image_root, classes=classes)
    synthetic = read_synthetic_set(args.synthetic, classes=real.classes if options.per_class else None)
    if options.cache_dir is None:
        options.cache_dir = str(default_cache_dir(args.results_dir))
    extractor = load_extractor(args.features, args.weights, image_size=args.image_size, device=options.device,
                               xrv_cache_dir=args.xrv_cache_dir)
    report = evaluate(real, synthetic, extractor, options)
    if report is None:
        return None
    model_name = args.model_name or synthetic.model_name
    run_id = new_run_id("iq")
    folder = run_dir(run_id, args.results_dir)
    if report.memorisation is not None:
        write_report(report.memorisation, folder, report.synthetic_paths, report.train_paths, report.train_patients,
                     load=_grid_image)
    rows = [{"model_name": model_name, "extra_info": args.extra_info or "", "feature_extractor": extractor.name,
             **row, "report_dir": str(folder), "notes": "; ".join([*report.notes, *filter(None, [row.get("notes")])])}
            for row in report.rows]
    config = {"options": asdict(options), "real": str(args.real), "synthetic": str(args.synthetic),
              "features": extractor.describe(), "classes": real.classes}
    path = upsert_rows(TABLE, rows, results_dir=args.results_dir, config=config, run_id=run_id)
    shown = ("class", "n_real", "n_synthetic", "fid", "kid_mean", "precision", "recall", "density", "coverage",
             "memorised_share")
    print(f"{model_name} [{extractor.name}] features: {report.features_computed} computed, "
          f"{report.features_cached} from cache")
    for row in rows:
        print("  " + "  ".join(f"{c}={_format(row.get(c, ''))}" for c in shown if c in row))
    print(f"wrote {len(rows)} row(s) to {path}; memorisation report in {folder}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
