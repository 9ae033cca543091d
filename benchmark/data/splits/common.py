"""What every split builder shares: patient-level stratified assignment, label parsing, prompts, class labels.

Builders turn a source (PadChest metadata, a CheXGenBench CSV, any CSV, a folder) into a frame with the SPEC §1
columns; :func:`benchmark.data.write_split_csv` validates and writes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data import SPLIT_NAMES, DataError

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)
DEFAULT_PROMPT_TEMPLATE = "{view} chest x-ray showing {findings}"
UNCERTAIN_POLICIES: tuple[str, ...] = ("ignore", "zeros", "ones")
CLASS_LABEL_RULES: tuple[str, ...] = ("first", "single")


def parse_class_list(text: str | Sequence[str] | None) -> list[str]:
    """``"a, b,c"`` or a sequence -> ``["a", "b", "c"]`` (order kept, blanks dropped, duplicates refused)."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [str(item).strip() for item in items if str(item).strip()]
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise DataError(f"class {sorted(seen)[0]!r} is named twice in the class list")
    return names


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test fractions: three non-negative numbers summing to 1, train > 0."""
    if len(fractions) != 3:
        raise DataError(f"split fractions need three values (train, val, test), got {list(fractions)}")
    values = tuple(float(f) for f in fractions)
    if any(f < 0 for f in values) or values[0] <= 0 or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise DataError(f"split fractions must be >= 0, train > 0, and sum to 1; got {list(values)}")
    return values  # type: ignore[return-value]


def uncertain_label(value: Any, policy: str, where: str) -> float:
    """Map one raw label (1, 0, -1 uncertain, empty/None unknown) to 1.0, 0.0 or NaN under ``policy``.

    ``policy``: ``ignore`` (uncertain -> unknown), ``zeros`` (-> 0), ``ones`` (-> 1). ``where`` names the
    file, row and column for the error raised on any other value.
    """
    if policy not in UNCERTAIN_POLICIES:
        raise DataError(f"unknown uncertain-label policy {policy!r}; use one of {', '.join(UNCERTAIN_POLICIES)}")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    text = str(value).strip().lower()
    if text in ("", "none", "nan"):
        return math.nan
    try:
        number = float(text)
    except ValueError:
        raise DataError(f"{where}: label value {value!r} is not 1, 0, -1 (uncertain) or empty") from None
    if number == 1.0:
        return 1.0
    if number == 0.0:
        return 0.0
    if number == -1.0:
        return {"ignore": math.nan, "zeros": 0.0, "ones": 1.0}[policy]
    raise DataError(f"{where}: label value {value!r} is not 1, 0, -1 (uncertain) or empty")


def image_strata(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Stratum of each image: its rarest positive class (by positives in ``labels``), else ``"none"``.

    ``labels`` is ``(n_images, n_classes)`` with 1 / 0 / NaN.
    """
    positives = np.nan_to_num(labels, nan=0.0) > 0.5
    counts = positives.sum(axis=0)
    order = np.argsort(counts, kind="stable")  # rarest first
    strata = np.full(len(labels), "none", dtype=object)
    for j in order[::-1]:  # most common first, so rarer classes overwrite
        strata[positives[:, j]] = classes[j]
    return strata


def assign_patient_splits(
    patient_ids: Sequence[Any],
    strata: Sequence[str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> np.ndarray:
    """Assign every image a split so that no patient is in two splits and each stratum is shared out.

    A patient's stratum is the rarest stratum among its images (rarity = number of images). Within a
    stratum, patients are shuffled with ``seed`` (after sorting by id, so row order does not matter) and each
    goes to the split furthest below its target share of that stratum's images. Returns an object array of
    ``"train"`` / ``"val"`` / ``"test"`` aligned with ``patient_ids``. Deterministic for a seed.
    """
    targets = np.asarray(check_fractions(fractions))
    frame = pd.DataFrame({"patient": pd.Series(patient_ids).astype(str).to_numpy(), "stratum": list(strata)})
    stratum_size = frame["stratum"].value_counts()
    frame["rarity"] = frame["stratum"].map(stratum_size)
    per_patient = (
        frame.sort_values(["rarity", "stratum"], kind="stable")
        .groupby("patient", sort=True)
        .agg(stratum=("stratum", "first"), n_images=("stratum", "size"))
    )
    rng = np.random.default_rng(seed)
    split_of_patient: dict[str, str] = {}
    for stratum in sorted(per_patient["stratum"].unique(), key=str):
        members = per_patient[per_patient["stratum"] == stratum]
        order = rng.permutation(len(members))
        goal = targets * members["n_images"].sum()
        assigned = np.zeros(3)
        for position in order:
            patient = members.index[position]
            deficit = goal - assigned
            deficit[targets == 0] = -np.inf
            choice = int(np.argmax(deficit))
            split_of_patient[patient] = SPLIT_NAMES[choice]
            assigned[choice] += members["n_images"].iat[position]
    return frame["patient"].map(split_of_patient).to_numpy(dtype=object)


def class_labels(labels: np.ndarray, rule: str = "first") -> list[str]:
    """``class_label`` per image for class-conditional generators, as strings ("" where there is none).

    ``first``: index of the first class (in the user's order) that is positive. ``single``: the index only
    when exactly one class is positive, else empty.
    """
    if rule not in CLASS_LABEL_RULES:
        raise DataError(f"unknown class-label rule {rule!r}; use one of {', '.join(CLASS_LABEL_RULES)}")
    positives = np.nan_to_num(labels, nan=0.0) > 0.5
    out = []
    for row in positives:
        hits = np.flatnonzero(row)
        if len(hits) == 0 or (rule == "single" and len(hits) > 1):
            out.append("")
        else:
            out.append(str(int(hits[0])))
    return out


def template_prompts(
    labels: np.ndarray,
    classes: Sequence[str],
    views: Sequence[str],
    template: str = DEFAULT_PROMPT_TEMPLATE,
    no_class_phrase: str = "no listed finding",
) -> list[str]:
    """Prompts from ``template`` with ``{view}`` and ``{findings}`` (positive classes joined by ", ")."""
    positives = np.nan_to_num(labels, nan=0.0) > 0.5
    prompts = []
    for row, view in zip(positives, views, strict=True):
        findings = ", ".join(classes[j] for j in np.flatnonzero(row)) or no_class_phrase
        try:
            prompts.append(template.format(view=view or "frontal", findings=findings))
        except (KeyError, IndexError) as exc:
            raise DataError(
                f"prompt template {template!r} uses an unknown field {exc}; only {{view}} and {{findings}}"
            ) from None
    return prompts


def labelled_frame(
    base: Mapping[str, Sequence[Any]],
    labels: np.ndarray,
    classes: Sequence[str],
    fractions: Sequence[float],
    seed: int,
    class_label_rule: str = "first",
) -> pd.DataFrame:
    """Assemble a split frame from standard columns in ``base`` plus ``labels``, assigning patient splits."""
    frame = pd.DataFrame(dict(base))
    for j, name in enumerate(classes):
        frame[name] = labels[:, j]
    frame["class_label"] = class_labels(labels, class_label_rule)
    if "split" not in frame.columns:
        frame["split"] = assign_patient_splits(
            frame["patient_id"], image_strata(labels, classes), fractions, seed
        )
    return frame
