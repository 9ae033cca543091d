"""``python -m benchmark.data.make_splits {padchest,chexgenbench,csv,folder,demo}``: build a split CSV (SPEC §1, §3).

Each sub-command calls a builder in :mod:`benchmark.data.splits` (pure: table in, split frame out), writes the CSV and
its ``<csv>.json`` sidecar through :func:`benchmark.data.write_split_csv`, and prints counts per split and class.
``CLASSES``, ``SEED`` and ``IMAGE_ROOT`` in the environment are defaults; flags win.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.core.cli import describe
from benchmark.data import DataError, read_csv_strings, read_split_csv, split_summary, write_split_csv
from benchmark.data.leakage import check_dataset_name
from benchmark.data.splits.chexgenbench import UNMENTIONED_POLICIES, build_chexgenbench_split
from benchmark.data.splits.common import (
    CLASS_LABEL_RULES,
    DEFAULT_PROMPT_TEMPLATE,
    UNCERTAIN_POLICIES,
    check_fractions,
    parse_class_list,
)
from benchmark.data.splits.generic import build_csv_split, build_folder_split, missing_images, select_rows
from benchmark.data.splits.padchest import FRONTAL_PROJECTIONS, build_padchest_split, read_metadata

DEFAULT_PADCHEST_CLASSES = "soft tissue mass,cardiomegaly,normal"


def parse_synonyms(items: Sequence[str] | None) -> dict[str, list[str]]:
    """``["soft tissue mass=mass|soft tissue nodule"]`` -> ``{"soft tissue mass": ["mass", ...]}``."""
    synonyms: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, alternatives = item.partition("=")
        if not sep or not name.strip() or not alternatives.strip():
            raise DataError(f"--synonym {item!r}: expected 'class=label one|label two'")
        synonyms.setdefault(name.strip(), []).extend(a.strip() for a in alternatives.split("|") if a.strip())
    return synonyms


def _common_options(parser: argparse.ArgumentParser, out_required: bool = True) -> None:
    parser.add_argument("--out", required=out_required, help="split CSV to write (its sidecar goes to OUT.json)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "0")))
    parser.add_argument("--fractions", default="0.7,0.1,0.2", help="train,val,test shares of the images")
    parser.add_argument("--image-root", default=os.environ.get("IMAGE_ROOT"),
                        help="folder the image paths are relative to; recorded in the sidecar")
    parser.add_argument("--class-label-rule", choices=CLASS_LABEL_RULES, default="first",
                        help="class_label for class-conditional models: first positive class in the given order, "
                             "or only when exactly one class is positive")


HELP = {  # the flags whose text is not written where they are added
    "--seed": "seed of the patient-level split",
    "--csv": "the labelled CSV (chexgenbench: CheXGenBench's prompts CSV with path, chexpert_labels, prompts)",
    "--image-col": "column of the image paths",
    "--patient-col": "column of the patient ids (splits are by patient)",
    "--prompt-col": "column of the prompts (default: made from the labels with --prompt-template)",
    "--view-col": "column of the view (PA, AP, ...)",
    "--uncertain": "uncertain labels (-1): ignore (unknown), zeros or ones",
    "--filter-value": "the value --filter-col must equal",
    "--out-dir": "folder for the phantom images and their split",
    "--n-patients": "phantom patients",
    "--images-per-patient": "images per phantom patient",
    "--size": "image side in px",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make_splits.sh", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="source", required=True)

    padchest = sub.add_parser("padchest", help="PadChest from its metadata CSV")
    _common_options(padchest)
    padchest.add_argument("--metadata", help="PadChest metadata CSV (default: the copy inside torchxrayvision)")
    padchest.add_argument("--classes", default=os.environ.get("CLASSES", DEFAULT_PADCHEST_CLASSES),
                          help="PadChest label strings, exactly as PadChest writes them")
    padchest.add_argument("--synonym", action="append", metavar="CLASS=LABEL|LABEL",
                          help="extra PadChest labels that count as CLASS (repeatable)")
    padchest.add_argument("--views", default=",".join(FRONTAL_PROJECTIONS), help="projections to keep")
    padchest.add_argument("--min-age", type=float, help="drop images of younger patients (and of unknown age)")
    padchest.add_argument("--keep-other", action="store_true",
                          help="keep images with none of the classes (all labels 0) instead of dropping them")
    padchest.add_argument("--flat", action="store_true", help="images in one folder: image_path = ImageID")
    padchest.add_argument("--prompt-template", default=DEFAULT_PROMPT_TEMPLATE)

    chexgenbench = sub.add_parser("chexgenbench", help="MIMIC-CXR from a CheXGenBench / LLaVA-Rad prompts CSV")
    _common_options(chexgenbench)
    chexgenbench.add_argument("--csv", required=True)
    chexgenbench.add_argument("--classes", default=os.environ.get("CLASSES"),
                              help="CheXpert labels to keep (default: all 14)")
    chexgenbench.add_argument("--uncertain", choices=UNCERTAIN_POLICIES, default="ignore",
                              help="what an uncertain (-1) label becomes: unknown, 0 or 1")
    chexgenbench.add_argument("--unmentioned", choices=UNMENTIONED_POLICIES, default="unknown",
                              help="what a label the report does not mention (None) becomes: unknown (default, left "
                                   "out of losses and figures) or negative (CheXGenBench's downstream script: "
                                   "with --uncertain zeros)")

    csv = sub.add_parser("csv", help="any labelled CSV, with a column mapping")
    _common_options(csv)
    csv.add_argument("--csv", required=True)
    csv.add_argument("--image-col", required=True)
    csv.add_argument("--patient-col", required=True)
    csv.add_argument("--label-cols", required=True, help="'col,col=class name,...' (renaming with =)")
    csv.add_argument("--prompt-col")
    csv.add_argument("--split-col", help="keep this column's train/val/test instead of assigning splits")
    csv.add_argument("--view-col")
    csv.add_argument("--dataset", required=True,
                     help="source dataset (e.g. nih, padchest, mimic-cxr, chexpert): the leakage guard checks it")
    csv.add_argument("--uncertain", choices=UNCERTAIN_POLICIES, default="ignore")
    csv.add_argument("--missing-patient", choices=("error", "image"), default="error",
                     help="a row with no patient id: stop (default), or make the image its own patient")
    csv.add_argument("--prompt-template", default=DEFAULT_PROMPT_TEMPLATE)
    csv.add_argument("--where", help="keep the rows this pandas query keeps, e.g. \"source == 'nih_cxr14' and "
                                     "age >= 18\" (numeric columns compare as numbers; `a name` with spaces)")
    csv.add_argument("--filter-col", help="keep the rows whose FILTER_COL equals --filter-value")
    csv.add_argument("--filter-value")
    csv.add_argument("--no-image-check", action="store_true",
                     help="do not check that every image file exists (relative paths: under --image-root, "
                          "else the CSV's folder)")

    folder = sub.add_parser("folder", help="a folder with one subfolder per class")
    _common_options(folder)
    folder.add_argument("--images", required=True, help="FOLDER/<class>/<image>")
    folder.add_argument("--patient-regex", help="regex on the file name; group 1 is the patient id")
    folder.add_argument("--dataset", required=True, help="source dataset name, for the leakage guard")
    for builder in (csv, folder):
        builder.add_argument("--allow-unknown-dataset", action="store_true",
                             help="keep a --dataset name the leakage guard does not know (stages then refuse to "
                                  "score it unless --allow-leakage, which every row records)")
    folder.add_argument("--prompt-template", default=DEFAULT_PROMPT_TEMPLATE)

    demo = sub.add_parser("demo", help="the built-in phantom data set: images + DIR/split.csv")
    demo.add_argument("--out-dir", required=True)
    demo.add_argument("--n-patients", type=int, default=300)
    demo.add_argument("--images-per-patient", type=int, default=2)
    demo.add_argument("--size", type=int, default=64)
    demo.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "0")))
    demo.add_argument("--patient-offset", type=int, default=0,
                      help="first patient number; populations with disjoint ranges share no patient")
    demo.add_argument("--fractions", default="0.7,0.1,0.2")
    return describe(parser, HELP)


#: the sidecar's ``case_mix`` for a PadChest split built without --keep-other
CASE_MIX_ENRICHED = ("enriched: only images with at least one of the classes (built without --keep-other), so each "
                     "class's negatives are images positive for another class")


def run(args: argparse.Namespace, argv: Sequence[str]) -> Path:
    """Build and write the split the arguments describe; returns the CSV path."""
    fractions = check_fractions([float(x) for x in args.fractions.split(",")])
    meta: dict[str, Any] = {"builder": args.source, "seed": args.seed, "fractions": list(fractions),
                            "harness_version": __version__, "command": ["make_splits.sh", *argv]}
    if args.source == "demo":
        from benchmark.demo.phantoms import write_demo_dataset

        write_demo_dataset(args.out_dir, n_patients=args.n_patients, images_per_patient=args.images_per_patient,
                           size=args.size, seed=args.seed, split_fractions=fractions,
                           patient_offset=args.patient_offset)
        return Path(args.out_dir) / "split.csv"

    common = {"seed": args.seed, "fractions": fractions, "class_label_rule": args.class_label_rule}
    if args.source == "padchest":
        classes = parse_class_list(args.classes)
        metadata = read_metadata(args.metadata)
        built = build_padchest_split(
            metadata, classes, synonyms=parse_synonyms(args.synonym), views=parse_class_list(args.views),
            min_age=args.min_age, keep_other=args.keep_other, flat=args.flat,
            prompt_template=args.prompt_template, **common,
        )
        frame, dataset = built.frame, "padchest"
        meta["dropped"] = built.dropped
        meta["case_mix"] = "all images of the views" if args.keep_other else CASE_MIX_ENRICHED
        for reason, count in built.dropped.items():
            print(f"dropped {count:>7} rows: {reason}")
    elif args.source == "chexgenbench":
        classes = parse_class_list(args.classes) or None
        frame = build_chexgenbench_split(read_csv_strings(args.csv), classes, uncertain=args.uncertain,
                                         unmentioned=args.unmentioned, source=args.csv, **common)
        classes, dataset = [c for c in frame.columns if c not in _BASE_COLUMNS], "mimic-cxr"
        meta["uncertain"], meta["unmentioned"] = args.uncertain, args.unmentioned
    elif args.source == "csv":
        table = read_csv_strings(args.csv)
        if args.where or args.filter_col is not None or args.filter_value is not None:
            kept = select_rows(table, where=args.where, column=args.filter_col, value=args.filter_value,
                               source=args.csv)
            print(f"kept {len(kept)} of {len(table)} rows of {args.csv}"
                  + "".join(f" {x}" for x in (args.where and f"where {args.where}",
                                               args.filter_col and f"with {args.filter_col} == {args.filter_value!r}")
                            if x))
            meta["selected"] = {"where": args.where, "filter_col": args.filter_col, "filter_value": args.filter_value,
                                "rows_kept": len(kept), "rows_in_csv": len(table)}
            table = kept
        frame = build_csv_split(
            table, image_col=args.image_col, patient_col=args.patient_col,
            label_cols=args.label_cols, prompt_col=args.prompt_col, split_col=args.split_col,
            view_col=args.view_col, uncertain=args.uncertain, missing_patient=args.missing_patient,
            prompt_template=args.prompt_template,
            source=args.csv, **common,
        )
        classes, dataset = [c for c in frame.columns if c not in _BASE_COLUMNS], _dataset(args)
        meta["uncertain"] = args.uncertain
        tried = (f"--image-root {args.image_root}" if args.image_root
                 else f"the CSV's folder {Path(args.csv).resolve().parent} (no --image-root given)")
        args.image_root = args.image_root or str(Path(args.csv).resolve().parent)
        if not args.no_image_check:
            missing = missing_images(frame["image_path"].tolist(), args.image_root)
            if missing:
                raise DataError(f"{args.csv}: {len(missing)} of {len(frame)} images not found, relative paths "
                                f"looked up under {tried}: {', '.join(missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''}; give --image-root (the folder the "
                                f"{args.image_col!r} paths are relative to), or --no-image-check to write the "
                                "split anyway")
    else:
        frame = build_folder_split(args.images, patient_regex=args.patient_regex, seed=args.seed,
                                   fractions=fractions, prompt_template=args.prompt_template)
        classes, dataset = [c for c in frame.columns if c not in _BASE_COLUMNS], _dataset(args)
        args.image_root = args.image_root or str(Path(args.images).resolve())
    if args.image_root:
        meta["image_root"] = str(Path(args.image_root).resolve())
    return write_split_csv(frame, args.out, classes, dataset, meta)


def _dataset(args: argparse.Namespace) -> str:
    """``--dataset`` in the guard's canonical spelling; an unknown name stops unless --allow-unknown-dataset."""
    if args.allow_unknown_dataset:
        return args.dataset.strip()
    try:
        return check_dataset_name(args.dataset, "--dataset")
    except ValueError as exc:
        raise DataError(str(exc)) from exc


_BASE_COLUMNS = {"image_path", "patient_id", "split", "prompt", "class_label", "view", "sex", "age", "source",
                 "dataset", "label_source"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        csv_path = run(args, argv)
        table = read_split_csv(csv_path)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {csv_path} ({len(table.frame)} images, dataset {table.dataset!r}); positives/known per class:")
    print(split_summary(table.frame, table.classes).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
