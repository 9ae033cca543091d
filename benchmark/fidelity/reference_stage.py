"""The image-quality stage with reference statistics (:mod:`benchmark.fidelity.reference`): ``--save-reference FILE``
writes the real reference's statistics after a run; ``--reference FILE`` computes FID against them in place of the
real images, as rows whose ``feature_extractor`` names the file."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.provenance import git_commit, new_run_id, utc_timestamp
from benchmark.core.results import check_writable, run_dir, write_run_rows
from benchmark.data import DataError, SplitTable
from benchmark.data.leakage import extractor_note
from benchmark.data.synthetic import read_synthetic_set
from benchmark.fidelity.cli import (
    OVERALL,
    TABLE,
    QualityOptions,
    _format,
    options_from_args,
    synthetic_clusters,
)
from benchmark.fidelity.features import (
    FeatureExtractor,
    default_cache_dir,
    extract_features,
    load_extractor,
    process_state,
)
from benchmark.fidelity.reference import (
    NOT_FROM_REFERENCE,
    check_extractor,
    load_reference,
    reference_fid,
    reference_statistics,
    save_reference,
)


def save_reference_file(real: SplitTable, extractor: FeatureExtractor, options: QualityOptions,
                        path: str | Path) -> Path:
    """Write the statistics of the ``--real-split`` images (overall, and each class with 2+ positives) to ``path``
    (:mod:`benchmark.fidelity.reference`): no image, path or patient id leaves the machine. Features come from
    the cache the stage has just filled."""
    reference = real.subset(list(options.real_split))
    paths = reference.image_paths()
    features = extract_features(paths, extractor, cache_dir=options.cache_dir, use_cache=options.use_cache,
                                batch_size=options.batch_size, num_workers=options.num_workers).features
    patients = reference.frame["patient_id"].to_numpy().astype(str)
    rows = {OVERALL: reference_statistics(features, patients)}
    labels = reference.labels()
    for j, name in enumerate(reference.classes):
        positive = np.flatnonzero(labels[:, j] == 1)
        if len(positive) >= 2:
            rows[name] = reference_statistics(features[positive], patients[positive])
    header = {"extractor": extractor.describe(), "dataset": real.dataset, "real_split": "+".join(options.real_split),
              "split_csv": Path(real.source).name, "classes": list(real.classes), "created": utc_timestamp(),
              "git_commit": git_commit()}
    return save_reference(path, rows, header)


def run_reference(args: argparse.Namespace) -> Path | None:
    """``--reference FILE``: FID of the synthetic set against published reference statistics, per row the file
    holds, written as rows whose ``feature_extractor`` names the reference (never mixed with rows from images)."""
    if not args.synthetic:
        raise DataError("give --synthetic DIR (or set SYNTHETIC_DIR) with --reference")
    if args.real:
        raise DataError("give either --real CSV (real images) or --reference FILE (their statistics), not both")
    options = options_from_args(args)
    check_writable(TABLE, args.results_dir)
    reference = load_reference(args.reference)
    classes = [c for c in reference.rows if c != OVERALL] if options.per_class else None
    synthetic = read_synthetic_set(args.synthetic, classes=classes)
    if options.cache_dir is None:
        options.cache_dir = str(default_cache_dir(args.results_dir))
    extractor = load_extractor(args.features, args.weights, image_size=args.image_size, device=options.device,
                               xrv_cache_dir=args.xrv_cache_dir)
    check_extractor(reference, extractor.describe())
    dataset = str(reference.header.get("dataset", ""))
    extractor_warning = extractor_note(dataset, extractor.name, extractor.trained_on) if dataset else ""
    if extractor_warning:
        print(f"warning: {extractor_warning}", file=sys.stderr)
    paths = synthetic.image_paths()
    extracted = extract_features(paths, extractor, cache_dir=options.cache_dir, use_cache=options.use_cache,
                                 batch_size=options.batch_size, num_workers=options.num_workers,
                                 progress=options.progress)
    if not process_state().is_main_process:
        return None
    clusters, kind = synthetic_clusters(synthetic.frame)
    labels = synthetic.labels() if classes else None
    plans = [(OVERALL, np.arange(len(paths)))]
    plans += [(name, np.flatnonzero(labels[:, j] == 1)) for j, name in enumerate(classes or []) if labels is not None]
    model_name = args.model_name or synthetic.model_name
    run_id = new_run_id("iq")
    folder = run_dir(run_id, args.results_dir)
    rows = []
    for name, chosen in plans:
        row: dict[str, Any] = {"model_name": model_name, "extra_info": args.extra_info or "",
                               "feature_extractor": f"{extractor.name}|reference:{reference.label}", "class": name,
                               "feature_weights": extractor.weights, "feature_fingerprint": extractor.fingerprint[:16],
                               "feature_dim": extractor.dim, "feature_preprocessing": extractor.preprocessing,
                               "real_csv": "", "real_dataset": dataset, "reference_file": str(reference.path),
                               "reference_sha256": reference.sha256,
                               "real_split": reference.header.get("real_split", ""),
                               "synthetic_dir": str(synthetic.root), "seed": options.seed,
                               "preset": getattr(args, "preset", None) or "",
                               "n_synthetic_available": len(chosen), "features_cached": extracted.n_cached,
                               "features_computed": extracted.n_computed, "feature_note": extractor_warning,
                               "report_dir": str(folder)}
        if len(chosen) < 2:
            row.update({"n_real": reference.rows[name].n, "n_synthetic": len(chosen),
                        "notes": "too few synthetic images for FID (need 2)"})
        else:
            row.update(reference_fid(reference.rows[name], extracted.features[chosen],
                                     fake_clusters=clusters[chosen], fake_cluster_kind=kind,
                                     n_groups=options.jackknife_groups, seed=options.seed, device=options.device))
        row["notes"] = "; ".join(filter(None, [row.get("notes", ""), NOT_FROM_REFERENCE]))
        rows.append(row)
    config = {"options": asdict(options), "reference": str(reference.path), "reference_sha256": reference.sha256,
              "synthetic": str(args.synthetic), "features": extractor.describe()}
    path = write_run_rows(TABLE, rows, folder, results_dir=args.results_dir, config=config, run_id=run_id)
    print(f"{model_name} [{extractor.name}] against reference {reference.label}: features "
          f"{extracted.n_computed} computed, {extracted.n_cached} from cache")
    for row in rows:
        print("  " + "  ".join(f"{c}={_format(row.get(c, ''))}" for c in ("class", "n_real", "n_synthetic", "fid",
                                                                          "fid_ci_low", "fid_ci_high") if c in row))
    print(f"wrote {len(rows)} row(s) to {path}")
    return path
