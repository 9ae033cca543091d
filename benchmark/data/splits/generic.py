"""Split builders for any labelled CSV (with a column mapping) and for a folder with one subfolder per class."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data import DataError, image_files_under
from benchmark.data.splits.common import (
    DEFAULT_FRACTIONS,
    DEFAULT_PROMPT_TEMPLATE,
    labelled_frame,
    template_prompts,
    uncertain_label,
)
from benchmark.data.tables import did_you_mean


def parse_label_mapping(spec: str | Sequence[str]) -> list[tuple[str, str]]:
    """``"Effusion=pleural effusion,Mass"`` -> ``[("Effusion", "pleural effusion"), ("Mass", "Mass")]``."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    pairs = []
    for item in items:
        if not item.strip():
            continue
        source, _, name = item.partition("=")
        pairs.append((source.strip(), (name or source).strip()))
    if not pairs:
        raise DataError("no label columns given (e.g. --label-cols 'Effusion=pleural effusion,Cardiomegaly')")
    return pairs


def _numeric_view(table: pd.DataFrame) -> pd.DataFrame:
    """The columns whose every non-empty cell is a number as numbers (empty -> NaN); others as text."""
    view = {}
    for column in table.columns:
        text = table[column].fillna("").astype(str).str.strip()
        numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
        view[column] = numbers if numbers.notna().sum() == (text != "").sum() and (text != "").any() else text
    return pd.DataFrame(view, index=table.index)


def select_rows(table: pd.DataFrame, *, where: str | None = None, column: str | None = None,
                value: str | None = None, source: str = "<csv>") -> pd.DataFrame:
    """The rows of *table* that ``where`` (a pandas query: ``"source == 'nih_cxr14' and age >= 18"``; numeric
    columns compare as numbers, a name with spaces in backticks) and ``column == value`` (text, stripped) keep.

    Stops with :class:`DataError` naming *source* for an unknown column (with the closest names), an expression
    pandas cannot evaluate, or a selection that keeps no row."""
    if (column is None) != (value is None):
        raise DataError("give --filter-col and --filter-value together")
    keep = pd.Series(True, index=table.index)
    columns = [str(c) for c in table.columns]

    def unknown(name: str) -> DataError:
        return DataError(f"{source}: no column {name!r}{did_you_mean(name, columns)} (columns: {', '.join(columns)})")

    if column is not None:
        if column not in table.columns:
            raise unknown(column)
        keep &= table[column].fillna("").astype(str).str.strip() == str(value).strip()
    if where:
        try:
            chosen = _numeric_view(table).query(where, engine="python")
        except pd.errors.UndefinedVariableError as exc:
            name = re.search(r"name '([^']+)' is not defined", str(exc))
            raise unknown(name.group(1) if name else str(exc)) from exc
        except Exception as exc:  # pandas raises many types for a malformed expression
            raise DataError(f"{source}: --where {where!r} cannot be evaluated ({type(exc).__name__}: {exc}); "
                            "e.g. --where \"source == 'nih_cxr14' and age >= 18\"") from exc
        keep &= table.index.isin(chosen.index)
    if not keep.any():
        what = " and ".join(x for x in (where and f"--where {where!r}",
                                        column is not None and f"{column} == {value!r}") if x)
        raise DataError(f"{source}: {what} keeps none of its {len(table)} rows")
    return table[keep.to_numpy()].reset_index(drop=True)


def missing_images(image_paths: Sequence[str], image_root: str | Path) -> list[str]:
    """The image paths (as given) with no file, relative ones looked up under *image_root*."""
    root = Path(image_root)
    return [p for p in image_paths if not (Path(p) if Path(p).is_absolute() else root / p).is_file()]


