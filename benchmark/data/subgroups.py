"""Who belongs to which subgroup (``--by sex``, ``--by age-band``, ``--by view``): read from a split's ``sex``,
``age`` and ``view`` columns, and for a synthetic image from its own columns or those of the split row or patient it
was made from. Every stage that reports per subgroup takes its groups from here."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.errors import DataError

SUBGROUP_VARIABLES: tuple[str, ...] = ("sex", "age-band", "view")
DEFAULT_AGE_CUTS: tuple[int, ...] = (40, 60, 80)
UNKNOWN = ""
_SEX = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}


def subgroup_variables(text: str) -> tuple[str, ...]:
    """The variables of a ``--by`` flag (comma list); an unknown one stops with a :class:`DataError`."""
    names = tuple(v.strip() for v in (text or "").split(",") if v.strip())
    unknown = [v for v in names if v not in SUBGROUP_VARIABLES]
    if unknown:
        raise DataError(f"--by {unknown[0]!r}: use one or more of {', '.join(SUBGROUP_VARIABLES)}")
    return names


def age_cuts(text: str) -> tuple[int, ...]:
    """The cut points of an ``--age-bands`` flag (increasing ages in years); anything else is a :class:`DataError`."""
    try:
        cuts = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DataError(f"--age-bands {text!r}: give increasing ages in years, e.g. 40,60,80") from None
    if not cuts or list(cuts) != sorted(set(cuts)) or cuts[0] <= 0:
        raise DataError(f"--age-bands {text!r}: give increasing ages in years, e.g. 40,60,80")
    return cuts


def age_band(value: Any, cuts: Sequence[int] = DEFAULT_AGE_CUTS) -> str:
    """The band of an age in years: ``<40``, ``40-59``, ``60-79``, ``80+`` for the default cuts; "" when unknown."""
    try:
        age = float(str(value).strip())
    except ValueError:
        return UNKNOWN
    if not math.isfinite(age) or age < 0:
        return UNKNOWN
    edges = list(cuts)
    if age < edges[0]:
        return f"<{edges[0]}"
    for low, high in itertools.pairwise(edges):
        if low <= age < high:
            return f"{low}-{high - 1}"
    return f"{edges[-1]}+"


def subgroup_values(frame: pd.DataFrame, by: str, age_cuts: Sequence[int] = DEFAULT_AGE_CUTS) -> np.ndarray:
    """The subgroup of each row of a split or synthetic table (``(n,)`` strings, "" where unknown): ``sex`` (M / F;
    other values as written), ``age-band`` (from ``age``), ``view`` (upper case: PA, AP, LATERAL, ...)."""
    if by not in SUBGROUP_VARIABLES:
        raise ValueError(f"--by {by!r}: use one of {', '.join(SUBGROUP_VARIABLES)}")
    column = "age" if by == "age-band" else by
    if column not in frame.columns:
        return np.full(len(frame), UNKNOWN, dtype=object)
    raw = frame[column].fillna("").astype(str).str.strip()
    if by == "sex":
        return np.array([UNKNOWN if v.lower() in ("", "nan", "none", "unknown") else _SEX.get(v.lower(), v.upper())
                         for v in raw], dtype=object)
    if by == "age-band":
        return np.array([age_band(v, age_cuts) for v in raw], dtype=object)
    return np.array([v.upper() if v.lower() not in ("", "nan") else UNKNOWN for v in raw], dtype=object)


def synthetic_subgroups(synthetic: pd.DataFrame, split: pd.DataFrame, by: str,
                        age_cuts: Sequence[int] = DEFAULT_AGE_CUTS) -> np.ndarray:
    """Subgroup of each synthetic image: its own column where synthetic.csv has one, else that of the split row its
    ``source_row`` names, else (sex only) that of its source ``patient_id``'s images; "" where none says."""
    own = subgroup_values(synthetic, by, age_cuts)
    split_values = subgroup_values(split, by, age_cuts)
    if "source_row" in synthetic.columns:
        rows = pd.to_numeric(synthetic["source_row"], errors="coerce").to_numpy()
        for i in np.flatnonzero(own == UNKNOWN):
            if np.isfinite(rows[i]) and 0 <= int(rows[i]) < len(split):
                own[i] = split_values[int(rows[i])]
    if by == "sex" and "patient_id" in synthetic.columns:
        per_patient = pd.Series(split_values, index=split["patient_id"].astype(str))
        per_patient = per_patient[per_patient != UNKNOWN].groupby(level=0).first()
        patients = synthetic["patient_id"].fillna("").astype(str).to_numpy()
        for i in np.flatnonzero(own == UNKNOWN):
            own[i] = per_patient.get(patients[i], UNKNOWN)
    return own
