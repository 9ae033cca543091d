"""The results store: keyed, atomic, concurrency-safe upserts into ``results/<table>.csv`` (SPEC §4).

Owns the result tables and their key columns (``RESULT_TABLES``), where results live (``results_dir``:
argument, else ``$RESULTS_DIR``, else ``./results``), how rows are written (``upsert_rows``) and read back
(``read_results``), and the per-run folder ``results/runs/<run_id>/`` (``run_dir``).

Guarantees of ``upsert_rows``:

* keyed upsert: a row whose key already exists replaces that row in place (the whole row: columns it does
  not give become empty); other rows are appended; keys are never duplicated;
* keys compare as normalised strings: ``0``/``"0"``/``0.0`` are one seed, ``1100``/``1100.0`` one ``n_real``,
  ``None``/``NaN``/``""`` one ``extra_info``; surrounding whitespace is ignored;
* atomic and safe with concurrent writers: read-merge-write happens under ``filelock.FileLock`` on
  ``<csv>.lock`` and the new file is written to a temp file in the same folder and ``os.replace``-d;
* schema evolution: key columns first, then existing columns in their order, then new columns in the order
  first seen; older rows get ``""`` in new columns;
* every cell is text: floats with ``repr`` precision, NaN/None as ``""``; reads keep every value as the
  exact string in the file (``dtype=str``, no NaN conversion);
* every row carries the provenance columns of :mod:`benchmark.core.provenance` (caller-set values are kept);
* a corrupt existing file, a missing key column, an unknown table or a key given twice in one call raises
  before anything is written;
* with ``MLFLOW_TRACKING_URI`` set, the written rows are also logged to MLflow (:mod:`benchmark.core.tracking`),
  after the CSV is safe.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import suppress
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any

import filelock
import numpy as np
import pandas as pd

from benchmark.core.errors import DataError
from benchmark.core.provenance import PROVENANCE_COLUMNS, provenance

__all__ = [
    "PROVENANCE_COLUMNS",
    "RESULT_TABLES",
    "ResultsFileError",
    "check_writable",
    "read_results",
    "remove_rows",
    "results_dir",
    "run_dir",
    "table_path",
    "upsert_rows",
    "write_run_rows",
]

RESULT_TABLES: dict[str, tuple[str, ...]] = {
    "image_quality_metrics": ("model_name", "extra_info", "feature_extractor", "class"),
    "utility_pretrained": ("model_name", "extra_info", "classifier", "image_source", "class"),
    # Beyond SPEC §4 (README "Subgroups"): the pretrained stage's per-subgroup rows (--by sex / age-band / view).
    "utility_pretrained_subgroups": ("model_name", "extra_info", "classifier", "image_source", "class", "subgroup_by",
                                     "subgroup"),
    "utility_retrained": ("model_name", "extra_info", "setting", "n_real", "n_synthetic", "seed", "class"),
    # Beyond SPEC §4 (README "Privacy and alignment"): the privacy stage's re-identification and alignment rows.
    "privacy_metrics": ("model_name", "extra_info", "reid_model", "class"),
    "alignment_metrics": ("model_name", "extra_info", "alignment_model", "class"),
}
#: key columns that may be empty (every other key column needs a value).
OPTIONAL_KEY_COLUMNS: frozenset[str] = frozenset({"extra_info"})
DEFAULT_RESULTS_DIR = "results"
RESULTS_DIR_ENV = "RESULTS_DIR"
#: when set, the caches (features, decoded training images) live under this folder instead of ``<results>/cache``
CACHE_ENV = "SYNTHCXR_CACHE"
LOCK_TIMEOUT_S = 300.0
LOCK_POLL_S = 0.005  # filelock's default 0.05 s poll starves writers that queue behind each other
STALE_TMP_S = 300.0  # a writer's temp file older than this was left by a killed process: removed on the next write

_INT_LIKE = re.compile(r"([+-]?)(\d+)(?:\.0*)?")
_RUN_ID_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class ResultsFileError(DataError):
    """An existing results CSV cannot be read or is not a valid table (left untouched), or the results folder cannot
    be written. A :class:`benchmark.data.DataError`, so every stage CLI reports it as a clear error."""

    def __init__(self, path: Path, reason: str, message: str | None = None) -> None:
        self.path = path
        super().__init__(message or (
            f"results file {path} is unreadable or corrupt ({reason}); it was left untouched - "
            f"repair it or move it aside, then rerun"
        ))


# ---------------------------------------------------------------------------------------------- locations


def _resolve_results_dir(path: str | Path | None) -> Path:
    if path is None or str(path) == "":
        path = os.environ.get(RESULTS_DIR_ENV) or DEFAULT_RESULTS_DIR
    folder = Path(path).expanduser().absolute()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_table(table: str) -> tuple[str, ...]:
    try:
        return RESULT_TABLES[table]
    except (KeyError, TypeError):
        known = ", ".join(sorted(RESULT_TABLES))
        raise ValueError(f"unknown results table {table!r}; known tables: {known}") from None


def results_dir(path: str | Path | None = None) -> Path:
    """The results folder, absolute: *path*, else ``$RESULTS_DIR``, else ``./results``; created if missing."""
    return _resolve_results_dir(path)


def cache_dir(kind: str, results_dir: str | Path | None = None) -> Path:
    """Folder of one cache (``features``, ``images``): ``$SYNTHCXR_CACHE/<kind>`` when set, else
    ``<results dir>/cache/<kind>`` (not created)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().absolute() / kind
    return _resolve_results_dir(results_dir) / "cache" / kind


