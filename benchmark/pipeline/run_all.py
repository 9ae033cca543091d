"""``./scripts/run_all.sh``: one model through splits -> generation -> image quality -> utility -> privacy -> report.

The whole pipeline comes from one YAML file (``--config FILE``; with no file and neither ``REAL_CSV`` nor
``SYNTHETIC_DIR`` set, ``configs/demo.yaml``) and/or the environment. Each stage runs as a subprocess of its own
script in ``scripts/`` - exactly the command a user would type, printed before it runs - with its output streamed.
A failing stage stops the run with that stage's exit status; later stages do not run.

Stages whose outputs are complete are skipped:

* ``splits``: the split CSV and its ``<csv>.json`` sidecar exist and parse, and the stage's marker matches;
* ``generation``: the synthetic set reads back, its manifest says complete with every planned image, and the
  marker matches;
* ``image_quality`` / ``utility`` / ``privacy``: every result row the stage wrote last time (key, ``run_id``,
  ``timestamp``) is still in the results CSV, and the marker matches;
* ``report``: ``report.md`` and ``report.html`` exist, and the marker matches (its fingerprint covers the results
  CSVs, so new rows from any run re-render it).

The marker ``<work_dir>/run_all/<stage>.json`` records a fingerprint of the stage's resolved command, the inputs it
names (content hash of files up to 16 MiB, else size + mtime; size + mtime of a folder's top-level entries), the
environment variables the scripts read as defaults, and the config's ``env``. A changed setting, a rebuilt upstream
output, or deleted result rows rerun the stage (the run says which flag or input changed); an unchanged config
skips it; ``--force`` reruns it anyway. Before generating with changed settings into a folder that run_all's
previous generation filled, that set is moved aside to ``<out>.replaced-<time>`` (``generate.sh`` refuses to
continue a set made with other settings). A split CSV or synthetic set *given* in the config (``splits.csv``,
``generation.synthetic``) is only checked, never built.

Config file (every key optional unless said; unknown keys are errors)::

    model_name: NAME                 # required (env MODEL_NAME): the results rows' model_name
    extra_info: TEXT                 # env EXTRA_INFO; default ""
    results_dir: DIR                 # env RESULTS_DIR; default results
    work_dir: DIR                    # env SYNTHCXR_WORK_DIR; default work/<model_name>: markers, built models
    env: {VAR: value}                # extra environment for every stage (e.g. NUM_WORKERS, SEED)
    splits:      {enabled, csv: CSV (existing split; env REAL_CSV) | builder: padchest|chexgenbench|csv|folder|demo,
                  out: CSV, args}
    generation:  {enabled, synthetic: DIR (existing set; env SYNTHETIC_DIR) | model: M | images: FOLDER,
                  split: test, out: DIR, num_processes (env NUM_PROCESSES), args}
    image_quality: {enabled, features: xrv, weights: W, per_class: false, args}
    utility:     {enabled, stage: pretrained|retrained|all, classifier: KEY (env CLASSIFIER), args}
    privacy:     {enabled (default false), reid_model: PATH | reid_train: true, alignment_model: NAME_OR_DIR,
                  args}              # ./scripts/privacy_metrics.sh; needs a re-id and/or an alignment model
    report:      {enabled, out: DIR (default <results_dir>/report), args}

``args`` are the stage script's other flags, as a mapping (``{steps: 5, per-class: true}`` -> ``--steps 5
--per-class``; ``false`` / null leave a flag out; a list repeats it) or as a list of words. Relative paths are
relative to the current directory. ``builtin:demo-classifier`` (the demo's DenseNet-121, trained on a phantom
population disjoint from the demo data and cached under ``assets/cache``; trained on first use) may stand for
``utility.classifier`` and ``image_quality.weights``; ``builtin:tiny-ddpm`` (a tiny untrained class-conditional
DDPM at 32 px, built into ``<work_dir>/models/``) for ``generation.model``.

Precedence: ``--set``, ``--results-dir`` and ``--work-dir`` flags > the config file > environment variables >
defaults. ``CLASSES``, ``IMAGE_ROOT``, ``BATCH_SIZE``, ``NUM_WORKERS`` and ``SEED`` are not read here: the stage
scripts read them themselves (and they are part of every fingerprint).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
STAGES = ("splits", "generation", "image_quality", "utility", "privacy", "report")
# Result tables its stages write.
RUN_ALL_TABLES = ("image_quality_metrics", "utility_pretrained", "utility_retrained", "privacy_metrics",
                  "alignment_metrics")
SPLIT_BUILDERS = ("padchest", "chexgenbench", "csv", "folder", "demo")
UTILITY_STAGES = ("pretrained", "retrained", "all")
FEATURES = ("xrv", "inception", "raddino")
BUILTIN_CLASSIFIER = "builtin:demo-classifier"
BUILTIN_DDPM = "builtin:tiny-ddpm"
BUILTIN_DDPM_SIZE = 32
#: variables the stage scripts read as defaults and run_all does not pass as flags: part of every fingerprint.
PASSED_ENV = ("CLASSES", "IMAGE_ROOT", "BATCH_SIZE", "NUM_WORKERS", "SEED")
SMALL_FILE = 16 * 2**20  # files up to this size are fingerprinted by content, larger ones by size and mtime
MAX_LISTED = 1000  # a folder input with more entries is fingerprinted by its entry count and mtime
MARKER_DIR = "run_all"
RESULT_IDENTITY = ("run_id", "timestamp")


class ConfigError(ValueError):
    """The config file, an override or the environment does not describe a valid run."""


class StageError(RuntimeError):
    """A stage's inputs or outputs are not what the run needs (the message says which)."""


