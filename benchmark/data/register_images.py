"""``python -m benchmark.data.register_images``: an existing folder of images becomes a synthetic set (SPEC §2).

Layouts: a flat folder (labels, prompts and ``source_row`` may come from a CSV), one subfolder per class, or a
flat folder with a labels CSV. Every file is decoded first; all bad files are listed in one report and nothing is
written. Images are copied (or hard-linked) into ``OUT/images/`` keeping their relative paths.

CheXGenBench's deliverable (``assets/CSV/<file>.csv`` + ``assets/synthetic_images/``) is read as it is: a labels CSV
with a ``chexpert_labels`` column (a dict string, values 1.0 / 0.0 / -1.0 / None) is recognised by that column; the
image is ``synthetic_filename`` or ``img_savename``, the prompt ``prompt`` or ``annotated_prompt``; labels follow
the uncertain and unmentioned policies of ``make_splits chexgenbench``; the source patient comes from ``patientID``
(or the MIMIC folder in ``path``), the source study from ``id`` / ``path``. With ``--split`` each image is matched to
the split row it was made from (by ``path``, else by a prompt that only one split row has), which sets its
``source_row``, ``patient_id`` and ``split``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import __version__
from benchmark.core.cli import describe
from benchmark.core.provenance import environment_lock, git_commit, package_versions, utc_timestamp
from benchmark.data import DataError, atomic_write_text, image_files_under, read_csv_strings, scan_images
from benchmark.data.check_data import format_report
from benchmark.data.generator_training import add_generator_training_arguments, record_from_arguments
from benchmark.data.splits.chexgenbench import (
    CHEXPERT_LABELS,
    UNMENTIONED_POLICIES,
    chexpert_label_matrix,
    patient_ids,
)
from benchmark.data.splits.common import UNCERTAIN_POLICIES, parse_class_list, uncertain_label
from benchmark.data.synthetic import IMAGES_DIR, MANIFEST_JSON, SYNTHETIC_COLUMNS, SYNTHETIC_CSV, read_manifest
from benchmark.data.tables import SplitTable, did_you_mean, read_split_csv

CHEXGENBENCH_FILE_COLUMNS: tuple[str, ...] = ("synthetic_filename", "img_savename")
CHEXGENBENCH_PROMPT_COLUMNS: tuple[str, ...] = ("prompt", "annotated_prompt")
DEFAULT_FILE_COL = "file"


def _check_listing(names: Sequence[str], relative: Sequence[str], labels_csv: str | Path, root: Path) -> None:
    """Every image of the folder has a row and every row names an image of the folder."""
    listed = set(names)
    unlisted = [r for r in relative if r not in listed]
    if unlisted:
        raise DataError(f"{labels_csv}: {len(unlisted)} images in {root} have no row, e.g. {unlisted[0]!r}")
    present = set(relative)
    missing = [f for f in names if f not in present]
    if missing:
        raise DataError(f"{labels_csv}: {len(missing)} rows name files not in {root}, e.g. {missing[0]!r}")


def chexgenbench_frame(table: pd.DataFrame, labels_csv: str | Path, root: Path, relative: Sequence[str], *,
                       file_col: str = DEFAULT_FILE_COL, classes: Sequence[str] | None = None,
                       uncertain: str = "ignore", unmentioned: str = "unknown") -> tuple[pd.DataFrame, list[str]]:
    """Rows of a synthetic set from a CheXGenBench CSV (``chexpert_labels`` dicts) as CheXGenBench writes it.

    ``file_col``: the image column; the default picks ``synthetic_filename`` or ``img_savename``. Classes default to
    the 14 CheXpert labels. Adds ``patient_id`` where the CSV names the source patient, ``source_id`` /
    ``source_path`` where it names the source study; ``source_row`` stays empty (see :func:`match_split`)."""
    if file_col == DEFAULT_FILE_COL and file_col not in table.columns:
        file_col = next((c for c in CHEXGENBENCH_FILE_COLUMNS if c in table.columns), file_col)
    if file_col not in table.columns:
        raise DataError(f"{labels_csv}: no image column: CheXGenBench names it "
                        f"{' or '.join(CHEXGENBENCH_FILE_COLUMNS)} (or give --file-col)")
    prompt_col = next((c for c in CHEXGENBENCH_PROMPT_COLUMNS if c in table.columns), None)
    names = [str(f).strip() for f in table[file_col]]
    _check_listing(names, relative, labels_csv, root)
    classes = list(classes) if classes else list(CHEXPERT_LABELS)
    labels = chexpert_label_matrix(table["chexpert_labels"], classes, uncertain=uncertain, unmentioned=unmentioned,
                                   source=str(labels_csv))
    frame = pd.DataFrame({"img_savename": [f"{IMAGES_DIR}/{f}" for f in names],
                          "prompt": table[prompt_col].to_numpy() if prompt_col else "",
                          "source_row": "", "seed": table["seed"].to_numpy() if "seed" in table.columns else "",
                          "class_label": ""})
    for j, name in enumerate(classes):
        frame[name] = ["" if np.isnan(v) else str(int(v)) for v in labels[:, j]]
    patients = patient_ids(table, str(labels_csv), required=False)
    if patients.notna().any():
        frame["patient_id"] = patients.fillna("").astype(str).to_numpy()
    if "id" in table.columns:
        frame["source_id"] = table["id"].astype(str).to_numpy()
    if "path" in table.columns:
        frame["source_path"] = table["path"].astype(str).to_numpy()
    return frame, classes


def match_split(frame: pd.DataFrame, split: SplitTable) -> dict[str, int]:
    """Point each registered image at the split row it was made from, in place: by ``source_path`` equal to a split
    row's ``image_path``, else by a prompt that exactly one split row has. Sets ``source_row`` (the split CSV's
    0-based row), ``patient_id`` and ``split``; rows without a match keep them empty. An image whose CSV names a
    patient other than its matched row's stops with an error naming the row. Returns the counts per way matched."""
    rows = split.frame.reset_index(drop=True)
    by_path = {str(p).replace("\\", "/"): i for i, p in enumerate(rows["image_path"].astype(str))}
    prompts = rows["prompt"].fillna("").astype(str).str.strip()
    times = prompts.value_counts().to_dict()
    unique_prompt = {p: i for i, p in enumerate(prompts) if p and times[p] == 1}
    counts = {"path": 0, "prompt": 0, "ambiguous prompt": 0, "unmatched": 0}
    matched = np.full(len(frame), -1, dtype=np.int64)
    paths = frame["source_path"].astype(str) if "source_path" in frame else pd.Series([""] * len(frame))
    text = frame["prompt"].fillna("").astype(str).str.strip()
    for k in range(len(frame)):
        if paths.iat[k] in by_path:
            matched[k], way = by_path[paths.iat[k]], "path"
        elif text.iat[k] in unique_prompt:
            matched[k], way = unique_prompt[text.iat[k]], "prompt"
        else:
            way = "ambiguous prompt" if times.get(text.iat[k], 0) > 1 else "unmatched"
        counts[way] += 1
    patients = rows["patient_id"].astype(str).to_numpy()
    claimed = frame["patient_id"].fillna("").astype(str).to_numpy() if "patient_id" in frame else \
        np.full(len(frame), "", dtype=object)
    clash = np.flatnonzero((matched >= 0) & (claimed != "") & (claimed != patients[np.maximum(matched, 0)]))
    if clash.size:
        k = int(clash[0])
        raise DataError(f"row {k + 1}: patient {claimed[k]!r}, but the split row it matches ({matched[k] + 1} of "
                        f"{split.source}) is patient {patients[matched[k]]!r}")
    has = matched >= 0
    frame["source_row"] = np.where(has, matched.astype(str), frame["source_row"].astype(str))
    frame["patient_id"] = np.where(has, patients[np.maximum(matched, 0)], claimed)
    frame["split"] = np.where(has, rows["split"].astype(str).to_numpy()[np.maximum(matched, 0)], "")
    return counts


