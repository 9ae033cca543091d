"""Split CSVs (SPEC §1): read, validate, write, summarise; the label columns' strict 1 / 0 / empty rule.

A split CSV has one row per real image: ``image_path``, ``patient_id``, ``split``, ``prompt``,
``class_label``, one column per class holding 1, 0 or empty (unknown), and optional ``view``, ``sex``,
``age``, ``source``, ``dataset``. Its class list and source dataset may also be recorded in a sidecar
``<csv>.json``. Every problem is reported as a :class:`DataError` naming the file, row, column and value.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.errors import DataError

REQUIRED_COLUMNS: tuple[str, ...] = ("image_path", "patient_id", "split", "prompt", "class_label")
OPTIONAL_COLUMNS: tuple[str, ...] = ("view", "sex", "age", "source", "dataset", "label_source")
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_POSITIVE = {"1", "1.0"}
_NEGATIVE = {"0", "0.0"}


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` names (case-insensitive), else ``""``."""
    lowered = {k.lower(): k for k in map(str, known)}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(lowered[c]) for c in close)}?" if close else ""




def _row_ref(index: int) -> str:
    """Human reference for data row ``index`` (0-based): 1-based row and the line in the file."""
    return f"row {index + 1} (line {index + 2})"


# ----------------------------------------------------------------------------------------------------
# Split CSVs
# ----------------------------------------------------------------------------------------------------


@dataclass
class SplitTable:
    """A validated split: the frame (all values as strings), its classes, dataset and image root."""

    frame: pd.DataFrame
    classes: list[str]
    dataset: str
    source: str
    image_root: Path
    meta: dict[str, Any] = field(default_factory=dict)

    def subset(self, split: str | Sequence[str]) -> SplitTable:
        """Rows of one split (or several), as a new table with the same classes and root."""
        wanted = [split] if isinstance(split, str) else list(split)
        unknown = [s for s in wanted if s not in SPLIT_NAMES]
        if unknown:
            raise DataError(f"{self.source}: unknown split {unknown[0]!r}; use one of {', '.join(SPLIT_NAMES)}")
        frame = self.frame[self.frame["split"].isin(wanted)].reset_index(drop=True)
        return SplitTable(frame, list(self.classes), self.dataset, self.source, self.image_root, dict(self.meta))

    def image_paths(self) -> list[Path]:
        """Absolute image paths: ``image_path`` as is when absolute, else under ``image_root``."""
        return [resolve_image_path(p, self.image_root) for p in self.frame["image_path"]]

    def labels(self) -> np.ndarray:
        """Label matrix, float32 ``(n_images, n_classes)``: 1.0, 0.0, or NaN where unknown."""
        return label_matrix(self.frame, self.classes, self.source)


def resolve_image_path(image_path: str | Path, image_root: str | Path) -> Path:
    """``image_path`` if absolute, else joined to ``image_root``."""
    path = Path(image_path)
    return path if path.is_absolute() else Path(image_root) / path


def check_label_columns(frame: pd.DataFrame, classes: Sequence[str], source: str) -> None:
    """Every class has a column holding only 1, 0 or empty (``1.0`` / ``0.0`` too); else a :class:`DataError` naming
    ``source``, the row (and line) and the column. The one rule for split CSVs and synthetic sets alike: "yes",
    "-1", "2" are errors, never silently "unknown"."""
    allowed = _POSITIVE | _NEGATIVE | {""}
    for name in classes:
        if name not in frame.columns:
            raise DataError(f"{source}: no label column {name!r} (columns: {', '.join(map(str, frame.columns))})")
        values = frame[name].fillna("").astype(str).str.strip()
        bad = np.flatnonzero(~values.isin(allowed).to_numpy())
        if bad.size:
            i = int(bad[0])
            raise DataError(f"{source}: {_row_ref(i)}: label column {name!r} has value {values.iat[i]!r}; "
                            f"expected 1, 0 or empty (unknown) ({bad.size} such row(s))")


def label_matrix(frame: pd.DataFrame, classes: Sequence[str], source: str = "<labels>") -> np.ndarray:
    """Float32 array ``(len(frame), len(classes))`` of 1.0 / 0.0 / NaN (unknown) from label columns, after
    :func:`check_label_columns` (errors name ``source``)."""
    check_label_columns(frame, classes, source)
    out = np.full((len(frame), len(classes)), np.nan, dtype=np.float32)
    for j, name in enumerate(classes):
        values = frame[name].fillna("").astype(str).str.strip()
        out[values.isin(_POSITIVE).to_numpy(), j] = 1.0
        out[values.isin(_NEGATIVE).to_numpy(), j] = 0.0
    return out


