"""Synthetic sets (SPEC §2): a folder with ``images/``, ``synthetic.csv`` and ``manifest.json``.

``synthetic.csv`` has one row per image: ``prompt``, ``img_savename`` (relative to the folder), ``source_row``
(row of the prompts CSV it was made from; empty for registered folders), ``seed``, and the label /
``class_label`` columns copied from that row. The manifest records how the set was made. Generation
(:mod:`benchmark.generation.generate`) and registration (:mod:`benchmark.data.register_images`) write this
layout; every metric stage reads it through :func:`read_synthetic_set`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data import DataError, check_label_columns, label_matrix, read_csv_strings, read_json_object
from benchmark.data.tables import did_you_mean

SYNTHETIC_COLUMNS: tuple[str, ...] = ("prompt", "img_savename", "source_row", "seed")
SYNTHETIC_CSV = "synthetic.csv"
MANIFEST_JSON = "manifest.json"
IMAGES_DIR = "images"


@dataclass
class SyntheticSet:
    """A read synthetic set: the rows (all values as strings), its classes and its manifest."""

    root: Path
    frame: pd.DataFrame
    classes: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)

    def image_paths(self) -> list[Path]:
        """Absolute paths of the images, in row order."""
        return [self.root / name for name in self.frame["img_savename"]]

    def labels(self) -> np.ndarray:
        """Label matrix, float32 ``(n_images, n_classes)``: 1.0, 0.0 or NaN where unknown; a label that is not
        1 / 0 / empty stops with an error naming ``synthetic.csv``, the row and the column."""
        return label_matrix(self.frame, self.classes, str(self.root / SYNTHETIC_CSV))

    def for_classes(self, classes: Sequence[str]) -> SyntheticSet:
        """The same set read with ``classes`` (e.g. the real split's), its label columns checked now."""
        check_label_columns(self.frame, classes, str(self.root / SYNTHETIC_CSV))
        return SyntheticSet(self.root, self.frame, list(classes), self.manifest)

    def check_labels(self, classes: Sequence[str]) -> None:
        """Check every label column of ``classes`` the set has (1 / 0 / empty), also where a stage uses none of them
        (overall rows): garbage in a label column stops the run, naming ``synthetic.csv``, the row and the column.
        Classes without a column are skipped (a plain folder of images has none)."""
        check_label_columns(self.frame, [c for c in classes if c in self.frame.columns], str(self.root / SYNTHETIC_CSV))

    @property
    def model_name(self) -> str:
        """The model that made the set, from the manifest (``unknown`` when it does not say)."""
        return str(self.manifest.get("model") or self.manifest.get("source") or "unknown")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The set's ``manifest.json`` as a dict (empty when the file is absent); errors name the file."""
    return read_json_object(Path(folder) / MANIFEST_JSON, "manifest")


def read_synthetic_set(folder: str | Path, classes: Sequence[str] | None = None) -> SyntheticSet:
    """Read and check a synthetic set folder.

    ``classes`` default to the manifest's ``classes``. Stops with a :class:`DataError` naming the file, row and
    column for a missing ``synthetic.csv`` or column, an image listed twice, an image path leaving the folder, a
    class without a column, or a label that is not 1 / 0 / empty. Images themselves are checked by
    :func:`benchmark.data.scan_images`.
    """
    root = Path(folder)
    csv_path = root / SYNTHETIC_CSV
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: not found; is {root} a synthetic set (images/, synthetic.csv, manifest.json)?")
    frame = read_csv_strings(csv_path, "synthetic.csv")
    if len(frame) == 0:
        raise DataError(f"{csv_path}: the set has no images")
    missing = [c for c in SYNTHETIC_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{csv_path}: missing column {missing[0]!r}{did_you_mean(missing[0], frame.columns)} "
                        f"(required: {', '.join(SYNTHETIC_COLUMNS)})")
    manifest = read_manifest(root)
    classes = list(classes) if classes is not None else list(manifest.get("classes") or [])
    for name in classes:
        if name not in frame.columns:
            raise DataError(f"{csv_path}: unknown class {name!r}: no such label column"
                            f"{did_you_mean(name, [c for c in frame.columns if c not in SYNTHETIC_COLUMNS])}")
    check_label_columns(frame, classes, str(csv_path))
    names = frame["img_savename"]
    duplicated = np.flatnonzero(names.duplicated().to_numpy())
    if duplicated.size:
        i = int(duplicated[0])
        raise DataError(f"{csv_path}: row {i + 1}: image {names.iat[i]!r} is listed twice")
    for i, name in enumerate(names):
        relative = Path(name)
        if not name or relative.is_absolute() or ".." in relative.parts:
            raise DataError(f"{csv_path}: row {i + 1}: img_savename {name!r} must be a path inside the folder")
    return SyntheticSet(root, frame, classes, manifest)


def write_synthetic_set(folder: str | Path, images: np.ndarray, rows: pd.DataFrame,
                        manifest: dict[str, Any]) -> SyntheticSet:
    """Write uint8 greyscale ``images`` ``(N, H, W)`` as a synthetic set with one ``rows`` row per image.

    ``rows`` holds ``prompt``, ``source_row``, ``seed`` and label columns; ``img_savename`` is assigned here
    (``images/<i>.png``). Files are written atomically; ``manifest`` should name the model and its classes.
    """
    from PIL import Image

    from benchmark.data import atomic_write_text

    root = Path(folder)
    (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    if len(images) != len(rows):
        raise ValueError(f"{len(images)} images but {len(rows)} rows")
    frame = rows.reset_index(drop=True).copy()
    frame.insert(1, "img_savename", [f"{IMAGES_DIR}/{i:07d}.png" for i in range(len(frame))])
    for image, name in zip(images, frame["img_savename"], strict=True):
        target = root / name
        tmp = target.with_name(f".{target.name}.tmp")
        Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(tmp, format="PNG")
        tmp.replace(target)
    ordered = [*SYNTHETIC_COLUMNS, *[c for c in frame.columns if c not in SYNTHETIC_COLUMNS]]
    atomic_write_text(root / SYNTHETIC_CSV, frame[ordered].astype(str).to_csv(index=False))
    atomic_write_text(root / MANIFEST_JSON, json.dumps({**manifest, "n_images": len(frame), "complete": True},
                                                       indent=2, default=str) + "\n")
    return read_synthetic_set(root)