# ---------------------------------------------------------------------------------------------- config


@dataclass
class SplitsStage:
    """Where the real split comes from: an existing ``csv``, or ``builder`` + ``args`` writing ``out``."""

    enabled: bool = True
    csv: str | None = None
    builder: str | None = None
    out: str | None = None
    args: dict[str, Any] | list[str] = field(default_factory=dict)


@dataclass
class GenerationStage:
    """Where the synthetic set comes from: an existing set, a diffusers ``model``, or a PNG folder (``images``)."""

    enabled: bool = True
    synthetic: str | None = None
    model: str | None = None
    images: str | None = None
    split: str | None = "test"
    out: str | None = None
    num_processes: int | None = None
    args: dict[str, Any] | list[str] = field(default_factory=dict)


@dataclass
class ImageQualityStage:
    enabled: bool = True
    features: str = "xrv"
    weights: str | None = None
    per_class: bool = False
    args: dict[str, Any] | list[str] = field(default_factory=dict)


@dataclass
class UtilityStage:
    enabled: bool = True
    stage: str = "pretrained"
    classifier: str | None = None
    args: dict[str, Any] | list[str] = field(default_factory=dict)


@dataclass
class PrivacyStage:
    """Patient re-identification (``reid_model`` or ``reid_train``) and/or text-image alignment
    (``alignment_model``); off unless enabled, since it needs models of its own."""

    enabled: bool = False
    reid_model: str | None = None
    reid_train: bool = False
    alignment_model: str | None = None
    args: dict[str, Any] | list[str] = field(default_factory=dict)

    @property
    def tables(self) -> tuple[str, ...]:
        return ((("privacy_metrics",) if self.reid_model or self.reid_train else ())
                + (("alignment_metrics",) if self.alignment_model else ()))


@dataclass
class ReportStage:
    enabled: bool = True
    out: str | None = None
    args: dict[str, Any] | list[str] = field(default_factory=dict)


@dataclass
class RunConfig:
    """A whole run, every path absolute and every default filled in (see the module docstring)."""

    model_name: str
    results_dir: Path
    work_dir: Path
    extra_info: str = ""
    env: dict[str, str] = field(default_factory=dict)
    splits: SplitsStage = field(default_factory=SplitsStage)
    generation: GenerationStage = field(default_factory=GenerationStage)
    image_quality: ImageQualityStage = field(default_factory=ImageQualityStage)
    utility: UtilityStage = field(default_factory=UtilityStage)
    privacy: PrivacyStage = field(default_factory=PrivacyStage)
    report: ReportStage = field(default_factory=ReportStage)
    source: str = "environment"

    @property
    def real_csv(self) -> Path:
        return Path(self.splits.csv or self.splits.out or "")

    @property
    def synthetic_dir(self) -> Path:
        return Path(self.generation.synthetic or self.generation.out or "")

    @property
    def marker_dir(self) -> Path:
        return self.work_dir / MARKER_DIR


SECTIONS: dict[str, type] = {"splits": SplitsStage, "generation": GenerationStage,
                             "image_quality": ImageQualityStage, "utility": UtilityStage, "privacy": PrivacyStage,
                             "report": ReportStage}
