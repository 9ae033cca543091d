"""What makes a stage skippable: the fingerprint of its inputs (:class:`Stage` ``.material``: resolved command,
content hash or size + mtime of the inputs it names, environment defaults, config ``env``), the done-record it leaves
(the marker ``<work_dir>/run_all/<stage>.json`` and the result rows it wrote) and the run-or-skip decision read from
both (:class:`SkipEngine`, which :class:`~benchmark.pipeline.runner.Runner` extends).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.pipeline.config import REPO_ROOT, RunConfig

#: variables the stage scripts read as defaults and run_all does not pass as flags: part of every fingerprint.
PASSED_ENV = ("CLASSES", "IMAGE_ROOT", "BATCH_SIZE", "NUM_WORKERS", "SEED")
SMALL_FILE = 16 * 2**20  # files up to this size are fingerprinted by content, larger ones by size and mtime
MAX_LISTED = 1000  # a folder input with more entries is fingerprinted by its entry count and mtime
RESULT_IDENTITY = ("run_id", "timestamp")


class StageError(RuntimeError):
    """A stage's inputs or outputs are not what the run needs (the message says which)."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: Path) -> str:
    """Content hash of a small file, size and mtime of a large one."""
    stat = path.stat()
    if stat.st_size <= SMALL_FILE:
        return "sha256:" + _sha256_file(path)
    return f"size:{stat.st_size}/mtime:{stat.st_mtime_ns}"


def path_fingerprint(path: Path) -> Any:
    """What a stage input looks like now: a file's fingerprint; for a folder the size and mtime of each top-level
    entry (only the entry count and the folder's mtime beyond ``MAX_LISTED`` entries, e.g. a flat image folder);
    ``missing`` when absent."""
    if path.is_file():
        return file_fingerprint(path)
    if not path.is_dir():
        return "missing"
    entries = sorted((e for e in os.scandir(path) if not e.name.startswith(".")), key=lambda e: e.name)
    if len(entries) > MAX_LISTED:
        return {"entries": len(entries), "mtime": path.stat().st_mtime_ns}
    listing = {}
    for entry in entries:
        stat = entry.stat()
        if entry.is_dir():
            listing[entry.name + "/"] = f"mtime:{stat.st_mtime_ns}"
        else:
            listing[entry.name] = f"size:{stat.st_size}/mtime:{stat.st_mtime_ns}"
    return listing


