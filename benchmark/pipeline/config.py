"""The run's configuration: the YAML file, ``--set`` overrides and the environment read, validated and filled in
(:func:`load_config` -> :class:`RunConfig`), and the names every other piece shares (:data:`STAGES`, the builtin
models, the scripts folder). The config keys are described in :mod:`benchmark.pipeline.run_all`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
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
MARKER_DIR = "run_all"


class ConfigError(ValueError):
    """The config file, an override or the environment does not describe a valid run."""


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
