"""CheXGenBench / MIMIC-CXR split builder: ``path``, ``annotated_prompt`` and ``chexpert_labels`` (a dict string).

CheXpert labels are 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or None (not mentioned); the uncertain
policy decides what -1 becomes, the unmentioned policy what None becomes: unknown (default; masked from training
losses and from every figure) or negative (CheXGenBench's own downstream script turns both None and -1 into 0, i.e.
``--uncertain zeros --unmentioned negative``). The patient comes from a patient column, else from the MIMIC path
(``files/p13/p13801616/s.../x.jpg`` -> ``p13801616``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.data import DataError
from benchmark.data.splits.common import DEFAULT_FRACTIONS, labelled_frame, uncertain_label

CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
)
_PATIENT_IN_PATH = re.compile(r"(?:^|/)(p\d{5,})(?:/|$)")
_PATIENT_COLUMNS = ("patientID", "patient_id", "subject_id", "PatientID")
UNMENTIONED_POLICIES: tuple[str, ...] = ("unknown", "negative")


def patient_from_path(path: str) -> str | None:
    """MIMIC-CXR patient folder in a path (``.../p13801616/...`` -> ``p13801616``), or None."""
    match = _PATIENT_IN_PATH.search(str(path).replace("\\", "/"))
    return match.group(1) if match else None


def parse_label_dict(text: object, where: str) -> dict[str, object]:
    """A ``chexpert_labels`` cell (Python dict as text) -> dict; errors name ``where`` (file and row)."""
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: column 'chexpert_labels' is empty")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise DataError(f"{where}: column 'chexpert_labels' is not a dict: {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise DataError(f"{where}: column 'chexpert_labels' is not a dict: {text[:80]!r}")
    return value


def _unmentioned(value: object) -> bool:
    """Whether a ``chexpert_labels`` value says nothing (missing, None, empty or NaN)."""
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip().lower() in (
        "", "none", "nan")


def chexpert_label_matrix(cells: Sequence[object] | pd.Series, classes: Sequence[str], *, uncertain: str = "ignore",
                          unmentioned: str = "unknown", source: str = "<csv>") -> np.ndarray:
    """Labels ``(n, len(classes))`` float32 (1, 0 or NaN) from ``chexpert_labels`` dict strings, one per row.

    -1 follows the ``uncertain`` policy, a key that is None or absent the ``unmentioned`` one; a class that no row
    has as a key, or a cell that is not a dict, stops with a :class:`DataError` naming ``source`` and the row."""
    if unmentioned not in UNMENTIONED_POLICIES:
        raise DataError(f"unknown unmentioned-label policy {unmentioned!r}; use one of "
                        f"{', '.join(UNMENTIONED_POLICIES)}")
    dicts = [parse_label_dict(text, f"{source}: row {i + 1}") for i, text in enumerate(cells)]
    present = {key for d in dicts for key in d}
    for name in classes:
        if name not in present:
            raise DataError(f"{source}: unknown class {name!r}: not a key of chexpert_labels "
                            f"(keys: {', '.join(sorted(present))})")
    labels = np.array(
        [[uncertain_label(d.get(name), uncertain, f"{source}: row {i + 1}, label {name!r}") for name in classes]
         for i, d in enumerate(dicts)],
        dtype=np.float32,
    ).reshape(len(dicts), len(classes))
    if unmentioned == "negative":
        silent = np.array([[_unmentioned(d.get(name)) for name in classes] for d in dicts],
                          dtype=bool).reshape(labels.shape)
        labels[silent] = 0.0
    return labels


def patient_ids(table: pd.DataFrame, source: str, *, required: bool = True) -> pd.Series:
    """Each row's patient: a patient column (``patientID``, ``patient_id``, ``subject_id``, ``PatientID``), else the
    MIMIC folder in ``path``. Where neither says: an error naming the row, or None values when not ``required``."""
    patient_column = next((c for c in _PATIENT_COLUMNS if c in table.columns), None)
    if patient_column:
        return table[patient_column].astype(str)
    if "path" not in table.columns:
        if required:
            raise DataError(f"{source}: no patient column ({', '.join(_PATIENT_COLUMNS)}) and no 'path' column")
        return pd.Series([None] * len(table), index=table.index, dtype=object)
    patients = table["path"].map(patient_from_path)
    if required and patients.isna().any():
        i = int(np.flatnonzero(patients.isna().to_numpy())[0])
        raise DataError(f"{source}: row {i + 1}: no patient column and no MIMIC patient folder (p<digits>) "
                        f"in path {table['path'].iat[i]!r}")
    return patients


def build_chexgenbench_split(
    prompts: pd.DataFrame,
    classes: Sequence[str] | None = None,
    *,
    uncertain: str = "ignore",
    unmentioned: str = "unknown",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    class_label_rule: str = "first",
    source: str = "<chexgenbench csv>",
) -> pd.DataFrame:
    """Split frame from a CheXGenBench prompts table; ``classes`` default to the 14 CheXpert labels.

    Every row is kept (it is a prompt for generation); labels a report does not mention stay empty, or are 0 with
    ``unmentioned="negative"``.
    """
    if unmentioned not in UNMENTIONED_POLICIES:
        raise DataError(f"unknown unmentioned-label policy {unmentioned!r}; use one of "
                        f"{', '.join(UNMENTIONED_POLICIES)}")
    for column in ("path", "annotated_prompt", "chexpert_labels"):
        if column not in prompts.columns:
            raise DataError(f"{source}: missing column {column!r} (CheXGenBench needs path, annotated_prompt, "
                            "chexpert_labels)")
    if len(prompts) == 0:
        raise DataError(f"{source}: the CSV has no rows")
    classes = list(classes) if classes else list(CHEXPERT_LABELS)
    prompts = prompts.reset_index(drop=True)
    labels = chexpert_label_matrix(prompts["chexpert_labels"], classes, uncertain=uncertain, unmentioned=unmentioned,
                                   source=source)
    patients = patient_ids(prompts, source)
    base = {
        "image_path": prompts["path"].astype(str),
        "patient_id": patients,
        "prompt": prompts["annotated_prompt"].fillna("").astype(str),
        "view": prompts["view"].fillna("").astype(str) if "view" in prompts else "",
        "source": "mimic-cxr",
    }
    return labelled_frame(base, labels, classes, fractions, seed, class_label_rule)