def table_path(table: str, results_dir: str | Path | None = None) -> Path:
    """Path of the CSV for *table* (``<results_dir>/<table>.csv``); the folder is created, the file is not."""
    _check_table(table)
    return _resolve_results_dir(results_dir) / f"{table}.csv"


def run_dir(run_id: str, results_dir: str | Path | None = None) -> Path:
    """Folder for one run's bulky outputs (predictions, curves, checkpoints): ``<results>/runs/<run_id>/``.

    Created if missing. *run_id* must be a plain folder name (letters, digits, ``._+-``).
    """
    if not isinstance(run_id, str) or not _RUN_ID_OK.fullmatch(run_id) or ".." in run_id:
        raise ValueError(f"run_id {run_id!r} is not usable as a folder name (letters, digits, '._+-')")
    folder = _resolve_results_dir(results_dir) / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------------------------------- value handling


def _cell(value: Any) -> str:
    """One value as the exact text stored in the CSV (NaN/None -> "", floats at repr precision)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, np.floating) and not isinstance(value, np.float64):
        return "" if np.isnan(value) else str(value)  # shortest repr of the float16/32 value
    if isinstance(value, float):
        return "" if math.isnan(value) else float.__repr__(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):  # 0-d array / tensor
        return _cell(value.item())
    return str(value)


@lru_cache(maxsize=65536)
def _key_text(text: str) -> str:
    text = text.strip()
    match = _INT_LIKE.fullmatch(text)
    if match:
        return str(int(match.group(1) + match.group(2)))
    return text


def _key_cell(value: Any) -> str:
    """A key value in canonical form: stripped, integral numbers without a fractional part."""
    return _key_text(_cell(value))


def _describe_key(keys: tuple[str, ...], key: tuple[str, ...]) -> str:
    return ", ".join(f"{col}={val!r}" for col, val in zip(keys, key, strict=True))


def _as_records(table: str, rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        columns = [str(c) for c in rows.columns]
        if len(set(columns)) != len(columns):
            raise ValueError(f"{table}: the DataFrame has duplicate column names: {columns}")
        return [dict(zip(columns, rec, strict=True)) for rec in rows.itertuples(index=False, name=None)]
    if isinstance(rows, (Mapping, str, bytes)):
        raise TypeError(f"{table}: rows must be an iterable of mappings or a DataFrame, not {type(rows)}")
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, (Mapping, pd.Series)):
            raise TypeError(f"{table}: row {i} is a {type(row).__name__}, expected a mapping")
        records.append({str(k): v for k, v in row.items()})
    return records


# --------------------------------------------------------------------------------------------- file I/O


def _read_table(path: Path, keys: tuple[str, ...], table: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an existing results CSV, validated; ``([], [])`` if missing or empty."""
    if not path.exists():
        return [], []
    header: list[str] = []
    rows: list[list[str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            for record in reader:
                if not record:
                    continue  # blank line
                if not header:
                    header = record
                    continue
                if len(record) != len(header):
                    raise ResultsFileError(
                        path, f"line {reader.line_num} has {len(record)} fields, the header has {len(header)}"
                    )
                rows.append(record)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultsFileError(path, f"{type(exc).__name__}: {exc}") from exc
    if not header:
        return [], []
    if any(not col.strip() for col in header):
        raise ResultsFileError(path, f"the header has an empty column name: {header}")
    if len(set(header)) != len(header):
        raise ResultsFileError(path, f"the header repeats a column name: {header}")
    missing = [k for k in keys if k not in header]
    if missing:
        raise ResultsFileError(path, f"not a {table!r} table: the header lacks key column(s) {missing}")
    positions = [header.index(k) for k in keys]
    seen: dict[tuple[str, ...], int] = {}
    for number, record in enumerate(rows, start=2):
        key = tuple(_key_cell(record[p]) for p in positions)
        if key in seen:  # SPEC §4: one row per key; a hand edit made two, and neither is dropped silently
            raise ResultsFileError(path, f"rows on lines {seen[key]} and {number} share the key "
                                         f"({_describe_key(keys, key)}); delete one of them")
        seen[key] = number
    return header, rows


def _remove_stale_temp_files(path: Path) -> None:
    """Temp files of *path* left by writers killed mid-write (older than :data:`STALE_TMP_S`)."""
    now = _dt.datetime.now().timestamp()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        with suppress(OSError):
            if now - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink()


def _acquire(path: Path) -> filelock.FileLock:
    """The table's lock, held (``TimeoutError`` after :data:`LOCK_TIMEOUT_S`); the caller releases it."""
    lock = filelock.FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire(poll_interval=LOCK_POLL_S)
    except filelock.Timeout as exc:
        raise TimeoutError(f"could not lock {path}.lock within {LOCK_TIMEOUT_S:.0f} s") from exc
    return lock


def _write_atomic(path: Path, columns: list[str], rows: Iterable[list[str]]) -> None:
    """Write the CSV to a temp file next to *path*, fsync it, then ``os.replace`` it over *path*."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp_name)
        raise
    with suppress(OSError):  # make the rename durable; best effort (not all platforms allow it)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ----------------------------------------------------------------------------------------------- public


def upsert_rows(
    table: str,
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    *,
    results_dir: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Path:
    """Insert or replace *rows* in ``<results_dir>/<table>.csv`` by their key columns; returns the CSV path.

    Provenance columns (``run_id``, ``timestamp``, ``git_commit``, ``config_hash`` of *config*,
    ``harness_version``, ``version_*``) are filled on every row that does not already set them; one
    *run_id* (given or new) is shared by the whole call.

    Raises ``ValueError`` for an unknown table, a row missing a key column (or with an empty one, except
    ``extra_info``), two rows with the same key in this call, or a corrupt existing file
    (:class:`ResultsFileError`); ``TimeoutError`` if the lock is not obtained within ``LOCK_TIMEOUT_S``.
    Nothing is written when an error is raised.
    """
    keys = _check_table(table)
    records = _as_records(table, rows)
    path = table_path(table, results_dir)
    if not records:
        return path

    prov = provenance(config, run_id)
    new_rows: dict[tuple[str, ...], dict[str, str]] = {}
    first_index: dict[tuple[str, ...], int] = {}
    for i, record in enumerate(records):
        for col in keys:
            if col not in record:
                raise ValueError(f"{table}: row {i} is missing key column {col!r} (keys: {list(keys)})")
        key = tuple(_key_cell(record[col]) for col in keys)
        for col, val in zip(keys, key, strict=True):
            if val == "" and col not in OPTIONAL_KEY_COLUMNS:
                raise ValueError(f"{table}: row {i} has an empty value for key column {col!r}")
        if key in new_rows:
            raise ValueError(
                f"{table}: rows {first_index[key]} and {i} of one write share the key "
                f"({_describe_key(keys, key)}); each key may appear once per call"
            )
        row = {col: val for col, val in zip(keys, key, strict=True)}
        row.update({col: _cell(val) for col, val in record.items() if col not in row})
        for col, val in prov.items():
            if row.get(col, "") == "":
                row[col] = val
        new_rows[key] = row
        first_index[key] = i

    lock = _acquire(path)
    try:
        _remove_stale_temp_files(path)
        header, old_rows = _read_table(path, keys, table)
        columns = list(keys) + [c for c in header if c not in keys]
        seen = set(columns)
        for row in new_rows.values():
            for col in row:
                if col not in seen:
                    seen.add(col)
                    columns.append(col)

        key_pos = [header.index(k) for k in keys] if header else []
        old_pos = [header.index(c) if c in header else -1 for c in columns]  # -1: column new in this call
        placed: set[tuple[str, ...]] = set()
        merged: list[list[str]] = []
        for old in old_rows:
            key = tuple(_key_cell(old[p]) for p in key_pos)
            if key in new_rows:  # replace in place (_read_table refused a file with a key twice)
                placed.add(key)
                merged.append([new_rows[key].get(c, "") for c in columns])
                continue
            merged.append([old[j] if j >= 0 else "" for j in old_pos])
        merged.extend([row.get(c, "") for c in columns] for key, row in new_rows.items() if key not in placed)
        _write_atomic(path, columns, merged)
    finally:
        lock.release()
    from .tracking import log_rows  # after the CSV is safe: a tracking failure loses nothing

    log_rows(table, keys, list(new_rows.values()), path)
    return path


def remove_rows(table: str, match: Mapping[str, Any], *, results_dir: str | Path | None = None,
                backup_dir: str | Path | None = None) -> tuple[int, Path | None]:
    """Delete the rows of *table* whose key columns equal every value of *match* (compared as keys are:
    ``{"model_name": "m", "extra_info": ""}``); returns ``(rows removed, backup path)``.

    Under the table's lock: the file as it was is first copied to ``<backup_dir>/<table>.<timestamp>.csv``
    (default ``<results>/backups``), then the remaining rows are written atomically. No match: nothing is
    written and the backup is ``None``. Raises ``ValueError`` for a column that is not a key of *table*.
    """
    keys = _check_table(table)
    unknown = [c for c in match if c not in keys]
    if unknown:
        raise ValueError(f"{table}: {unknown} not among its key columns {list(keys)}")
    wanted = {c: _key_cell(v) for c, v in match.items()}
    path = table_path(table, results_dir)
    lock = _acquire(path)
    try:
        header, rows = _read_table(path, keys, table)
        if not header:
            return 0, None
        positions = {c: header.index(c) for c in wanted}
        keep = [r for r in rows if not all(_key_text(r[positions[c]]) == v for c, v in wanted.items())]
        removed = len(rows) - len(keep)
        if removed == 0:
            return 0, None
        folder = Path(backup_dir) if backup_dir is not None else path.parent / "backups"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        backup = folder / f"{table}.{stamp}.csv"
        _write_atomic(backup, header, rows)
        _write_atomic(path, header, keep)
    finally:
        lock.release()
    return removed, backup


def check_writable(table: str, results_dir: str | Path | None = None) -> Path:
    """Before a stage computes anything: the results folder exists (or can be made) and takes a new file, its lock
    can be taken, and an existing ``<table>.csv`` parses as that table with each key once. Returns the CSV path.

    Raises :class:`ResultsFileError` (a ``ValueError``) naming the folder or file, so a full disk, a read-only
    folder or a corrupt CSV stops the run in seconds rather than after hours of compute.
    """
    keys = _check_table(table)
    try:
        path = table_path(table, results_dir)
        fd, probe = tempfile.mkstemp(prefix=f".{table}.", suffix=".probe", dir=path.parent)
        try:
            os.write(fd, b"x" * 4096)  # a full disk refuses even this
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        folder = Path(results_dir or os.environ.get(RESULTS_DIR_ENV) or DEFAULT_RESULTS_DIR)
        raise ResultsFileError(folder, "not writable", f"results folder {folder.absolute()} cannot be written "
                               f"({exc.strerror or exc}); free space or fix its permissions, or give another "
                               "--results-dir / RESULTS_DIR") from exc
    lock = filelock.FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S)
    try:
        with lock.acquire(poll_interval=LOCK_POLL_S):
            _read_table(path, keys, table)
    except filelock.Timeout as exc:
        raise TimeoutError(f"could not lock {path}.lock within {LOCK_TIMEOUT_S:.0f} s") from exc
    except OSError as exc:
        raise ResultsFileError(path, "no lock", f"results file {path}: its lock file cannot be made "
                               f"({exc.strerror or exc})") from exc
    return path


def write_run_rows(table: str, rows: pd.DataFrame | list[dict[str, Any]], run_folder: Path, *,
                   results_dir: str | Path | None = None, config: Mapping[str, Any] | None = None,
                   run_id: str | None = None, copy_name: str = "metrics.csv") -> Path:
    """The run's own copy first (``<run_folder>/<copy_name>``), then the shared table (:func:`upsert_rows`).

    If the shared write fails (full disk, lost permissions, a CSV corrupted meanwhile) nothing computed is lost: the
    error names the run's copy, which holds every row. Returns the shared CSV's path.
    """
    copy = Path(run_folder) / copy_name
    (rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)).to_csv(copy, index=False)
    try:
        return upsert_rows(table, rows, results_dir=results_dir, config=config, run_id=run_id)
    except (OSError, TimeoutError, ResultsFileError) as exc:
        raise ResultsFileError(table_path(table, results_dir), str(exc), f"{exc}\nThe run's rows are safe in "
                               f"{copy}; once the results folder is fixed, rerun (finished work is reused where "
                               "the stage supports it) or merge that file by hand") from exc


def read_results(table: str, results_dir: str | Path | None = None) -> pd.DataFrame:
    """The whole *table* as a DataFrame of strings, values exactly as stored ("" for empty, never NaN).

    A missing table gives an empty frame with the key columns. Raises :class:`ResultsFileError` for a
    corrupt file and ``ValueError`` for an unknown table.
    """
    keys = _check_table(table)
    path = table_path(table, results_dir)
    header, rows = _read_table(path, keys, table)
    if not header:
        return pd.DataFrame({col: pd.Series([], dtype=str) for col in keys})
    return pd.DataFrame(rows, columns=header, dtype=str)