def fingerprint(material: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


def command_options(command: Sequence[str]) -> dict[str, list[str]]:
    """A command's words as ``{flag: [values]}`` (a bare flag has ``[""]``; positional words are ``#1``, ...)."""
    options: dict[str, list[str]] = {}
    words, position, i = list(command), 0, 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            flag, sep, value = word.partition("=")
            if not sep and i + 1 < len(words) and not words[i + 1].startswith("--"):
                value, i = words[i + 1], i + 1
            options.setdefault(flag, []).append(value)
        else:
            position += 1
            options[f"#{position}"] = [word]
        i += 1
    return options


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Which part of a stage's fingerprint material changed, in words (``--epochs 1 -> 2``, ``split.csv``)."""
    changes = []
    before, after = command_options(old.get("command", [])), command_options(new.get("command", []))
    for flag in [*before, *(f for f in after if f not in before)]:
        if flag not in after:
            changes.append(f"{flag} removed")
        elif flag not in before:
            changes.append(f"{flag} {' '.join(after[flag])} added".replace("  ", " "))
        elif before[flag] != after[flag]:
            changes.append(f"{flag} {' '.join(before[flag])} -> {' '.join(after[flag])}")
    for part in ("inputs", "env"):
        was, now = old.get(part, {}), new.get(part, {})
        changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        changes += [f"{Path(k).name if part == 'inputs' else k} changed" for k in changed]
    if len(changes) > 4:
        changes = [*changes[:4], f"{len(changes) - 4} more"]
    return ", ".join(changes) or "fingerprint"


@dataclass
class Decision:
    run: bool
    why: str
    previous: dict[str, Any] | None = None  # the marker's fingerprint material, when the stage changed since


@dataclass
class Stage:
    """One stage of a run: its command, what it reads and writes, and how to tell it is complete."""

    name: str
    command: list[str]
    outputs: list[Path]
    extra_inputs: list[Path] = field(default_factory=list)
    tables: tuple[str, ...] = ()
    given: bool = False
    check_outputs: Callable[[], str] | None = None

    def material(self, config: RunConfig, env: dict[str, str]) -> dict[str, Any]:
        """What the stage's fingerprint covers: command, inputs named on it, environment defaults, config env."""
        outputs = {str(p) for p in self.outputs}
        candidates = [Path(w) for w in self.command[1:] if os.sep in w and not w.startswith("-")]
        inputs = {}
        for path in [*candidates, *self.extra_inputs]:
            absolute = path.absolute()
            if str(absolute) in outputs or not (absolute.exists() or path in self.extra_inputs):
                continue
            inputs[str(absolute)] = path_fingerprint(absolute)
        relative_command = [str(Path(self.command[0]).relative_to(REPO_ROOT)), *self.command[1:]]
        return {"command": relative_command, "inputs": inputs,
                "env": {k: env[k] for k in PASSED_ENV if k in env} | {f"config:{k}": v for k, v in config.env.items()}}


class SkipEngine:
    """Reads the done-records a run left and decides whether a stage runs again (see the module docstring).
    :class:`~benchmark.pipeline.runner.Runner` is one; it sets ``config``, ``env`` and ``force``."""

    config: RunConfig
    env: dict[str, str]
    force: set[str]

    # -- markers and result rows

    def marker_path(self, name: str) -> Path:
        return self.config.marker_dir / f"{name}.json"

    def read_marker(self, name: str) -> dict[str, Any] | None:
        path = self.marker_path(name)
        if not path.is_file():
            return None
        try:
            marker = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        return marker if isinstance(marker, dict) else None

    def _rows(self, table: str) -> set[tuple[str, ...]]:
        """Identities (key columns, run_id, timestamp) of this model's rows in ``table``."""
        from benchmark.core.results import RESULT_TABLES, ResultsFileError, read_results, table_path
        from benchmark.utility.test_labels import unkeyed_extra_info

        path = table_path(table, self.config.results_dir)
        if not path.is_file():
            return set()
        try:
            frame = read_results(table, self.config.results_dir)
        except ResultsFileError as exc:
            raise StageError(str(exc)) from exc
        if frame.empty:
            return set()
        mine = frame[(frame["model_name"].str.strip() == self.config.model_name.strip())
                     & (frame["extra_info"].map(unkeyed_extra_info).str.strip()
                        == self.config.extra_info.strip())]
        columns = [*RESULT_TABLES[table], *[c for c in RESULT_IDENTITY if c in frame.columns]]
        return {tuple(row) for row in mine[columns].itertuples(index=False, name=None)}

    def _check_rows(self, stage: Stage, marker: dict[str, Any]) -> str:
        recorded = marker.get("rows") or {}
        total = 0
        for table in stage.tables:
            rows = {tuple(r) for r in recorded.get(table, [])}
            if not rows:
                raise StageError(f"the marker records no rows of {table}")
            missing = rows - self._rows(table)
            if missing:
                raise StageError(f"{len(missing)} of {len(rows)} rows it wrote to {table}.csv are missing or were "
                                 "overwritten since")
            total += len(rows)
        return f"{total} rows in {', '.join(t + '.csv' for t in stage.tables)}"

    # -- decisions

    def decide(self, stage: Stage) -> Decision:
        if stage.given:
            return Decision(False, f"given ({stage.check_outputs()})")
        if stage.name in self.force or "all" in self.force:
            return Decision(True, "forced (--force)")
        marker = self.read_marker(stage.name)
        if marker is None:
            return Decision(True, f"no marker {self.marker_path(stage.name)} (not run by run_all yet)")
        material = stage.material(self.config, self.env)
        if marker.get("fingerprint") != fingerprint(material):
            previous = marker.get("material") or {}
            return Decision(True, f"changed since the last run: {describe_change(previous, material)}", previous)
        try:
            why = stage.check_outputs() if stage.check_outputs else self._check_rows(stage, marker)
        except StageError as exc:
            return Decision(True, f"outputs incomplete: {exc}")
        return Decision(False, f"complete ({why}; fingerprint {marker['fingerprint']} matches)")