def sidecar_path(csv_path: str | Path) -> Path:
    """The ``<csv>.json`` file that records a split's dataset, classes and how it was built."""
    return Path(str(csv_path) + ".json")


def infer_classes(frame: pd.DataFrame) -> list[str]:
    """Label columns of a split frame: every column that is not a SPEC §1 standard column."""
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    return [c for c in frame.columns if c not in known]


def validate_split_frame(
    frame: pd.DataFrame, classes: Sequence[str] | None = None, source: str = "<split table>"
) -> list[str]:
    """Check a split frame against SPEC §1 and return its class list.

    Raises :class:`DataError` naming ``source``, the row, the column and the value for: no rows, a missing
    column, an empty image path or patient, a bad ``split``, a non-integer ``class_label``, a label that is not
    1/0/empty, an image listed twice, a patient in two splits, or a requested class that is not a column.
    """
    if len(frame.columns) == 0 or len(frame) == 0:
        raise DataError(f"{source}: the CSV has no rows (expected a header and one row per image)")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column {missing[0]!r}{did_you_mean(missing[0], frame.columns)} (required: "
            f"{', '.join(REQUIRED_COLUMNS)}; "
            f"found: {', '.join(map(str, frame.columns))})"
        )
    if classes is None:
        classes = infer_classes(frame)
    classes = list(classes)
    unknown = [c for c in classes if c not in frame.columns]
    if unknown:
        raise DataError(
            f"{source}: unknown class {unknown[0]!r}: no such label column"
            f"{did_you_mean(unknown[0], infer_classes(frame))} "
            f"(label columns: {', '.join(infer_classes(frame)) or 'none'})"
        )
    if not classes:
        raise DataError(f"{source}: no label columns (add one column per class holding 1, 0 or empty)")

    text = frame.fillna("").astype(str)
    for column in ("image_path", "patient_id"):
        empty = np.flatnonzero(text[column].str.strip().to_numpy() == "")
        if empty.size:
            raise DataError(f"{source}: {_row_ref(int(empty[0]))}: column {column!r} is empty")
    bad_split = np.flatnonzero(~text["split"].isin(SPLIT_NAMES).to_numpy())
    if bad_split.size:
        i = int(bad_split[0])
        raise DataError(
            f"{source}: {_row_ref(i)}: column 'split' has value {text['split'].iat[i]!r}; "
            f"expected one of {', '.join(SPLIT_NAMES)}"
        )
    class_label = text["class_label"].str.strip()
    bad_class = np.flatnonzero(~(class_label.eq("") | class_label.str.fullmatch(r"-?\d+(\.0)?")).to_numpy())
    if bad_class.size:
        i = int(bad_class[0])
        raise DataError(
            f"{source}: {_row_ref(i)}: column 'class_label' has value {class_label.iat[i]!r}; "
            "expected an integer or empty"
        )
    check_label_columns(text, classes, source)
    _check_unique_images(text["image_path"].map(lambda p: os.path.normpath(p.strip())), text["image_path"], source)
    patients = text["patient_id"].str.strip()  # ids are case-sensitive; surrounding spaces are not part of them
    splits_per_patient = text.assign(patient_id=patients).groupby("patient_id")["split"].nunique()
    leaking = splits_per_patient[splits_per_patient > 1]
    if len(leaking):
        patient = leaking.index[0]
        rows = text.index[patients == patient]
        where = ", ".join(f"{text['split'].iat[r]} in {_row_ref(int(r))}" for r in rows[:4])
        raise DataError(
            f"{source}: patient {patient!r} appears in more than one split ({where}); splits must be "
            f"patient-disjoint ({len(leaking)} patient(s) affected)"
        )
    return classes


def _check_unique_images(keys: pd.Series, shown: pd.Series, source: str) -> None:
    """No two rows name the same image (``keys``: a normalised form of each row's path; ``shown``: as written)."""
    duplicated = keys.duplicated(keep=False).to_numpy()
    if duplicated.any():
        rows = np.flatnonzero(duplicated)
        first = keys.iat[int(rows[0])]
        same = [int(r) for r in rows if keys.iat[int(r)] == first]
        a, b = shown.iat[same[0]], shown.iat[same[1]]
        spelled = f"image {a!r}" if a == b else f"image {a!r} (also written {b!r})"
        raise DataError(f"{source}: {spelled} is listed twice, in {_row_ref(same[0])} and {_row_ref(same[1])}")


