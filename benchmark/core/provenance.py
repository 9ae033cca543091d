"""Provenance of a result row: which code, configuration, packages and run produced a figure.

Owns the provenance columns that :mod:`benchmark.core.results` stamps on every row (``PROVENANCE_COLUMNS``):
run id, UTC timestamp, git commit of the harness checkout, a short hash of the run configuration, the
harness version, the lock file the environment was installed from (``env_lock``) and the versions of the
packages that shape the numbers. Nothing here imports the heavy packages themselves; versions come from
installed distribution metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import enum
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import secrets
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any

from benchmark import __version__

#: distribution name -> column name; ``version_python`` is added separately.
TRACKED_PACKAGES: dict[str, str] = {
    "torch": "version_torch",
    "torchxrayvision": "version_torchxrayvision",
    "diffusers": "version_diffusers",
    "transformers": "version_transformers",
    "torchmetrics": "version_torchmetrics",
}
VERSION_COLUMNS: tuple[str, ...] = (*TRACKED_PACKAGES.values(), "version_python")
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "run_id",
    "timestamp",
    "git_commit",
    "config_hash",
    "harness_version",
    "env_lock",
    *VERSION_COLUMNS,
)
NOT_INSTALLED = "not installed"
UNLOCKED = "unlocked"
#: written by scripts/setup.sh into the environment: the sha256 of the requirements.lock it installed
LOCK_STAMP = ".lock.sha256"
UNKNOWN_COMMIT = "unknown"
GIT_TIMEOUT_S = 5.0

_HARNESS_ROOT = Path(__file__).resolve().parents[2]


def _git(args: list[str], cwd: Path) -> str | None:
    """Run ``git <args>`` in *cwd*; stdout stripped, or None on any failure (no git, timeout, error)."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")  # never take index.lock from a reader
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(repo_dir: str | Path | None = None) -> str:
    """Commit hash of the git checkout containing *repo_dir* (default: the harness's own checkout).

    Returns the full 40-hex hash, with ``+dirty`` appended when tracked files differ from HEAD
    (untracked files are ignored), or ``"unknown"`` when *repo_dir* is not in a git checkout with a
    commit, git is missing, or git does not answer within ``GIT_TIMEOUT_S``. Never raises.
    """
    cwd = Path(repo_dir) if repo_dir is not None else _HARNESS_ROOT
    if not cwd.is_dir():
        return UNKNOWN_COMMIT
    sha = _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd)
    if not sha:
        return UNKNOWN_COMMIT
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return f"{sha}+dirty" if status else sha


@lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str], ...]:
    out = []
    for dist, column in TRACKED_PACKAGES.items():
        try:
            out.append((column, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            out.append((column, NOT_INSTALLED))
    out.append(("version_python", platform.python_version()))
    return tuple(out)


def package_versions() -> dict[str, str]:
    """Installed versions of the tracked packages, keyed by column (``version_torch``, ...).

    Read from distribution metadata (the packages are not imported); a missing one is ``"not installed"``.
    Cached per process.
    """
    return dict(_package_versions())


def _locked_versions(lock_text: str) -> dict[str, str]:
    """``name -> version`` of the lock's entries that apply to this interpreter and platform (markers evaluated)."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name

    out: dict[str, str] = {}
    for line in lock_text.splitlines():
        if not line or line[0] in " #-":
            continue
        spec, _, marker = line.rstrip(" \\").partition(";")
        name, sep, version = spec.strip().partition("==")
        if not sep:
            continue
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        out[canonicalize_name(name)] = version.strip()
    return out


@lru_cache(maxsize=4)
def environment_lock(prefix: str | None = None, lock_path: str | None = None) -> str:
    """Which lock the running environment was installed from: the first 12 hex of its sha256.

    ``scripts/setup.sh`` writes the sha256 of the ``requirements.lock`` it installed into ``<prefix>/.lock.sha256``
    (``prefix`` defaults to ``sys.prefix``). The value is that hash when the checkout's lock (``lock_path``, default
    the harness checkout's ``requirements.lock``) has that hash and every
    package it lists for this platform is installed at the locked version; ``<hash>+modified`` when a package was
    changed since (e.g. a later ``pip install``); ``<hash>+other-lock`` when the checkout's lock is another one;
    ``unlocked`` for an environment not made by setup.sh. Two rows with the same value were computed with the same
    packages. Never raises.
    """
    import sys

    stamp = Path(prefix or sys.prefix) / LOCK_STAMP
    try:
        want = stamp.read_text().strip()
    except OSError:
        return UNLOCKED
    if not want:
        return UNLOCKED
    short = want[:12]
    lock = Path(lock_path) if lock_path else _HARNESS_ROOT / "requirements.lock"
    try:
        text = lock.read_bytes()
    except OSError:
        return f"{short}+other-lock"
    if hashlib.sha256(text).hexdigest() != want:
        return f"{short}+other-lock"
    try:
        for name, version in _locked_versions(text.decode("utf-8")).items():
            if importlib.metadata.version(name) != version:
                return f"{short}+modified"
    except (importlib.metadata.PackageNotFoundError, ValueError, ImportError):
        return f"{short}+modified"
    return short


def _canonical(obj: Any) -> Any:
    """Turn *obj* into plain JSON data whose serialisation does not depend on dict or set order."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return _canonical(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else repr(float(obj))
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [_canonical(v) for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.hex()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(dataclasses.asdict(obj))
    if isinstance(obj, argparse.Namespace):
        return _canonical(vars(obj))
    # numpy scalars / arrays and 0-d tensors, without importing numpy or torch
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return _canonical(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        return _canonical(obj.item())
    raise TypeError(f"config_hash: cannot canonicalise a value of type {type(obj).__name__}: {obj!r}")


def config_hash(config: Mapping[str, Any]) -> str:
    """First 12 hex chars of the sha256 of *config* as canonical JSON (sorted keys, compact separators).

    Independent of dict order; ``Path`` becomes its posix string, tuples become lists, numpy scalars and
    arrays their Python values, sets are sorted. Raises ``TypeError`` for values it cannot represent
    faithfully (rather than hashing an unstable ``repr``).
    """
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def new_run_id(prefix: str = "") -> str:
    """A new run id: ``[prefix-]YYYYMMDDTHHMMSSZ-xxxxxx`` (UTC time, 6 random hex chars).

    Ids sort by start time and are unique across processes (random suffix); they are safe as folder names.
    """
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{secrets.token_hex(3)}"
    if prefix:
        sep = "" if prefix.endswith(("-", "_", ".")) else "-"
        run_id = f"{prefix}{sep}{run_id}"
    return run_id


def utc_timestamp() -> str:
    """Current UTC time as ISO-8601 with seconds, e.g. ``2026-11-22T05:38:00+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(config: Mapping[str, Any] | None = None, run_id: str | None = None) -> dict[str, str]:
    """All provenance columns for a result written now, in ``PROVENANCE_COLUMNS`` order.

    *run_id* defaults to a fresh :func:`new_run_id`; ``config_hash`` is ``""`` when no *config* is given.
    """
    return {
        "run_id": run_id or new_run_id(),
        "timestamp": utc_timestamp(),
        "git_commit": git_commit(),
        "config_hash": config_hash(config) if config is not None else "",
        "harness_version": __version__,
        "env_lock": environment_lock(),
        **package_versions(),
    }