TOP_LEVEL = ("model_name", "extra_info", "results_dir", "work_dir", "env", *SECTIONS)
#: flags run_all sets itself for each stage; giving them in ``args`` is an error naming the config field instead.
RESERVED = {
    "splits": {"--out": "splits.out", "--out-dir": "splits.out"},
    "generation": {"--model": "generation.model", "--prompts": "splits", "--split": "generation.split",
                   "--out": "generation.out", "--num-processes": "generation.num_processes",
                   "--images": "generation.images", "--model-name": "model_name"},
    "image_quality": {"--real": "splits", "--synthetic": "generation", "--model-name": "model_name",
                      "--extra-info": "extra_info", "--results-dir": "results_dir",
                      "--features": "image_quality.features", "--weights": "image_quality.weights",
                      "--per-class": "image_quality.per_class"},
    "utility": {"--real": "splits", "--synthetic": "generation", "--model-name": "model_name",
                "--extra-info": "extra_info", "--results-dir": "results_dir", "--stage": "utility.stage",
                "--classifier": "utility.classifier"},
    "privacy": {"--real": "splits", "--synthetic": "generation", "--model-name": "model_name",
                "--extra-info": "extra_info", "--results-dir": "results_dir", "--reid-model": "privacy.reid_model",
                "--reid-train": "privacy.reid_train", "--alignment-model": "privacy.alignment_model"},
    "report": {"--results-dir": "results_dir", "--out": "report.out"},
}


def _abs(path: str | Path | None) -> str | None:
    """Absolute form of a path from the config (relative to the current directory); builtins and None pass."""
    if path is None or str(path).startswith("builtin:"):
        return None if path is None else str(path)
    return str(Path(path).expanduser().absolute())


def _maybe_path(value: str | None) -> str | None:
    """A model / classifier / weights reference: made absolute when it names something on disk, else kept (a hub
    id or an xrv weights key)."""
    if value is None or value.startswith("builtin:"):
        return value
    path = Path(value).expanduser()
    return str(path.absolute()) if path.exists() or value.startswith((".", "/", "~")) else value


def _section(raw: Any, name: str, cls: type) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{name}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    values = {}
    for key, value in raw.items():
        if key == "enabled" and not isinstance(value, bool):
            raise ConfigError(f"{name}.enabled: expected true or false, got {value!r}")
        if key in ("per_class", "reid_train") and not isinstance(value, bool):
            raise ConfigError(f"{name}.{key}: expected true or false, got {value!r}")
        if key == "args":
            if value is None:
                value = {}
            if not isinstance(value, dict | list):
                raise ConfigError(f"{name}.args: expected a mapping of flags or a list of words")
        elif key == "num_processes":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}.num_processes: expected a positive integer, got {value!r}")
        elif key not in ("enabled", "per_class", "reid_train") and value is not None:
            if isinstance(value, dict | list):
                raise ConfigError(f"{name}.{key}: expected a single value, got {type(value).__name__}")
            value = str(value)
        values[key] = value
    return cls(**values)


def args_to_argv(args: dict[str, Any] | list[str], where: str = "args") -> list[str]:
    """A stage's ``args`` as command-line words: ``{steps: 5, per_class: true, x: false}`` -> ``--steps 5
    --per-class``; a list value repeats the flag; a list of words is used as it is."""
    if isinstance(args, list):
        return [str(word) for word in args]
    argv: list[str] = []
    for key, value in args.items():
        flag = key if str(key).startswith("-") else "--" + str(key).replace("_", "-")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is None or item is False:
                continue
            if item is True:
                argv.append(flag)
            elif isinstance(item, dict):
                raise ConfigError(f"{where}: {key}: expected a value or a list of values, got a mapping")
            else:
                argv += [flag, str(item)]
    return argv


