"""Running the stages in order: each stage's command built from the config (the stage scripts in ``scripts/``,
builtin models made on first use), the skip decision asked of :class:`~benchmark.pipeline.fingerprints.SkipEngine`,
the command run as a subprocess and, when it succeeds, its marker written.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.pipeline.config import (
    BUILTIN_CLASSIFIER,
    BUILTIN_DDPM,
    BUILTIN_DDPM_SIZE,
    SCRIPTS,
    STAGES,
    RunConfig,
    args_to_argv,
)
from benchmark.pipeline.fingerprints import SkipEngine, Stage, StageError, command_options, fingerprint


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


class Runner(SkipEngine):
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