def registration_frame(
    folder: str | Path,
    *,
    labels_csv: str | Path | None = None,
    file_col: str = DEFAULT_FILE_COL,
    classes: Sequence[str] | None = None,
    skip_unreadable: bool = False,
    uncertain: str = "ignore",
    unmentioned: str = "unknown",
) -> tuple[pd.DataFrame, list[str], str]:
    """Rows of the synthetic set for ``folder`` (``img_savename`` relative to the set, labels 1/0/empty).

    Returns ``(frame, classes, layout)`` where layout is ``chexgenbench-csv`` (a labels CSV with a
    ``chexpert_labels`` column, read by :func:`chexgenbench_frame`), ``labels-csv``, ``class-folders`` or ``flat``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    files = image_files_under(root, skip_unreadable)
    if not files:
        raise DataError(f"{root}: no images (PNG, JPEG, TIFF, BMP, WebP or another format Pillow reads)")
    relative = [f.relative_to(root).as_posix() for f in files]
    if labels_csv is not None:
        table = read_csv_strings(labels_csv, "labels CSV")
        if "chexpert_labels" in table.columns:
            frame, classes = chexgenbench_frame(table, labels_csv, root, relative, file_col=file_col, classes=classes,
                                                uncertain=uncertain, unmentioned=unmentioned)
            return frame, classes, "chexgenbench-csv"
        if file_col not in table.columns:
            raise DataError(f"{labels_csv}: missing column {file_col!r}{did_you_mean(file_col, table.columns)} (the "
                            f"image file, relative to {root}; columns: {', '.join(map(str, table.columns))})")
        classes = list(classes) if classes else [c for c in table.columns
                                                 if c not in (file_col, "prompt", "source_row", "seed", "class_label")]
        for name in classes:
            if name not in table.columns:
                raise DataError(f"{labels_csv}: unknown class {name!r}: no such column")
        _check_listing(list(table[file_col]), relative, labels_csv, root)
        frame = pd.DataFrame({"img_savename": [f"{IMAGES_DIR}/{f}" for f in table[file_col]]})
        for column in ("prompt", "source_row", "seed", "class_label"):
            frame[column] = table[column].to_numpy() if column in table.columns else ""
        for name in classes:
            values = [uncertain_label(v, "ignore", f"{labels_csv}: row {i + 1}, column {name!r}")
                      for i, v in enumerate(table[name])]
            frame[name] = ["" if v != v else str(int(v)) for v in values]
        return frame, list(classes), "labels-csv"

    nested = [r for r in relative if "/" in r]
    if nested and len(nested) != len(relative):
        raise DataError(f"{root}: mixes images at the top level and in subfolders; use one layout")
    frame = pd.DataFrame({"img_savename": [f"{IMAGES_DIR}/{r}" for r in relative], "prompt": "", "source_row": "",
                          "seed": "", "class_label": ""})
    if not nested:
        return frame, [], "flat"
    folder_class = [r.split("/", 1)[0] for r in relative]
    found = sorted(set(folder_class))
    classes = list(classes) if classes else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root}: subfolder {unknown[0]!r} is not one of the classes {list(classes)}")
    frame["class_label"] = [str(classes.index(c)) for c in folder_class]
    for name in classes:
        frame[name] = ["1" if c == name else "0" for c in folder_class]
    return frame, list(classes), "class-folders"


def register_images(
    folder: str | Path,
    out: str | Path,
    *,
    labels_csv: str | Path | None = None,
    file_col: str = "file",
    classes: Sequence[str] | None = None,
    model_name: str | None = None,
    link: str = "copy",
    command: Sequence[str] = (),
    generator_training: dict | str = "unknown",
    skip_unreadable: bool = False,
    uncertain: str = "ignore",
    unmentioned: str = "unknown",
    split: SplitTable | None = None,
) -> pd.DataFrame:
    """Validate every image of ``folder`` and write it as a synthetic set in ``out``; returns the rows.

    Every format the loader decodes is registered; another file stops the run (listed), or with
    ``skip_unreadable`` is left out and listed; an image that does not decode stops it in any case. ``split``:
    match each image to the split row it was made from (:func:`match_split`; the counts go into the manifest)."""
    root, out = Path(folder), Path(out)
    frame, classes, layout = registration_frame(root, labels_csv=labels_csv, file_col=file_col, classes=classes,
                                                skip_unreadable=skip_unreadable, uncertain=uncertain,
                                                unmentioned=unmentioned)
    matched: dict[str, int] | None = None
    if split is not None:
        try:
            matched = match_split(frame, split)
        except DataError as exc:
            raise DataError(f"{labels_csv or root}: {exc}") from None
    sources = [root / name.split("/", 1)[1] for name in frame["img_savename"]]
    problems = scan_images(sources)
    if problems:
        raise DataError(format_report(str(root), len(sources), problems))
    previous = read_manifest(out)
    if previous and previous.get("source") not in (None, str(root.resolve())):
        raise DataError(f"{out} already holds a set registered from {previous.get('source')}; use a new --out")
    for source, name in zip(sources, frame["img_savename"], strict=True):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        if link == "hardlink":
            tmp.unlink(missing_ok=True)
            os.link(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    extra = [c for c in ("patient_id", "split", "source_id", "source_path") if c in frame.columns]
    frame = frame[[*SYNTHETIC_COLUMNS, "class_label", *classes, *extra]]
    atomic_write_text(out / SYNTHETIC_CSV, frame.to_csv(index=False))
    manifest = {
        "model": model_name or root.name, "source": str(root.resolve()), "registered": True, "layout": layout,
        "labels_csv": str(labels_csv) if labels_csv else None, "classes": classes, "n_images": len(frame),
        "complete": True, "link": link, "generator_training": generator_training,
        "label_policy": {"uncertain": uncertain, "unmentioned": unmentioned} if layout == "chexgenbench-csv" else None,
        "prompts_csv": split.source if split is not None else None, "matched_to_split": matched,
        "registered_at": utc_timestamp(), "package_versions": package_versions(),
        "env_lock": environment_lock(), "git_commit": git_commit(), "harness_version": __version__,
        "command": list(command),
    }
    atomic_write_text(out / MANIFEST_JSON, json.dumps(manifest, indent=2) + "\n")
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="register_images.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of images (flat, or one subfolder per class)")
    parser.add_argument("--out", default=os.environ.get("SYNTHETIC_DIR"), help="synthetic set folder to write")
    parser.add_argument("--labels", help="CSV with a file column (relative to --images) and label columns; may also "
                                         "hold prompt, source_row, seed, class_label. A CheXGenBench CSV "
                                         "(chexpert_labels dicts) is read as it is")
    parser.add_argument("--file-col", default=DEFAULT_FILE_COL, help="image column of --labels (default: file; for a "
                        "CheXGenBench CSV synthetic_filename or img_savename)")
    parser.add_argument("--uncertain", choices=UNCERTAIN_POLICIES, default="ignore",
                        help="CheXGenBench CSV: what an uncertain (-1) label becomes (as make_splits chexgenbench)")
    parser.add_argument("--unmentioned", choices=UNMENTIONED_POLICIES, default="unknown",
                        help="CheXGenBench CSV: what a None label becomes (CheXGenBench's own: --uncertain zeros "
                             "--unmentioned negative)")
    parser.add_argument("--split", default=None, help="split CSV the images were made from: each image is matched "
                        "to its row (by path, else by a prompt only one row has)")
    parser.add_argument("--image-root", default=os.environ.get("IMAGE_ROOT"), help="image root of --split")
    parser.add_argument("--classes", default=os.environ.get("CLASSES"), help="class names (and order)")
    parser.add_argument("--model-name", default=os.environ.get("MODEL_NAME"),
                        help="the generator's name, recorded in the manifest (the stages' default model_name)")
    parser.add_argument("--link", choices=("copy", "hardlink"), default="copy",
                        help="copy the images into the set, or hard-link them (same disk, no extra space)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="leave out (and list) files that are not images the loader decodes, instead of stopping")
    add_generator_training_arguments(parser)
    args = describe(parser).parse_args(argv)
    if not args.out:
        parser.error("give --out (or SYNTHETIC_DIR)")
    try:
        record = record_from_arguments(args.generator_training, args.generator_training_ids)
        split = read_split_csv(args.split, image_root=args.image_root) if args.split else None
        frame = register_images(args.images, args.out, labels_csv=args.labels, file_col=args.file_col,
                                classes=parse_class_list(args.classes) or None, model_name=args.model_name,
                                link=args.link, command=["register_images.sh", *argv], generator_training=record,
                                skip_unreadable=args.skip_unreadable, uncertain=args.uncertain,
                                unmentioned=args.unmentioned, split=split)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: registered {len(frame)} images from {args.images}")
    matched = read_manifest(args.out).get("matched_to_split")
    if matched:
        print(f"matched to {args.split}: " + ", ".join(f"{n} by {way}" if way in ("path", "prompt") else f"{n} {way}"
                                                      for way, n in matched.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