def set_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``--set a.b.c=value`` (value parsed as YAML) to the raw config mapping."""
    path, sep, text = assignment.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. utility.args.epochs=2")
    keys = path.strip().split(".")
    target = raw
    for key in keys[:-1]:
        if target.get(key) is None:
            target[key] = {}
        if not isinstance(target[key], dict):
            raise ConfigError(f"--set {assignment!r}: {key} is not a mapping")
        target = target[key]
    try:
        target[keys[-1]] = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML ({exc})") from exc


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML config file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def build_config(raw: dict[str, Any], env: dict[str, str] | None = None, source: str = "environment",
                 results_dir: str | None = None, work_dir: str | None = None) -> RunConfig:
    """Validate a raw config mapping, fill what it leaves out from ``env`` and defaults, make paths absolute."""
    env = dict(os.environ if env is None else env)
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (known: {', '.join(TOP_LEVEL)})")
    model_name = raw.get("model_name") or env.get("MODEL_NAME")
    if not model_name:
        raise ConfigError("model_name: not set (give model_name in the config, or MODEL_NAME)")
    extra_info = raw.get("extra_info")
    extra_info = env.get("EXTRA_INFO", "") if extra_info is None else extra_info
    extra_env = raw.get("env") or {}
    if not isinstance(extra_env, dict):
        raise ConfigError("env: expected a mapping of environment variables")
    sections = {name: _section(raw.get(name), name, cls) for name, cls in SECTIONS.items()}
    results = results_dir or raw.get("results_dir") or env.get("RESULTS_DIR") or "results"
    work = work_dir or raw.get("work_dir") or env.get("SYNTHCXR_WORK_DIR") or f"work/{model_name}"
    config = RunConfig(model_name=str(model_name), extra_info=str(extra_info), results_dir=Path(_abs(results)),
                       work_dir=Path(_abs(work)), source=source, **sections,
                       env={str(k): "" if v is None else str(v) for k, v in extra_env.items()})
    _fill_splits(config.splits, config, env)
    _fill_generation(config.generation, config, env)
    _fill_metrics(config, env)
    return config


def _fill_splits(splits: SplitsStage, config: RunConfig, env: dict[str, str]) -> None:
    if splits.csv and splits.builder:
        raise ConfigError("splits: give either csv (an existing split) or builder (to build one), not both")
    if not splits.csv and not splits.builder:
        splits.csv = env.get("REAL_CSV")
        if not splits.csv:
            raise ConfigError("splits: give csv (an existing split CSV, or REAL_CSV) or builder "
                              f"({'|'.join(SPLIT_BUILDERS)})")
    if splits.builder:
        if splits.builder not in SPLIT_BUILDERS:
            raise ConfigError(f"splits.builder: {splits.builder!r} is not one of {', '.join(SPLIT_BUILDERS)}")
        default = config.work_dir / ("real/split.csv" if splits.builder == "demo" else "split.csv")
        splits.out = _abs(splits.out or default)
        if splits.builder == "demo" and Path(splits.out).name != "split.csv":
            raise ConfigError(f"splits.out: the demo builder writes <folder>/split.csv; got {splits.out}")
        _check_reserved("splits", splits.args)
    else:
        splits.csv = _abs(splits.csv)
        if splits.out or splits.args:
            raise ConfigError("splits: out and args belong to a builder; an existing split (csv) takes neither")


def _fill_generation(generation: GenerationStage, config: RunConfig, env: dict[str, str]) -> None:
    given = [k for k in ("synthetic", "model", "images") if getattr(generation, k)]
    if len(given) > 1:
        raise ConfigError(f"generation: give one of synthetic, model, images (got {', '.join(given)})")
    if not given:
        generation.synthetic = env.get("SYNTHETIC_DIR")
        if not generation.synthetic:
            raise ConfigError("generation: give synthetic (an existing set, or SYNTHETIC_DIR), model (a diffusers "
                              f"model, or {BUILTIN_DDPM}) or images (a PNG folder to register)")
    if generation.synthetic:
        generation.synthetic = _abs(generation.synthetic)
        if generation.out or generation.args:
            raise ConfigError("generation: out and args belong to model / images; an existing set takes neither")
        return
    if generation.model and generation.model.startswith("builtin:") and generation.model != BUILTIN_DDPM:
        raise ConfigError(f"generation.model: unknown builtin {generation.model!r} (known: {BUILTIN_DDPM})")
    generation.model = _maybe_path(generation.model)
    generation.images = _abs(generation.images)
    generation.out = _abs(generation.out or config.work_dir / "synthetic")
    if generation.num_processes is None:
        text = env.get("NUM_PROCESSES") or "1"
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"NUM_PROCESSES={text!r}: expected a positive integer")
        generation.num_processes = int(text)
    _check_reserved("generation", generation.args)


def _fill_metrics(config: RunConfig, env: dict[str, str]) -> None:
    quality, utility = config.image_quality, config.utility
    if quality.features not in FEATURES:
        raise ConfigError(f"image_quality.features: {quality.features!r} is not one of {', '.join(FEATURES)}")
    if utility.stage not in UTILITY_STAGES:
        raise ConfigError(f"utility.stage: {utility.stage!r} is not one of {', '.join(UTILITY_STAGES)}")
    utility.classifier = utility.classifier or env.get("CLASSIFIER")
    for name, value in (("image_quality.weights", quality.weights), ("utility.classifier", utility.classifier)):
        if value and value.startswith("builtin:") and value != BUILTIN_CLASSIFIER:
            raise ConfigError(f"{name}: unknown builtin {value!r} (known: {BUILTIN_CLASSIFIER})")
    quality.weights = _maybe_path(quality.weights)
    utility.classifier = _maybe_path(utility.classifier)
    privacy = config.privacy
    if privacy.reid_model and privacy.reid_train:
        raise ConfigError("privacy: give either reid_model (a checkpoint) or reid_train: true, not both")
    if privacy.enabled and not privacy.tables:
        raise ConfigError("privacy: enabled, but nothing to do: give reid_model, reid_train: true and/or "
                          "alignment_model")
    privacy.reid_model = _abs(privacy.reid_model)
    privacy.alignment_model = _maybe_path(privacy.alignment_model)
    config.report.out = _abs(config.report.out or config.results_dir / "report")
    for stage in ("image_quality", "utility", "privacy", "report"):
        _check_reserved(stage, getattr(config, stage).args)


def _check_reserved(stage: str, args: dict[str, Any] | list[str]) -> None:
    for word in args_to_argv(args, f"{stage}.args"):
        flag = word.split("=", 1)[0]
        if flag in RESERVED[stage]:
            raise ConfigError(f"{stage}.args: {flag} is set by run_all from {RESERVED[stage][flag]}; set that "
                              "instead")


def load_config(config_path: str | None, overrides: Sequence[str] = (), results_dir: str | None = None,
                work_dir: str | None = None, env: dict[str, str] | None = None) -> RunConfig:
    """The run's config: the file (default: ``configs/demo.yaml`` unless ``REAL_CSV`` or ``SYNTHETIC_DIR`` is set,
    then the environment alone), then ``--set`` overrides, with the environment filling the rest."""
    env = dict(os.environ if env is None else env)
    if config_path is None and not env.get("REAL_CSV") and not env.get("SYNTHETIC_DIR"):
        config_path = str(DEFAULT_CONFIG)
    raw = read_config_file(config_path) if config_path and config_path != "none" else {}
    for assignment in overrides:
        set_override(raw, assignment)
    source = str(config_path) if config_path and config_path != "none" else "environment"
    return build_config(raw, env, source=source, results_dir=results_dir, work_dir=work_dir)


# ---------------------------------------------------------------------------------------------- fingerprints


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


# ---------------------------------------------------------------------------------------------- stages


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


def _script(name: str) -> str:
    return str(SCRIPTS / name)


def _check_split(path: Path, need_sidecar: bool) -> str:
    from benchmark.data import DataError, read_json_object, read_split_csv

    if not path.is_file():
        raise StageError(f"split CSV {path} not found")
    try:
        table = read_split_csv(path)
        if need_sidecar:
            sidecar = Path(f"{path}.json")
            if not sidecar.is_file():
                raise StageError(f"{sidecar}: sidecar not found")
            read_json_object(sidecar, "split sidecar")
    except DataError as exc:
        raise StageError(str(exc)) from exc
    return f"{len(table.frame)} images, classes {', '.join(table.classes)}"


def _check_synthetic(folder: Path) -> str:
    from benchmark.data import DataError
    from benchmark.data.synthetic import read_synthetic_set

    try:
        synthetic = read_synthetic_set(folder)
    except DataError as exc:
        raise StageError(str(exc)) from exc
    manifest = synthetic.manifest
    if manifest.get("complete") is False:
        raise StageError(f"{folder}: manifest says incomplete ({manifest.get('n_images')} of "
                         f"{manifest.get('n_planned')} images)")
    planned = manifest.get("n_planned")
    if planned is not None and int(planned) != len(synthetic.frame):
        raise StageError(f"{folder}: {len(synthetic.frame)} images listed but {planned} planned")
    return f"{len(synthetic.frame)} images"


def _classes_of(csv: Path) -> list[str]:
    from benchmark.data import read_split_csv

    return read_split_csv(csv).classes


def demo_classifier_folder(train: bool) -> Path:
    """The cached demo classifier's folder (trained first when ``train`` and missing)."""
    from benchmark.demo.run import DemoConfig, demo_classifier, demo_classifier_dir

    folder = demo_classifier_dir(DemoConfig())
    if train and not (folder / "config.json").is_file():
        print(f"run_all: training the demo classifier into {folder} (once; about a minute)", flush=True)
        demo_classifier(DemoConfig(), progress=False)
    return folder