def build_csv_split(
    table: pd.DataFrame,
    *,
    image_col: str,
    patient_col: str,
    label_cols: str | Sequence[str],
    prompt_col: str | None = None,
    split_col: str | None = None,
    view_col: str | None = None,
    uncertain: str = "ignore",
    missing_patient: str = "error",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    class_label_rule: str = "first",
    source: str = "<csv>",
) -> pd.DataFrame:
    """Split frame from any CSV: columns are named by the caller; labels may be renamed (``src=name``).

    Label cells must be 1, 0, -1 (uncertain, per ``uncertain``) or empty. An existing ``split_col`` is kept
    (and checked for patient overlap when written); otherwise patients are assigned to splits. A row with no
    patient is an error unless ``missing_patient="image"``, which makes that image its own patient.
    """
    if len(table) == 0:
        raise DataError(f"{source}: the CSV has no rows")
    mapping = parse_label_mapping(label_cols)
    needed = [image_col, patient_col, *(s for s, _ in mapping), *(c for c in (prompt_col, split_col, view_col) if c)]
    for column in needed:
        if column not in table.columns:
            raise DataError(f"{source}: missing column {column!r}{did_you_mean(column, table.columns)} "
                            f"(columns: {', '.join(map(str, table.columns))})")
    table = table.reset_index(drop=True)
    patients = table[patient_col].fillna("").astype(str).str.strip()
    no_patient = np.flatnonzero(patients.eq("").to_numpy())
    if no_patient.size and missing_patient != "image":
        i = int(no_patient[0])
        raise DataError(f"{source}: row {i + 1}: column {patient_col!r} is empty ({no_patient.size} rows); "
                        "pass --missing-patient image to make each such image its own patient")
    patients.iloc[no_patient] = "image:" + table[image_col].iloc[no_patient].astype(str)
    classes = [name for _, name in mapping]
    labels = np.array(
        [[uncertain_label(value, uncertain, f"{source}: row {i + 1}, column {src!r}")
          for i, value in enumerate(table[src])] for src, _ in mapping],
        dtype=np.float32,
    ).T.reshape(len(table), len(classes))
    views = table[view_col].fillna("").astype(str) if view_col else pd.Series(["frontal"] * len(table))
    base: dict[str, object] = {
        "image_path": table[image_col].astype(str),
        "patient_id": patients,
        "prompt": (table[prompt_col].fillna("").astype(str) if prompt_col
                   else template_prompts(labels, classes, views.tolist(), prompt_template)),
        "view": views,
    }
    if split_col:
        base["split"] = table[split_col].astype(str).str.strip().str.lower()
    for optional in ("sex", "age", "source"):
        if optional in table.columns:
            base[optional] = table[optional].fillna("").astype(str)
    return labelled_frame(base, labels, classes, fractions, seed, class_label_rule)


def build_folder_split(
    folder: str | Path,
    *,
    patient_regex: str | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
) -> pd.DataFrame:
    """Split frame from ``folder/<class name>/<image>``: each image is positive for its folder's class.

    ``image_path`` is relative to ``folder``. The patient is the first group of ``patient_regex`` matched
    against the file name, else the file's stem (each image its own patient).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class subfolders (expected {root}/<class name>/<image>.png)")
    pattern = re.compile(patient_regex) if patient_regex else None
    classes = [d.name for d in class_dirs]
    rows: list[tuple[str, str, int]] = []
    for j, class_dir in enumerate(class_dirs):
        files = image_files_under(class_dir)
        if not files:
            raise DataError(f"{class_dir}: class folder has no images (PNG, JPEG, TIFF, BMP, WebP, ...)")
        for path in files:
            patient = path.stem
            if pattern:
                match = pattern.search(path.name)
                if not match:
                    raise DataError(f"{path}: file name does not match --patient-regex {patient_regex!r}")
                patient = match.group(1) if match.groups() else match.group(0)
            rows.append((path.relative_to(root).as_posix(), patient, j))
    labels = np.zeros((len(rows), len(classes)), dtype=np.float32)
    labels[np.arange(len(rows)), [r[2] for r in rows]] = 1.0
    base = {
        "image_path": [r[0] for r in rows],
        "patient_id": [r[1] for r in rows],
        "prompt": template_prompts(labels, classes, ["frontal"] * len(rows), prompt_template),
        "view": "",
    }
    return labelled_frame(base, labels, classes, fractions, seed, "single")
