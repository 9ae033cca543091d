"""PadChest split builder: from PadChest's metadata CSV to a patient-level split of chosen findings.

Classes match PadChest's own label strings exactly (after trimming the stray spaces the metadata has):
``soft tissue mass`` and ``pulmonary mass`` are different findings, and nothing is ever substring-matched.
``normal`` is positive only when an image's labels are exactly ``['normal']``.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data import DataError
from benchmark.data.splits.common import (
    DEFAULT_FRACTIONS,
    DEFAULT_PROMPT_TEMPLATE,
    labelled_frame,
    template_prompts,
)

METADATA_FILENAME = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
FRONTAL_PROJECTIONS: tuple[str, ...] = ("PA", "AP", "AP_horizontal")
NORMAL = "normal"
_COLUMNS = ("ImageID", "ImageDir", "PatientID", "Projection", "Labels", "PatientBirth", "StudyDate_DICOM",
            "PatientSex_DICOM", "MethodLabel")


def default_metadata_path() -> Path:
    """The PadChest metadata CSV that ships inside the torchxrayvision package."""
    import importlib.util

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("torchxrayvision is not installed; pass --metadata with PadChest's CSV")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / METADATA_FILENAME


def read_metadata(path: str | Path | None = None) -> pd.DataFrame:
    """Read PadChest's metadata (only the columns the builder needs); errors name the file and column."""
    path = Path(path) if path else default_metadata_path()
    if not path.is_file():
        raise DataError(f"{path}: PadChest metadata not found")
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc
    missing = [c for c in _COLUMNS[:5] if c not in header]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} (PadChest metadata needs {', '.join(_COLUMNS[:5])})")
    usecols = [c for c in _COLUMNS if c in header]
    return pd.read_csv(path, usecols=usecols, dtype={"ImageID": str, "PatientID": str, "Labels": str},
                       low_memory=False)


def parse_labels(text: Any) -> list[str]:
    """PadChest's ``Labels`` cell (a Python list as text) -> trimmed, de-duplicated label strings."""
    if not isinstance(text, str) or not text.strip():
        return []
    try:
        items = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    if not isinstance(items, list | tuple):
        return []
    labels: list[str] = []
    for item in items:
        label = str(item).strip()
        if label and label not in labels:
            labels.append(label)
    return labels


#: PadChest's MethodLabel values -> the split's ``label_source``
LABEL_SOURCES: dict[str, str] = {"Physician": "physician", "RNN_model": "labeller"}


@dataclass
class PadChestSplit:
    """The built frame and the counts of rows each filter removed (for the printed summary)."""

    frame: pd.DataFrame
    classes: list[str]
    dropped: dict[str, int] = field(default_factory=dict)


def build_padchest_split(
    metadata: pd.DataFrame,
    classes: Sequence[str],
    *,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    views: Sequence[str] = FRONTAL_PROJECTIONS,
    min_age: float | None = None,
    keep_other: bool = False,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    flat: bool = False,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    class_label_rule: str = "first",
) -> PadChestSplit:
    """Build a patient-level split of PadChest images for ``classes``.

    An image is positive for a class when one of its labels equals the class name or one of its
    ``synonyms`` exactly; ``normal`` needs the labels to be exactly ``['normal']``. Rows with no labels are
    dropped; rows with none of the classes are dropped unless ``keep_other`` (then all their labels are 0).
    ``image_path`` is ``ImageDir/ImageID`` (PadChest's zip folders) or ``ImageID`` when ``flat``.
    """
    classes = list(classes)
    if not classes:
        raise DataError("no classes given (e.g. --classes 'soft tissue mass,cardiomegaly,normal')")
    synonyms = {k: [s.strip() for s in v] for k, v in (synonyms or {}).items()}
    for name in synonyms:
        if name not in classes:
            raise DataError(f"synonyms given for {name!r}, which is not one of the classes {classes}")
    dropped: dict[str, int] = {}
    frame = metadata.reset_index(drop=True)
    label_lists = frame["Labels"].map(parse_labels)

    vocabulary = sorted({label for labels in label_lists for label in labels})
    known = set(vocabulary)
    for name in classes:
        wanted = [name, *synonyms.get(name, [])]
        if not any(w in known for w in wanted):
            close = difflib.get_close_matches(name, vocabulary, n=5, cutoff=0.6)
            hint = f"; close PadChest labels: {', '.join(repr(c) for c in close)}" if close else ""
            raise DataError(f"unknown class {name!r}: no PadChest image has this label{hint}")

    keep = label_lists.map(bool).to_numpy().copy()
    dropped["no labels"] = int((~keep).sum())
    if views:
        in_view = frame["Projection"].isin(list(views)).to_numpy()
        dropped["projection not in " + ",".join(views)] = int((keep & ~in_view).sum())
        keep &= in_view
    ages = _ages(frame)
    if min_age is not None:
        old_enough = (ages >= float(min_age)).to_numpy()
        dropped[f"age unknown or < {min_age:g}"] = int((keep & ~old_enough).sum())
        keep &= old_enough

    labels = np.zeros((len(frame), len(classes)), dtype=np.float32)
    for j, name in enumerate(classes):
        if name == NORMAL:
            labels[:, j] = label_lists.map(lambda ls: ls == [NORMAL]).to_numpy()
        else:
            wanted = {name, *synonyms.get(name, [])}
            labels[:, j] = label_lists.map(lambda ls, w=wanted: any(label in w for label in ls)).to_numpy()
    if not keep_other:
        has_class = labels.max(axis=1) > 0
        dropped["none of the classes"] = int((keep & ~has_class).sum())
        keep &= has_class

    frame, labels, ages = frame[keep].reset_index(drop=True), labels[keep], ages[keep].reset_index(drop=True)
    if len(frame) == 0:
        raise DataError(f"no PadChest image is left after the filters ({dropped})")
    image_dir = frame["ImageDir"].astype(str).str.replace(r"\.0$", "", regex=True)
    image_path = frame["ImageID"] if flat else image_dir + "/" + frame["ImageID"]
    views_col = frame["Projection"].astype(str)
    base = {
        "image_path": image_path,
        "patient_id": frame["PatientID"].astype(str),
        "prompt": template_prompts(labels, classes, views_col.tolist(), prompt_template, "other findings"),
        "view": views_col,
        "sex": frame.get("PatientSex_DICOM", pd.Series([""] * len(frame))).fillna("").astype(str),
        "age": ages.map(lambda a: "" if pd.isna(a) else str(int(a))),
        "source": "padchest",
        # PadChest's MethodLabel: 27% of the labels were read by a physician, the rest by a report labeller
        "label_source": frame.get("MethodLabel", pd.Series([""] * len(frame))).fillna("").astype(str)
        .map(lambda m: LABEL_SOURCES.get(m, m.lower())),
    }
    out = labelled_frame(base, labels, classes, fractions, seed, class_label_rule)
    return PadChestSplit(out, classes, dropped)


def _ages(frame: pd.DataFrame) -> pd.Series:
    """Age in whole years at the study: study year minus birth year (NaN where either is missing)."""
    if "PatientBirth" not in frame or "StudyDate_DICOM" not in frame:
        return pd.Series(np.nan, index=frame.index)
    study_year = pd.to_numeric(frame["StudyDate_DICOM"].astype(str).str[:4], errors="coerce")
    birth_year = pd.to_numeric(frame["PatientBirth"], errors="coerce")
    return study_year - birth_year