def tiny_ddpm_folder(config: RunConfig) -> Path:
    return config.work_dir / "models" / "tiny-ddpm"


def build_tiny_ddpm(folder: Path, num_classes: int) -> None:
    """Build the tiny untrained class-conditional DDPM unless it exists with this many classes."""
    unet_config = folder / "unet" / "config.json"
    if (folder / "model_index.json").is_file() and unet_config.is_file():
        if json.loads(unet_config.read_text()).get("num_class_embeds") == num_classes:
            return
        shutil.rmtree(folder)
    from benchmark.demo.models import build_class_conditional

    print(f"run_all: building {BUILTIN_DDPM} ({num_classes} classes, {BUILTIN_DDPM_SIZE} px) in {folder}", flush=True)
    build_class_conditional(folder, num_classes=num_classes, image_size=BUILTIN_DDPM_SIZE, seed=0)


class Runner:
    """Decides, for each stage in order, whether to run or skip it, and runs it."""

    def __init__(self, config: RunConfig, only: Sequence[str] = (), skip: Sequence[str] = (),
                 force: Sequence[str] = (), dry_run: bool = False, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.only, self.skip, self.force = set(only), set(skip), set(force)
        self.dry_run = dry_run
        self.env = dict(os.environ if env is None else env) | config.env
        self._resolved: dict[str, Path] = {}
        self.ran: list[str] = []

    # -- builtins

    def _resolve(self, value: str | None, materialise: bool) -> str | None:
        """A builtin reference as its folder (built or trained only when ``materialise``); others unchanged."""
        if value == BUILTIN_CLASSIFIER:
            if materialise or value not in self._resolved:
                self._resolved[value] = demo_classifier_folder(train=materialise)
            return str(self._resolved[value])
        if value == BUILTIN_DDPM:
            folder = tiny_ddpm_folder(self.config)
            if materialise:
                build_tiny_ddpm(folder, len(_classes_of(self.config.real_csv)))
            return str(folder)
        return value

    # -- stage definitions

    def stage(self, name: str, materialise: bool = False) -> Stage:
        return getattr(self, f"_stage_{name}")(materialise)

    def _stage_splits(self, materialise: bool) -> Stage:
        splits = self.config.splits
        if splits.csv:
            csv = Path(splits.csv)
            return Stage("splits", [], [], given=True, check_outputs=lambda: _check_split(csv, need_sidecar=False))
        out = Path(splits.out)
        target = ["--out-dir", str(out.parent)] if splits.builder == "demo" else ["--out", str(out)]
        command = [_script("make_splits.sh"), splits.builder, *target, *args_to_argv(splits.args)]
        outputs = [out, out.parent] if splits.builder == "demo" else [out]
        return Stage("splits", command, outputs, check_outputs=lambda: _check_split(out, need_sidecar=True))

    def _stage_generation(self, materialise: bool) -> Stage:
        generation, config = self.config.generation, self.config
        if generation.synthetic:
            folder = Path(generation.synthetic)
            return Stage("generation", [], [], given=True, check_outputs=lambda: _check_synthetic(folder))
        out = Path(generation.out)
        if generation.images:
            command = [_script("register_images.sh"), "--images", generation.images, "--out", str(out),
                       f"--model-name={config.model_name}"]
        else:
            model = self._resolve(generation.model, materialise)
            command = [_script("generate.sh"), "--model", model, "--prompts", str(config.real_csv)]
            if generation.split:
                command += ["--split", generation.split]
            command += ["--out", str(out), "--num-processes", str(generation.num_processes)]
        command += args_to_argv(generation.args)
        return Stage("generation", command, [out], extra_inputs=self._sidecar(),
                     check_outputs=lambda: _check_synthetic(out))

    def _sidecar(self) -> list[Path]:
        """The split's sidecar (classes, dataset, image root): an input wherever the split CSV is."""
        return [Path(f"{self.config.real_csv}.json")]

    def _set_flags(self) -> list[str]:
        config = self.config
        # free text as --flag=value, so that a value starting with "-" is not taken for a flag
        return ["--real", str(config.real_csv), "--synthetic", str(config.synthetic_dir),
                f"--model-name={config.model_name}", f"--extra-info={config.extra_info}",
                "--results-dir", str(config.results_dir)]

    def _stage_image_quality(self, materialise: bool) -> Stage:
        quality = self.config.image_quality
        command = [_script("image_quality_metrics.sh"), *self._set_flags(), "--features", quality.features]
        if quality.weights:
            command += ["--weights", self._resolve(quality.weights, materialise)]
        if quality.per_class:
            command.append("--per-class")
        command += args_to_argv(quality.args)
        return Stage("image_quality", command, [self.config.results_dir], extra_inputs=self._sidecar(),
                     tables=("image_quality_metrics",))

    def _stage_utility(self, materialise: bool) -> Stage:
        utility = self.config.utility
        command = [_script("utility_metrics.sh"), *self._set_flags(), "--stage", utility.stage]
        if utility.classifier:
            command += ["--classifier", self._resolve(utility.classifier, materialise)]
        command += args_to_argv(utility.args)
        tables = {"pretrained": ("utility_pretrained",), "retrained": ("utility_retrained",),
                  "all": ("utility_pretrained", "utility_retrained")}[utility.stage]
        return Stage("utility", command, [self.config.results_dir], extra_inputs=self._sidecar(), tables=tables)

    def _stage_privacy(self, materialise: bool) -> Stage:
        privacy = self.config.privacy
        command = [_script("privacy_metrics.sh"), *self._set_flags()]
        if privacy.reid_model:
            command += ["--reid-model", privacy.reid_model]
        elif privacy.reid_train:
            command.append("--reid-train")
        if privacy.alignment_model:
            command += ["--alignment-model", privacy.alignment_model]
        command += args_to_argv(privacy.args)
        extra = [Path(privacy.reid_model).with_suffix(".json")] if privacy.reid_model else []  # its sidecar config
        return Stage("privacy", command, [self.config.results_dir], extra_inputs=[*self._sidecar(), *extra],
                     tables=privacy.tables)

    def _stage_report(self, materialise: bool) -> Stage:
        from benchmark.core.results import RESULT_TABLES

        report, results = self.config.report, self.config.results_dir
        out = Path(report.out)
        command = [_script("report.sh"), "--results-dir", str(results), "--out", str(out),
                   *args_to_argv(report.args)]

        def check() -> str:
            missing = [name for name in ("report.md", "report.html") if not (out / name).is_file()]
            if missing:
                raise StageError(f"{out}: {', '.join(missing)} not found")
            return f"{out}/report.md, report.html"

        return Stage("report", command, [out, results],
                     extra_inputs=[results / f"{table}.csv" for table in RESULT_TABLES], check_outputs=check)

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
                     & (frame["extra_info"].str.strip() == self.config.extra_info.strip())]
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

    # -- running

    def replace_previous_set(self, stage: Stage, previous: dict[str, Any]) -> None:
        """Before generating with changed settings into the folder a previous run_all generation filled, move
        that set aside (``<out>.replaced-<time>``): generate.sh rightly refuses to continue a set made with other
        image-defining settings. A change of the process count or of the split's sidecar alone keeps the set
        (generation continues it)."""
        out = stage.outputs[0]
        if not out.exists():
            return
        now = stage.material(self.config, self.env)
        before, after = command_options(previous.get("command", [])), command_options(now["command"])
        flags = {f for f in set(before) | set(after) if before.get(f) != after.get(f)} - {"--num-processes"}
        sidecar = str(self._sidecar()[0])
        inputs = {k for k in set(previous.get("inputs", {})) | set(now["inputs"])
                  if previous.get("inputs", {}).get(k) != now["inputs"].get(k)} - {sidecar}
        if not flags and not inputs:
            return
        target = out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        out.rename(target)
        print(f"run_all: moved the previous synthetic set (other settings) to {target}; delete it when no longer "
              "needed", flush=True)

    def execute(self, stage: Stage) -> int:
        """Run a stage's command; returns its exit status; writes the marker when it succeeded."""
        material = stage.material(self.config, self.env)
        before = {table: self._rows(table) for table in stage.tables}
        started = time.time()
        print(f"$ {shlex.join(stage.command)}", flush=True)
        status = subprocess.call(stage.command, env=self.env)
        if status != 0:
            return 128 - status if status < 0 else status
        rows: dict[str, list[list[str]]] = {}
        for table in stage.tables:
            after = self._rows(table)
            new = after - before[table] or after
            if not new:
                raise StageError(f"it exited 0 but wrote no rows for model {self.config.model_name!r} "
                                 f"(extra_info {self.config.extra_info!r}) to {table}.csv")
            rows[table] = sorted(list(r) for r in new)
        summary = stage.check_outputs() if stage.check_outputs else f"{sum(map(len, rows.values()))} rows"
        marker = {"stage": stage.name, "fingerprint": fingerprint(material), "material": material,
                  "command": shlex.join(stage.command), "rows": rows, "outputs": summary,
                  "seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "config": self.config.source}
        from benchmark.data import atomic_write_text

        atomic_write_text(self.marker_path(stage.name), json.dumps(marker, indent=2) + "\n")
        print(f"done {stage.name}: {summary} ({time.time() - started:.1f} s)", flush=True)
        return 0

    def run(self) -> int:
        config = self.config
        print(f"run_all: {config.model_name!r} (config {config.source}); results in {config.results_dir}, "
              f"work dir {config.work_dir}", flush=True)
        started = time.time()
        upstream: str | None = None  # dry run: the first stage that would run
        for index, name in enumerate(STAGES):
            section = getattr(config, name)
            if (self.only and name not in self.only) or name in self.skip:
                print(f"skip {name}: not selected ({'--only' if self.only and name not in self.only else '--skip'})")
                continue
            if not section.enabled:
                print(f"skip {name}: disabled in the config (enabled: false)")
                continue
            try:
                stage = self.stage(name)
                decision = self.decide(stage)
                if self.dry_run and upstream and not stage.given:
                    print(f"run {name}: decided again after {upstream} runs, which may change its inputs (now: "
                          f"{'run' if decision.run else 'skip'}, {decision.why})")
                    print(f"$ {shlex.join(stage.command)}", flush=True)
                    continue
                if not decision.run:
                    print(f"skip {name}: {decision.why}", flush=True)
                    continue
                print(f"run {name}: {decision.why}", flush=True)
                if self.dry_run:
                    print(f"$ {shlex.join(stage.command)}", flush=True)
                    upstream = upstream or name
                    continue
                stage = self.stage(name, materialise=True)
                if name == "generation" and decision.previous is not None:
                    self.replace_previous_set(stage, decision.previous)
                status = self.execute(stage)
            except StageError as exc:
                print(f"run_all: stage {name} failed: {exc}", file=sys.stderr)
                status = 2
            if status != 0:
                later = [s for s in STAGES[index + 1:] if getattr(config, s).enabled]
                print(f"run_all: stage {name} failed (exit {status}); not run: {', '.join(later) or 'nothing'}",
                      file=sys.stderr, flush=True)
                return status
            self.ran.append(name)
        done = "dry run, nothing ran" if self.dry_run else f"ran: {', '.join(self.ran) or 'nothing'}"
        print(f"run_all: finished in {time.time() - started:.1f} s; {done}", flush=True)
        return 0


def _stage_names(text: str | None, flag: str, allow_all: bool = False) -> list[str]:
    if not text:
        return []
    names = [n.strip().replace("-", "_") for n in text.split(",") if n.strip()]
    known = (*STAGES, "all") if allow_all else STAGES
    for name in names:
        if name not in known:
            raise ConfigError(f"{flag} {name!r}: not a stage ({', '.join(known)})")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--config", help="YAML config (default: configs/demo.yaml unless REAL_CSV or SYNTHETIC_DIR "
                                         "is set; 'none': the environment only)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set utility.args.epochs=2 (repeatable)")
    parser.add_argument("--results-dir", help="overrides results_dir")
    parser.add_argument("--work-dir", help="overrides work_dir")
    parser.add_argument("--only", help="run (or skip) only these stages, comma separated")
    parser.add_argument("--skip", help="leave these stages out, comma separated")
    parser.add_argument("--force", help="rerun these stages even if complete (comma separated, or all)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run or be skipped, run nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.set, results_dir=args.results_dir, work_dir=args.work_dir)
        runner = Runner(config, only=_stage_names(args.only, "--only"), skip=_stage_names(args.skip, "--skip"),
                        force=_stage_names(args.force, "--force", allow_all=True), dry_run=args.dry_run)
    except ConfigError as exc:
        print(f"run_all: config error: {exc}", file=sys.stderr)
        return 2
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