def read_json_object(path: str | Path, what: str = "JSON file") -> dict[str, Any]:
    """A JSON object from ``path`` (empty dict when the file is absent); errors name the file."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable {what} ({exc})") from exc
    if not isinstance(value, dict):
        raise DataError(f"{path}: the {what} must be a JSON object")
    return value


def read_csv_strings(path: str | Path, what: str = "CSV") -> pd.DataFrame:
    """Every cell of a CSV (plain or compressed) as the exact string in the file, empty cells as "".

    Stops with :class:`DataError` naming the file when it is missing, 0 bytes, or not a readable CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the CSV is empty (0 bytes)")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc


def read_split_csv(
    path: str | Path, image_root: str | Path | None = None, classes: Sequence[str] | None = None
) -> SplitTable:
    """Read and validate a split CSV.

    ``classes`` defaults to the sidecar's ``classes``, else to every non-standard column. ``image_root``
    defaults to the sidecar's ``image_root`` (relative to the CSV), else the CSV's folder. The dataset comes
    from the ``dataset`` column (one value) or the sidecar; it is ``"unknown"`` when neither says.
    """
    csv_path = Path(path)
    frame = read_csv_strings(csv_path, "split CSV")
    meta = read_json_object(sidecar_path(csv_path), "sidecar JSON")
    if classes is None and meta.get("classes"):
        classes = list(meta["classes"])
    classes = validate_split_frame(frame, classes, source=str(csv_path))
    datasets = sorted({d for d in frame.get("dataset", pd.Series(dtype=str)) if d})
    if len(datasets) > 1:
        dataset = "+".join(datasets)
    elif datasets:
        dataset = datasets[0]
    else:
        dataset = str(meta.get("dataset") or "unknown")
    if image_root is None:
        image_root = csv_path.parent / meta["image_root"] if meta.get("image_root") else csv_path.parent
    absolute = frame["image_path"].map(lambda p: os.path.abspath(resolve_image_path(p.strip(), image_root)))
    _check_unique_images(absolute, frame["image_path"], str(csv_path))  # a relative and an absolute spelling
    return SplitTable(frame, classes, dataset, str(csv_path), Path(image_root), meta)


def _format_label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value).strip()
    if text in _POSITIVE:
        return "1"
    if text in _NEGATIVE:
        return "0"
    return text


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_split_csv(
    frame: pd.DataFrame,
    path: str | Path,
    classes: Sequence[str],
    dataset: str,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Validate ``frame`` and write it as a split CSV plus its ``<csv>.json`` sidecar, atomically.

    Labels are written as ``1`` / ``0`` / empty, columns in SPEC order (standard columns, then the classes
    in the given order, then optional columns). Returns the CSV path.
    """
    frame = frame.copy()
    frame["dataset"] = dataset
    for name in classes:
        if name in frame.columns:
            frame[name] = frame[name].map(_format_label)
    frame["class_label"] = frame["class_label"].map(
        lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(int(float(v)))
    )
    ordered = [*REQUIRED_COLUMNS, *classes, *[c for c in OPTIONAL_COLUMNS if c in frame.columns]]
    frame = frame[ordered].fillna("").astype(str)
    validate_split_frame(frame, classes, source=str(path))
    csv_path = atomic_write_text(path, frame.to_csv(index=False))
    sidecar = {"dataset": dataset, "classes": list(classes), **dict(meta or {})}
    atomic_write_text(sidecar_path(csv_path), json.dumps(sidecar, indent=2, default=str) + "\n")
    return csv_path


def split_summary(frame: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Counts per split: images, patients, and positives / known labels for each class."""
    labels = label_matrix(frame, classes)
    rows = []
    for split in [*SPLIT_NAMES, "all"]:
        mask = np.ones(len(frame), bool) if split == "all" else (frame["split"] == split).to_numpy()
        row: dict[str, Any] = {
            "split": split,
            "images": int(mask.sum()),
            "patients": int(frame.loc[mask, "patient_id"].nunique()),
        }
        for j, name in enumerate(classes):
            column = labels[mask, j]
            row[name] = f"{int(np.nansum(column))}/{int(np.isfinite(column).sum())}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")


# ----------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------
