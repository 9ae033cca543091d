"""``./scripts/privacy_metrics.sh``: patient re-identification and text-image alignment of a synthetic set.

Owns the privacy stage end to end: :func:`evaluate` (the pure core: split + synthetic set + loaded models in,
result rows and per-image frames out) and :func:`main` (the CLI). Rows go to ``results/privacy_metrics.csv``
(keyed by model_name, extra_info, reid_model, class) and ``results/alignment_metrics.csv`` (model_name,
extra_info, alignment_model, class); per-image scores, the closest re-identified pairs (PNG) and a trained
re-id checkpoint go under ``results/runs/<run_id>/``.

* Re-identification (:mod:`benchmark.privacy.reid`): ``--reid-model PATH`` loads CheXGenBench's Siamese ResNet-50
  state dict (``--reid-arch`` for other backbones) at the image size its sidecar records (another
  ``--reid-image-size`` is refused unless ``--reid-allow-size-mismatch``), or ``--reid-train`` trains one on the
  split's *train* patients with two or more images, selected on *val* patients. The *screen* scores each synthetic
  image against every train image (threshold at ``--fmr`` on val images' best matches; the *test* images scored
  the same way are a chance level). The *prompt-matched* design (``--design matched``, the default when
  ``source_row`` / ``patient_id`` of synthetic.csv point at train rows) scores each synthetic image against its own
  source and against another train patient (the null), and tests the difference. The re-id model's verification
  AUROC on val pairs is in every row.
* Alignment (:mod:`benchmark.privacy.alignment`, ``--alignment-model NAME_OR_DIR``): cosine of image and prompt
  embeddings per synthetic image, against shuffled prompts (chance), with the real test images on their own
  prompts as the reference; overall and per class.

Nothing is written until every figure is computed: bad input stops the run with a :class:`DataError` naming the
file, and existing results stay as they were.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.core.cli import parse_stage_args
from benchmark.core.errors import exit_status
from benchmark.core.progress import track
from benchmark.core.provenance import new_run_id
from benchmark.core.results import check_writable, run_dir, write_run_rows
from benchmark.data import DataError, SplitTable, label_matrix, load_image, read_split_csv
from benchmark.data.generator_training import check_generator_overlap, training_references
from benchmark.data.generator_training import resolve as resolve_generator_training
from benchmark.data.synthetic import SyntheticSet, read_synthetic_set
from benchmark.fidelity.features import square_float
from benchmark.models.training import load_tensors
from benchmark.privacy import alignment as align
from benchmark.privacy import reid as privacy
from benchmark.privacy.defaults import DESIGNS, build_parser, check_asked
from benchmark.privacy.matched import MatchedResult, draw_references, label_strata, matched_design, matched_summary
from benchmark.privacy.screen import ReidResult, reid_check, summary_row
from benchmark.privacy.training import ReidTrainConfig, train_reid

OVERALL = "overall"
GRID_PAIRS = 12
PRIVACY_TABLE = "privacy_metrics"  # keys in core.results.RESULT_TABLES: model_name, extra_info, reid_model, class
ALIGNMENT_TABLE = "alignment_metrics"  # keys: model_name, extra_info, alignment_model, class


@dataclass
class PrivacyOptions:
    """Everything that shapes the figures (also hashed into each row's ``config_hash``). ``design``: ``auto`` (the
    prompt-matched design besides the screen when the synthetic set has sources among the train rows), ``matched``
    (required) or ``screen``."""

    image_size: int = privacy.DEFAULT_IMAGE_SIZE
    allow_size_mismatch: bool = False
    design: str = "auto"
    fmr: float = privacy.DEFAULT_FMR
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 32
    num_workers: int = 0
    device: str = "auto"
    train: ReidTrainConfig | None = None
    per_class: bool = True


@dataclass
class PrivacyReport:
    """What :func:`evaluate` found: rows of both tables, the per-image frames and the re-id model (trained or
    loaded)."""

    privacy_rows: list[dict[str, Any]] = field(default_factory=list)
    alignment_rows: list[dict[str, Any]] = field(default_factory=list)
    reid: ReidResult | None = None
    matched: MatchedResult | None = None
    reid_model: privacy.SiameseReID | None = None
    train_history: list[dict[str, float]] = field(default_factory=list)
    alignment_frame: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    screen_paths: list[Path] = field(default_factory=list)  # the images the screen searched, with their patients
    screen_patients: list[str] = field(default_factory=list)


def _patients_with_pairs(split: SplitTable) -> int:
    return int((split.frame["patient_id"].value_counts() >= 2).sum())


def _class_masks(classes: Sequence[str], labels: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(OVERALL, np.ones(len(labels), bool))] + [(c, labels[:, j] == 1) for j, c in enumerate(classes)]




@dataclass
class Sources:
    """Where each synthetic image came from (all ``(N,)``): ``train_position`` (index among the split's train rows,
    -1 when its source row is not a train row or unknown), ``patient`` (its source patient, "" when unknown, from
    ``patient_id`` or the split row ``source_row`` names), ``cluster`` (source patient, else source row, else the
    image: the independent unit of the screen's intervals) and how many images have a train source."""

    train_position: np.ndarray
    patient: np.ndarray
    cluster: np.ndarray
    n_train_sourced: int
    notes: list[str] = field(default_factory=list)


def synthetic_sources(real: SplitTable, synthetic: SyntheticSet) -> Sources:
    """Map synthetic.csv's ``source_row`` (a 0-based row of the split CSV, as ``generate.sh --prompts SPLIT``
    writes it) and ``patient_id`` onto the split. Stops with :class:`DataError` naming synthetic.csv's row for a
    ``source_row`` outside the split CSV, or whose patient or split differs from what synthetic.csv carries (a set
    made from another CSV)."""
    frame, n = synthetic.frame, len(synthetic.frame)
    csv_path = synthetic.root / "synthetic.csv"
    split_rows = real.frame
    raw = frame["source_row"].fillna("").astype(str).str.strip() if "source_row" in frame else pd.Series([""] * n)
    numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    has_row = np.isfinite(numeric)
    bad = np.flatnonzero((raw.to_numpy() != "") & (~has_row | (numeric != np.round(numeric)) | (numeric < 0)))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{csv_path}: row {i + 1}: source_row {raw.iat[i]!r} is not a row number")
    rows = np.where(has_row, numeric, -1).astype(np.int64)
    beyond = np.flatnonzero(rows >= len(split_rows))
    if beyond.size:
        i = int(beyond[0])
        raise DataError(f"{csv_path}: row {i + 1}: source_row {rows[i]} is beyond the {len(split_rows)} rows of "
                        f"{real.source}: was the set made from another prompts CSV?")
    patients = np.full(n, "", dtype=object)
    known = rows >= 0
    patients[known] = split_rows["patient_id"].astype(str).to_numpy()[rows[known]]
    for column in ("patient_id", "split"):
        if column not in frame:
            continue
        claimed = frame[column].fillna("").astype(str).str.strip().to_numpy()
        if column == "patient_id":
            actual = patients
        else:
            actual = np.where(known, split_rows["split"].astype(str).to_numpy()[np.maximum(rows, 0)], "")
        clash = np.flatnonzero(known & (claimed != "") & (claimed != actual))
        if clash.size:
            i = int(clash[0])
            raise DataError(f"{csv_path}: row {i + 1}: {column} {claimed[i]!r}, but its source_row {rows[i]} is "
                            f"{column} {actual[i]!r} in {real.source}: was the set made from another CSV?")
        if column == "patient_id":
            patients = np.where(patients == "", claimed, patients)
    split = real.frame["split"].to_numpy()
    train_rows = np.flatnonzero(split == "train")
    position = np.full(n, -1, dtype=np.int64)
    lookup = {int(r): k for k, r in enumerate(train_rows)}
    for i in np.flatnonzero(known):
        position[i] = lookup.get(int(rows[i]), -1)
    train_patients = set(real.frame["patient_id"].astype(str).to_numpy()[train_rows])
    in_train = np.array([p in train_patients for p in patients], dtype=bool)
    patients_in_design = np.where(in_train, patients, "")
    cluster = np.array([f"patient:{p}" if p else (f"row:{r}" if r >= 0 else f"image:{i}")
                        for i, (p, r) in enumerate(zip(patients, rows, strict=True))], dtype=object)
    notes = []
    prompts_csv = synthetic.manifest.get("prompts_csv")
    if prompts_csv and known.any() and Path(str(prompts_csv)).name != Path(real.source).name:
        notes.append(f"the synthetic set was generated from {prompts_csv}, not {real.source}: its source_row is "
                     "read as a row of the latter" + (" (checked against patient_id)" if "patient_id" in frame
                                                      else " (unchecked: synthetic.csv has no patient_id)"))
    return Sources(position, patients_in_design, cluster, int(in_train.sum()), notes)


def evaluate(real: SplitTable, synthetic: SyntheticSet, options: PrivacyOptions, *,
             reid_model: privacy.SiameseReID | None = None, aligner: align.AlignmentModel | None = None,
             generator_references: tuple[list[Path], list[str]] | None = None) -> PrivacyReport:
    """Compute both analyses (each only when its model is given, or ``options.train`` asks for training).

    ``generator_references``: the generator's own training images and patients (its manifest's
    ``generator_training``); the screen then searches them instead of the split's train rows."""
    report = PrivacyReport()
    train, val, test = real.subset("train"), real.subset("val"), real.subset("test")
    syn_labels = synthetic.labels() if synthetic.classes else np.zeros((len(synthetic.frame), 0))
    test_labels = test.labels() if synthetic.classes else np.zeros((len(test.frame), 0))
    classes = synthetic.classes if options.per_class else []
    if reid_model is not None or options.train is not None:
        if len(train.frame) == 0:
            raise DataError(f"{real.source}: no train rows to re-identify against")
        if len(test.frame) == 0:
            raise DataError(f"{real.source}: no test rows for the chance level of re-identification")
        if options.design not in DESIGNS:
            raise ValueError(f"unknown design {options.design!r}; use one of {', '.join(DESIGNS)}")
        if (reid_model is not None and reid_model.image_size is not None
                and reid_model.image_size != options.image_size and not options.allow_size_mismatch):
            raise DataError(f"re-identification model trained at {reid_model.image_size} px "
                            f"({reid_model.image_size_source}) would be fed {options.image_size} px images; "
                            "allow it explicitly (allow_size_mismatch) or use the recorded size")
        sources = synthetic_sources(real, synthetic)
        run_matched = options.design == "matched" or (options.design == "auto" and sources.n_train_sourced > 0)
        if options.design == "matched" and sources.n_train_sourced == 0:
            raise DataError(f"{synthetic.root / 'synthetic.csv'}: --design matched needs synthetic images made from "
                            f"train rows of {real.source} (source_row or patient_id of a train patient); none are. "
                            "Generate from the train split (generate.sh --split train) or use --design screen")
        report.notes.extend(sources.notes)
        if options.design == "auto" and not run_matched:
            report.notes.append("screen only: no synthetic image has a source among the train rows (source_row / "
                                "patient_id); CheXGenBench's prompt-matched design needs a set generated from the "
                                "train split (generate.sh --split train)")
        load = {"size": options.image_size, "num_workers": options.num_workers}
        train_x = load_tensors(train.image_paths(), **load, progress="privacy: loading train images")
        val_x = (load_tensors(val.image_paths(), **load, progress="privacy: loading val images") if len(val.frame)
                 else torch.zeros(0, 1, 1, 1))
        if options.train is not None:
            if _patients_with_pairs(train) == 0:
                raise DataError(f"{real.source}: no train patient has two or more images; a re-identification "
                                "model cannot be trained on this split (give --reid-model instead)")
            if _patients_with_pairs(val) == 0:
                raise DataError(f"{real.source}: no val patient has two or more images to validate the trained "
                                "re-identification model on")
            trained = train_reid(train_x, train.frame["patient_id"].tolist(), val_x,
                                 val.frame["patient_id"].tolist(), options.train)
            reid_model, report.train_history = trained.model, trained.history
        assert reid_model is not None
        emb = {"batch_size": options.batch_size, "device": options.device}
        e_syn = privacy.embed_images(reid_model, load_tensors(synthetic.image_paths(), **load,
                                                              progress="privacy: loading synthetic images"),
                                     **emb, progress="privacy: re-id embedding synthetic images")
        e_train = privacy.embed_images(reid_model, train_x, **emb, progress="privacy: re-id embedding train images")
        e_val = (privacy.embed_images(reid_model, val_x, **emb, progress="privacy: re-id embedding val images")
                 if len(val.frame) else np.zeros((0, e_train.shape[1]), np.float32))
        e_test = privacy.embed_images(reid_model, load_tensors(test.image_paths(), **load,
                                                               progress="privacy: loading test images"),
                                      **emb, progress="privacy: re-id embedding test images")
        train_patients, val_patients = train.frame["patient_id"].tolist(), val.frame["patient_id"].tolist()
        report.screen_paths, report.screen_patients = train.image_paths(), train_patients
        e_screen = e_train
        if generator_references is not None:
            report.screen_paths, report.screen_patients = list(generator_references[0]), list(generator_references[1])
            e_screen = privacy.embed_images(
                reid_model, load_tensors(report.screen_paths, **load, progress="privacy: loading generator images"),
                **emb, progress="privacy: re-id embedding the generator's training images")
            report.notes.append(f"screen searched the generator's own {len(report.screen_paths)} training images")
        result = reid_check(reid_model, e_syn, e_screen, report.screen_patients, e_val, val_patients, e_test,
                            fmr=options.fmr, seed=options.seed, device=options.device,
                            real_patients=test.frame["patient_id"].tolist())
        report.reid, report.reid_model = result, reid_model
        report.notes.extend(result.notes)
        if not privacy.is_monotone(reid_model):
            report.notes.append("re-id model has positive fc_end weights: an exact copy need not get its highest "
                                "same-patient probability")
        boot = {"n_resamples": options.bootstrap, "seed": options.seed}
        screen_thresholds = privacy.threshold_bootstrap(result.calibration_scores, result.calibration_patients,
                                                        result.fmr, **boot)
        matched, matched_thresholds = None, None
        if run_matched:
            strata_classes = [c for c in synthetic.classes if c in real.classes]
            references = draw_references(
                sources.train_position, sources.patient, train_patients,
                label_strata(label_matrix(synthetic.frame, strata_classes)),
                label_strata(label_matrix(train.frame, strata_classes)), seed=options.seed)
            matched = matched_design(reid_model, e_syn, e_train, train_patients, references, e_val,
                                     val_patients, fmr=options.fmr, seed=options.seed)
            matched_thresholds = privacy.threshold_bootstrap(matched.calibration_scores, matched.calibration_patients,
                                                             matched.fmr, **boot)
            report.matched = matched
            report.notes.extend(matched.notes)
            if matched.n_excluded:
                report.notes.append(f"matched design: {matched.n_excluded} of {len(e_syn)} synthetic images have no "
                                    "source among the train rows and are left out of it (the screen has them)")
        design_name = "screen+matched" if matched is not None else "screen"
        for name, mask in _class_masks(classes, syn_labels):
            real_mask = np.ones(len(test.frame), bool) if name == OVERALL else test_labels[:, classes.index(name)] == 1
            if not mask.any():
                continue
            row = {"class": name, "reid_design": design_name, **summary_row(
                result, mask, real_mask, thresholds=screen_thresholds, synthetic_clusters=sources.cluster,
                synthetic_units="synthetic images by source patient (else source row, else image)", **boot)}
            if matched is not None:
                row.update(matched_summary(matched, mask[matched.frame.index.to_numpy(dtype=np.int64)],
                                           thresholds=matched_thresholds, **boot))
            report.privacy_rows.append(row)
    if aligner is not None:
        syn_images = [square_float(load_image(p)) for p in track(synthetic.image_paths(),
                                                                 "alignment: loading synthetic images", "img")]
        real_images = [square_float(load_image(p)) for p in track(test.image_paths(), "alignment: loading test images",
                                                                  "img")]
        s_own, s_shuf = align.alignment_scores(
            align.embed_images(aligner, syn_images, options.batch_size, progress="alignment: synthetic images"),
            align.embed_texts(aligner, synthetic.frame["prompt"].tolist(), progress="alignment: synthetic prompts"),
            seed=options.seed)
        r_own, r_shuf = align.alignment_scores(
            align.embed_images(aligner, real_images, options.batch_size, progress="alignment: test images"),
            align.embed_texts(aligner, test.frame["prompt"].tolist(), progress="alignment: test prompts"),
            seed=options.seed)
        report.alignment_frame = pd.DataFrame({"source": ["synthetic"] * len(s_own) + ["real"] * len(r_own),
                                               "image_path": [*map(str, synthetic.image_paths()),
                                                              *map(str, test.image_paths())],
                                               "prompt": [*synthetic.frame["prompt"], *test.frame["prompt"]],
                                               "alignment": np.concatenate([s_own, r_own]),
                                               "alignment_shuffled": np.concatenate([s_shuf, r_shuf])})
        for name, mask in _class_masks(classes, syn_labels):
            real_mask = np.ones(len(test.frame), bool) if name == OVERALL else test_labels[:, classes.index(name)] == 1
            if not mask.any():
                continue
            row = {"class": name, **align.aggregate(s_own[mask], s_shuf[mask], n_resamples=options.bootstrap,
                                                    seed=options.seed)}
            row.update(align.aggregate(r_own[real_mask], r_shuf[real_mask], n_resamples=options.bootstrap,
                                       seed=options.seed, prefix="real_alignment"))
            report.alignment_rows.append(row)
    return report


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------


def _grid(report: PrivacyReport, folder: Path, synthetic: SyntheticSet) -> Path:
    from benchmark.fidelity.memorisation import plot_closest_pairs

    assert report.reid is not None
    frame = report.reid.frame
    syn_paths, train_paths = synthetic.image_paths(), report.screen_paths
    order = np.argsort(-frame["reid_score"].to_numpy(), kind="stable")[:GRID_PAIRS]
    pairs = []
    for i in order:
        j = int(frame["reid_nn"].iat[int(i)])
        caption = (f"{syn_paths[i].name}{' ABOVE' if frame['reid_above'].iat[int(i)] else ''}\n"
                   f"same-patient p {frame['reid_score'].iat[int(i)]:.4f} (thr {report.reid.threshold:.4f})\n"
                   f"train: {train_paths[j].name} ({report.screen_patients[j]})")
        pairs.append((square_float(load_image(syn_paths[i])), square_float(load_image(train_paths[j])), caption))
    return plot_closest_pairs(pairs, folder / "reid_closest.png", title="Most re-identifiable synthetic images")


def _matched_frame(matched: MatchedResult, synthetic: SyntheticSet, train: SplitTable) -> pd.DataFrame:
    """Per-image rows of the prompt-matched design for ``matched_scores.csv``."""
    f = matched.frame
    paths, train_paths = synthetic.image_paths(), train.image_paths()
    return pd.DataFrame({
        "synthetic_path": [str(paths[i]) for i in f.index],
        "source_patient": f["source_patient"].to_numpy(), "reference": f["reference"].to_numpy(),
        "matched_paths": ["|".join(str(train_paths[j]) for j in refs) for refs in f["matched_refs"]],
        "matched_score": f["matched_score"].to_numpy(),
        "matched_above": f["matched_score"].to_numpy() > matched.threshold,
        "null_patient": f["null_patient"].to_numpy(), "null_match": f["null_match"].to_numpy(),
        "null_paths": ["|".join(str(train_paths[j]) for j in refs) for refs in f["null_refs"]],
        "null_score": f["null_score"].to_numpy(), "null_above": f["null_score"].to_numpy() > matched.threshold})


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Read the inputs, evaluate, write the run folder and the rows; returns the written results CSVs."""
    check_asked(args)
    for table, wanted in ((PRIVACY_TABLE, args.reid_model or args.reid_train), (ALIGNMENT_TABLE, args.alignment_model)):
        if wanted:
            check_writable(table, args.results_dir)  # before any training or scoring
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    real = read_split_csv(args.real, image_root=args.image_root, classes=classes)
    try:
        synthetic = read_synthetic_set(args.synthetic, classes=None if args.no_per_class else real.classes)
    except DataError as exc:  # a set without label columns (a registered flat folder): overall rows only
        if "unknown class" not in str(exc):
            raise
        print(f"note: {exc}; only overall rows", file=sys.stderr)
        synthetic = read_synthetic_set(args.synthetic, classes=[])
    synthetic.check_labels(real.classes)  # the label columns it has, also when only overall rows are made
    reid_model = (privacy.load_reid_model(args.reid_model, args.reid_arch, args.reid_input_scaling)
                  if args.reid_model else None)
    size_warning = None
    if reid_model is not None:
        image_size, size_source, size_warning = privacy.resolve_image_size(
            reid_model, args.reid_image_size, allow_mismatch=args.reid_allow_size_mismatch,
            checkpoint=args.reid_model)
    elif args.reid_image_size is not None:
        image_size, size_source = args.reid_image_size, "--reid-image-size"
    else:
        image_size, size_source = privacy.DEFAULT_IMAGE_SIZE, f"default {privacy.DEFAULT_IMAGE_SIZE}"
    if args.reid_train:
        size_source += " (trained at it here)"
    train_config = ReidTrainConfig(
        arch=args.reid_arch or "resnet50", n_features=args.reid_features, epochs=args.reid_epochs,
        batch_size=args.reid_batch_size,
        lr=args.reid_lr, seed=args.seed, cpu_threads=args.cpu_threads, device=args.device) if args.reid_train else None
    options = PrivacyOptions(image_size=image_size, allow_size_mismatch=size_warning is not None, design=args.design,
                             fmr=args.fmr, bootstrap=args.bootstrap, seed=args.seed, batch_size=args.batch_size,
                             num_workers=args.num_workers, device=args.device, train=train_config,
                             per_class=not args.no_per_class)
    aligner = (align.load_alignment_model(args.alignment_model, device=args.device,
                                          trust_remote_code=args.trust_remote_code) if args.alignment_model else None)
    training = resolve_generator_training(synthetic.manifest.get("generator_training"),
                                          where=str(synthetic.root / "manifest.json"))
    generator = check_generator_overlap(training, real, allow=args.allow_generator_overlap)
    report = evaluate(real, synthetic, options, reid_model=reid_model, aligner=aligner,
                      generator_references=training_references(training, real))
    model_name = args.model_name or synthetic.model_name
    run_id = new_run_id("privacy")
    folder = run_dir(run_id, args.results_dir)
    written: dict[str, Path] = {}
    base = {"model_name": model_name, "extra_info": args.extra_info or "", "real_csv": real.source,
            "real_dataset": real.dataset, "synthetic_dir": str(synthetic.root), "seed": args.seed,
            "n_resamples": args.bootstrap, "preset": getattr(args, "preset", None) or "", "report_dir": str(folder),
            **generator.columns()}
    config = {"options": asdict(options), "real": str(args.real), "synthetic": str(args.synthetic),
              "reid_model": args.reid_model, "alignment_model": args.alignment_model,
              "preset": getattr(args, "preset", None) or ""}
    if report.reid is not None:
        assert report.reid_model is not None
        reid_name = str(Path(args.reid_model).resolve()) if args.reid_model else \
            f"trained:{report.reid_model.arch}-{image_size}px-seed{args.seed}"
        checkpoint = Path(reid_name)
        if size_warning is not None and report.reid_model.image_size not in (None, image_size):
            reid_name += f"@{image_size}px"  # a run at another size than trained never replaces the correct row
        if args.reid_train:
            checkpoint = privacy.save_reid_model(report.reid_model, folder / "reid_model.pt")
            (folder / "reid_training.json").write_text(json.dumps(
                {"arch": report.reid_model.arch, "image_size": image_size, "history": report.train_history,
                 "config": asdict(train_config)}, indent=2, default=float) + "\n")
        train = real.subset("train")
        per_image = report.reid.frame.copy()
        per_image.insert(0, "synthetic_path", [str(p) for p in synthetic.image_paths()])
        per_image["reid_nn_path"] = [str(report.screen_paths[j]) for j in per_image["reid_nn"]]
        per_image["reid_nn_patient"] = [report.screen_patients[j] for j in per_image["reid_nn"]]
        per_image.to_csv(folder / "reid_scores.csv", index=False)
        if report.matched is not None:
            _matched_frame(report.matched, synthetic, train).to_csv(folder / "matched_scores.csv", index=False)
        _grid(report, folder, synthetic)
        notes = ([f"{size_warning}"] if size_warning else []) + report.notes
        rows = [{**base, "reid_model": reid_name, "reid_checkpoint": str(checkpoint),
                 "reid_arch": report.reid_model.arch, "reid_input_scaling": report.reid_model.input_scaling,
                 "reid_channels": report.reid_model.channels, "reid_image_size": image_size,
                 "reid_image_size_source": size_source, "reid_trained_image_size": report.reid_model.image_size,
                 **row, "notes": "; ".join(notes)} for row in report.privacy_rows]
        written[PRIVACY_TABLE] = write_run_rows(PRIVACY_TABLE, rows, folder, results_dir=args.results_dir,
                                                config=config, run_id=run_id, copy_name="privacy_rows.csv")
        overall = rows[0]
        print(f"{model_name} re-id [{reid_name}, {image_size} px]: val AUROC {_fmt(overall.get('reid_val_auroc'))}; "
              f"screen: mean {_fmt(overall['reid_mean'])}, max {_fmt(overall['reid_max'])}, share above threshold "
              f"{_fmt(overall['reid_share_above'])} (held-out real {_fmt(overall['real_reid_share_above'])})")
        if "matched_reid_share_above" in overall:
            print(f"  prompt-matched: {overall['matched_n_synthetic']} images against their "
                  f"{overall['matched_reference']}: mean {_fmt(overall['matched_reid_mean'])}, "
                  f"max {_fmt(overall['matched_reid_max'])}, "
                  f"{overall['matched_reid_count_above']} above the threshold, share "
                  f"{_fmt(overall['matched_reid_share_above'])} against the null's "
                  f"{_fmt(overall['matched_null_reid_share_above'])} (p = {_fmt(overall['matched_p_value'])})")
        if size_warning:
            print(size_warning, file=sys.stderr)
    if report.alignment_frame is not None:
        report.alignment_frame.to_csv(folder / "alignment_scores.csv", index=False)
        rows = [{**base, "alignment_model": args.alignment_model, **row} for row in report.alignment_rows]
        written[ALIGNMENT_TABLE] = write_run_rows(ALIGNMENT_TABLE, rows, folder, results_dir=args.results_dir,
                                                  config=config, run_id=run_id, copy_name="alignment_rows.csv")
        for row in rows:
            print(f"  alignment {row['class']}: {_fmt(row['alignment_mean'])} (shuffled prompts "
                  f"{_fmt(row['alignment_shuffled_mean'])}; real test {_fmt(row['real_alignment_mean'])})")
    print(f"wrote {', '.join(str(p) for p in written.values())}; per-image scores in {folder}")
    return written


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_stage_args(build_parser(), argv)
    return exit_status(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
