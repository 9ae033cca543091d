"""Reading the result tables for the report: the sections in report order (:data:`SECTIONS`), the command that
writes each table (:data:`STAGE_COMMANDS`), typed access to a table (:class:`_Frame`, read with
:func:`benchmark.core.results.read_results`), the run folders under ``results/runs/<run_id>/`` and their per-image
predictions, and the pretrained table's real and synthetic rows merged per classifier and class
(:class:`_Pretrained`). Also the small formatting helpers that the other modules of the report share."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.results import read_results

#: (anchor, heading) of every section, in report order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("leaderboard", "Leaderboard"),
    ("pretrained", "Pretrained-classifier utility"),
    ("retrained", "Retrained-classifier utility"),
    ("image-quality", "Image quality"),
    ("samples", "Sample images"),
    ("memorisation", "Memorisation"),
    ("privacy", "Privacy: patient re-identification"),
)
#: what writes each table, quoted when a stage is missing.
STAGE_COMMANDS: dict[str, str] = {
    "utility_pretrained": "./scripts/utility_metrics.sh --real CSV --synthetic DIR --model-name NAME",
    "utility_retrained": "./scripts/utility_metrics.sh --stage retrained --real CSV --synthetic DIR --model-name NAME",
    "image_quality_metrics": "./scripts/image_quality_metrics.sh --real CSV --synthetic DIR --model-name NAME "
                             "--per-class",
    "privacy_metrics": "./scripts/privacy_metrics.sh --real CSV --synthetic DIR --model-name NAME --reid-train",
    "alignment_metrics": "./scripts/privacy_metrics.sh --real CSV --synthetic DIR --model-name NAME "
                         "--alignment-model MODEL",
}
REAL = "real"
MISSING = "–"


# ---------------------------------------------------------------------------------------------- small helpers


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")
    return slug or "x"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def _fmt(value: Any, digits: int = 3, sign: bool = False) -> str:
    if not _finite(value):
        return MISSING
    return f"{float(value):+.{digits}f}" if sign else f"{float(value):.{digits}f}"


def _fmt_ci(value: Any, low: Any, high: Any, digits: int = 3) -> str:
    text = _fmt(value, digits)
    if text != MISSING and _finite(low) and _finite(high):
        text += f" [{float(low):.{digits}f}, {float(high):.{digits}f}]"
    return text


def _positives(f: _Frame, i: int) -> str:
    """A row's positives: ``n_positive`` (rows since the prevalence columns), else the older ``positives``."""
    return _count(f.text("n_positive").iloc[i] or f.text("positives").iloc[i])


def _count(text: str) -> str:
    """A count as stored (``2``, ``2.0``) shown as an integer; anything else unchanged, empty as missing."""
    text = str(text).strip()
    try:
        value = float(text)
    except ValueError:
        return text or MISSING
    return str(int(value)) if math.isfinite(value) and value == int(value) else text


def _fmt_p(value: Any) -> str:
    return f"{float(value):.3g}" if _finite(value) else MISSING


def _stars(p: Any) -> str:
    """Significance marks as the printed retrained table uses them."""
    if not _finite(p):
        return ""
    p = float(p)
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else " ns"


def _label(model: str, extra: str) -> str:
    return f"{model} [{extra}]" if extra else model


class _Frame:
    """A result table with typed access: text cells stay text; :meth:`num` converts a column to float and records
    (once) every cell that is not a number, so the report can name the file, row and column."""

    def __init__(self, table: str, frame: pd.DataFrame) -> None:
        self.table = table
        self.frame = frame.reset_index(drop=True)
        self.problems: list[str] = []
        self._checked: set[str] = set()

    def __len__(self) -> int:
        return len(self.frame)

    def text(self, column: str) -> pd.Series:
        if column not in self.frame:
            return pd.Series([""] * len(self.frame), index=self.frame.index, dtype=str)
        return self.frame[column].fillna("").astype(str).str.strip()

    def num(self, column: str) -> pd.Series:
        if column not in self.frame:
            return pd.Series(np.nan, index=self.frame.index, dtype=float)
        raw = self.frame[column].fillna("").astype(str).str.strip()
        values = pd.to_numeric(raw, errors="coerce")
        if column not in self._checked:
            self._checked.add(column)
            bad = (raw != "") & values.isna() & ~raw.str.lower().isin(["nan", "inf", "-inf"])
            for index in np.flatnonzero(bad.to_numpy())[:3]:
                self.problems.append(f"`{self.table}.csv` row {index + 1} (line {index + 2}), column `{column}`: "
                                     f"{raw.iloc[index]!r} is not a number (shown as {MISSING})")
        return values.astype(float)


def _load(table: str, folder: Path) -> _Frame:
    return _Frame(table, read_results(table, folder))


def _run_folder(results: Path, run_id: str) -> Path | None:
    """``<results>/runs/<run_id>`` when the id is a plain folder name; never created."""
    if not run_id or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", run_id) or ".." in run_id:
        return None
    return results / "runs" / run_id


def _read_predictions(path: Path, cache: dict[Path, pd.DataFrame | None]) -> pd.DataFrame | None:
    if path not in cache:
        try:
            cache[path] = pd.read_csv(path) if path.is_file() else None
        except (OSError, ValueError, pd.errors.ParserError):
            cache[path] = None
    return cache[path]


# ------------------------------------------------------------------------------------------ pretrained stage


@dataclass
class _Pretrained:
    frame: _Frame
    classifiers: list[str]
    classes: dict[str, list[str]]
    models: list[tuple[str, str]]


def _pretrained_view(frame: _Frame) -> _Pretrained | None:
    if len(frame) == 0:
        return None
    classifiers = list(dict.fromkeys(frame.text("classifier")))
    classes = {c: list(dict.fromkeys(frame.text("class")[frame.text("classifier") == c])) for c in classifiers}
    synthetic = frame.text("image_source") != REAL
    models = list(dict.fromkeys(zip(frame.text("model_name")[synthetic], frame.text("extra_info")[synthetic],
                                    strict=True)))
    return _Pretrained(frame, classifiers, classes, models)


def _pretrained_rows(view: _Pretrained, classifier: str, name: str) -> list[tuple[str, pd.Series, int]]:
    """(row label, row index, colour index) for one class: the real rows once (one per distinct real result), then
    each model's synthetic row."""
    f = view.frame
    mask = (f.text("classifier") == classifier) & (f.text("class") == name)
    real = f.frame.index[mask & (f.text("image_source") == REAL)]
    distinct: dict[tuple[str, ...], int] = {}
    for i in real:
        key = (f.text("n").iloc[i], _positives(f, i), f.text("auroc").iloc[i])
        distinct.setdefault(key, i)
    out = []
    for i in distinct.values():
        owner = _label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i])
        label = REAL if len(distinct) == 1 else f"real (run of {owner})"
        out.append((label, i, 0))
    for k, (model, extra) in enumerate(view.models, start=1):
        hit = f.frame.index[mask & (f.text("image_source") != REAL) & (f.text("model_name") == model)
                            & (f.text("extra_info") == extra)]
        if len(hit):
            out.append((_label(model, extra), hit[0], k))
    return out
