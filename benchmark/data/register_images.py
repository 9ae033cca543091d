"""``python -m benchmark.data.register_images``: an existing folder of images becomes a synthetic set (SPEC §2).

Layouts: a flat folder (labels, prompts and ``source_row`` may come from a CSV), one subfolder per class, or a
flat folder with a labels CSV. Every file is decoded first; all bad files are listed in one report and nothing is
written. Images are copied (or hard-linked) into ``OUT/images/`` keeping their relative paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmark import __version__
from benchmark.core.provenance import environment_lock, git_commit, package_versions, utc_timestamp
from benchmark.data import DataError, atomic_write_text, image_files_under, read_csv_strings, scan_images
from benchmark.data.check_data import format_report
from benchmark.data.generator_training import add_generator_training_arguments, record_from_arguments
from benchmark.data.splits.common import parse_class_list, uncertain_label
from benchmark.data.synthetic import IMAGES_DIR, MANIFEST_JSON, SYNTHETIC_COLUMNS, SYNTHETIC_CSV, read_manifest


def registration_frame(
    folder: str | Path,
    *,
    labels_csv: str | Path | None = None,
    file_col: str = "file",
    classes: Sequence[str] | None = None,
    skip_unreadable: bool = False,
) -> tuple[pd.DataFrame, list[str], str]:
    """Rows of the synthetic set for ``folder`` (``img_savename`` relative to the set, labels 1/0/empty).

    Returns ``(frame, classes, layout)`` where layout is ``labels-csv``, ``class-folders`` or ``flat``.
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
        if file_col not in table.columns:
            raise DataError(f"{labels_csv}: missing column {file_col!r} (the image file, relative to {root})")
        classes = list(classes) if classes else [c for c in table.columns
                                                 if c not in (file_col, "prompt", "source_row", "seed", "class_label")]
        for name in classes:
            if name not in table.columns:
                raise DataError(f"{labels_csv}: unknown class {name!r}: no such column")
        listed = set(table[file_col])
        unlisted = [r for r in relative if r not in listed]
        if unlisted:
            raise DataError(f"{labels_csv}: {len(unlisted)} images in {root} have no row, e.g. {unlisted[0]!r}")
        missing = [f for f in table[file_col] if f not in set(relative)]
        if missing:
            raise DataError(f"{labels_csv}: {len(missing)} rows name files not in {root}, e.g. {missing[0]!r}")
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
) -> pd.DataFrame:
    """Validate every image of ``folder`` and write it as a synthetic set in ``out``; returns the rows.

    Every format the loader decodes is registered; another file stops the run (listed), or with
    ``skip_unreadable`` is left out and listed; an image that does not decode stops it in any case."""
    root, out = Path(folder), Path(out)
    frame, classes, layout = registration_frame(root, labels_csv=labels_csv, file_col=file_col, classes=classes,
                                                skip_unreadable=skip_unreadable)
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
    ordered = [*SYNTHETIC_COLUMNS, "class_label", *classes]
    frame = frame[ordered]
    atomic_write_text(out / SYNTHETIC_CSV, frame.to_csv(index=False))
    manifest = {
        "model": model_name or root.name, "source": str(root.resolve()), "registered": True, "layout": layout,
        "labels_csv": str(labels_csv) if labels_csv else None, "classes": classes, "n_images": len(frame),
        "complete": True, "link": link, "generator_training": generator_training,
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
                                         "hold prompt, source_row, seed, class_label")
    parser.add_argument("--file-col", default="file")
    parser.add_argument("--classes", default=os.environ.get("CLASSES"), help="class names (and order)")
    parser.add_argument("--model-name", default=os.environ.get("MODEL_NAME"))
    parser.add_argument("--link", choices=("copy", "hardlink"), default="copy")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="leave out (and list) files that are not images the loader decodes, instead of stopping")
    add_generator_training_arguments(parser)
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("give --out (or SYNTHETIC_DIR)")
    try:
        record = record_from_arguments(args.generator_training, args.generator_training_ids)
        frame = register_images(args.images, args.out, labels_csv=args.labels, file_col=args.file_col,
                                classes=parse_class_list(args.classes) or None, model_name=args.model_name,
                                link=args.link, command=["register_images.sh", *argv], generator_training=record,
                                skip_unreadable=args.skip_unreadable)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: registered {len(frame)} images from {args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
