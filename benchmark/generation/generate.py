"""``accelerate launch -m benchmark.generation``: a synthetic set (SPEC §2) from a prompts CSV, any number of processes.

The plan is fixed before anything is generated: one image per (prompt row, image index), named
``images/<row>_<index>.png``, with seed ``image_seed(seed, row, index)``, grouped into batches of ``--batch-size``
in plan order. Whole batches are shared out over processes by accelerate, so an image never depends on how many
processes ran (on CPU each process uses one intra-op thread for the same reason). Images are written atomically
(temp file + rename) and finished ones are skipped, so a run killed at any point and restarted ends with the same
set. Each process logs what it finished to ``parts/rank-<i>.jsonl``; ``synthetic.csv`` and ``manifest.json`` are
built from the plan, the parts and the files on disk, and ``--rebuild-index`` rebuilds them after a crash.

Settings are resolved against the pipeline before the first image (:func:`.pipelines.resolve_options`):
what the pipeline would ignore is refused, and the manifest records the values used (signature defaults included),
each text encoder's token limit with the prompts it cut, and the size the model generated at.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from benchmark import __version__
from benchmark.core.cli import describe
from benchmark.core.provenance import environment_lock, git_commit, package_versions, utc_timestamp
from benchmark.data import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    DataError,
    atomic_write_text,
    read_csv_strings,
    read_json_object,
    read_split_csv,
    sidecar_path,
)
from benchmark.data.generator_training import add_generator_training_arguments, record_from_arguments
from benchmark.data.synthetic import IMAGES_DIR, MANIFEST_JSON, SYNTHETIC_CSV

PLAN_CSV = "plan.csv"
RUN_JSON = "run.json"
PARTS_DIR = "parts"
PROMPT_COLUMNS = ("prompt", "annotated_prompt")
COPIED_COLUMNS = ("class_label", "patient_id", "split", *OPTIONAL_COLUMNS, "chexpert_labels")
LABEL_VALUES = frozenset({"1", "0", "1.0", "0.0", ""})
# What changes the pixels: a restart must agree on all of these with the run it continues.
IMAGE_DEFINING = ("model", "revision", "lora", "kind", "scheduler", "steps", "guidance", "height", "width", "dtype",
                  "negative_prompt", "true_cfg_scale", "max_sequence_length", "resolution_binning", "seed",
                  "batch_size", "save_mode", "plan_sha256")


def image_seed(base_seed: int, source_row: int, image_index: int) -> int:
    """The seed of one image: the first 63 bits of sha256("base/row/index"). Independent of batches and processes."""
    digest = hashlib.sha256(f"{int(base_seed)}/{int(source_row)}/{int(image_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class PromptTable:
    """Rows to generate from: ``source_row`` (row in the CSV), ``prompt``, and the columns to copy.

    ``dataset_from`` says where ``dataset`` came from (``dataset column``, ``sidecar`` or ``nowhere``).
    """

    frame: pd.DataFrame
    classes: list[str]
    source: str
    dataset: str
    n_duplicates_dropped: int = 0
    dataset_from: str = "nowhere"

    def carried(self) -> str:
        """One log line: what travels from the prompts CSV into ``synthetic.csv`` and the manifest."""
        other = [c for c in self.frame.columns if c not in ("source_row", "prompt", *self.classes)]
        return (f"carried from {self.source} into synthetic.csv: dataset {self.dataset!r} ({self.dataset_from}); "
                f"label columns: {', '.join(self.classes) or 'none'}; other columns: {', '.join(other) or 'none'}")


def _label_columns(frame: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """Columns of a plain prompts CSV that hold labels: every value 1 / 0 / empty, at least one set."""
    known = {*exclude, *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *COPIED_COLUMNS, *PROMPT_COLUMNS, "source_row"}
    return [c for c in frame.columns if c not in known and frame[c].isin(LABEL_VALUES).all()
            and frame[c].ne("").any()]


def load_prompts(
    csv: str | Path,
    *,
    split: str | None = None,
    prompt_col: str | None = None,
    max_prompts: int | None = None,
    dedupe: bool = False,
) -> PromptTable:
    """Read a split CSV (SPEC §1, validated; ``split`` selects rows) or any CSV with a prompt column.

    ``source_row`` is the 0-based data row in the file. ``dedupe`` drops rows whose prompt repeats an earlier one;
    ``max_prompts`` keeps the first rows after that.
    """
    path = Path(csv)
    raw = read_csv_strings(path, "prompts CSV")
    if len(raw) == 0:
        raise DataError(f"{path}: the CSV has no rows")
    raw.insert(0, "source_row", np.arange(len(raw)))
    if all(c in raw.columns for c in REQUIRED_COLUMNS):
        table = read_split_csv(path)
        classes, dataset = table.classes, table.dataset
        dataset_from = "dataset column" if "dataset" in raw.columns else "sidecar"
    else:  # a plain prompts CSV: labels are its 1/0/empty columns (or the sidecar's classes)
        meta = read_json_object(sidecar_path(path), "sidecar JSON")
        classes = [c for c in meta.get("classes") or [] if c in raw.columns] or _label_columns(
            raw, [prompt_col or ""])
        datasets = sorted({d for d in raw.get("dataset", pd.Series(dtype=str)) if d})
        if datasets:
            dataset, dataset_from = "+".join(datasets), "dataset column"
        elif meta.get("dataset"):
            dataset, dataset_from = str(meta["dataset"]), "sidecar"
        else:
            dataset, dataset_from = "unknown", "nowhere"
    if split:
        if "split" not in raw.columns:
            raise DataError(f"{path}: --split {split} given but the CSV has no 'split' column")
        raw = raw[raw["split"] == split]
        if len(raw) == 0:
            raise DataError(f"{path}: no rows with split == {split!r}")
    column = prompt_col or next((c for c in PROMPT_COLUMNS if c in raw.columns), None)
    if column is None or column not in raw.columns:
        raise DataError(f"{path}: no prompt column ({prompt_col or ' or '.join(PROMPT_COLUMNS)}); "
                        f"columns: {', '.join(raw.columns[1:])}")
    frame = raw.rename(columns={column: "prompt"}) if column != "prompt" else raw
    n_dropped = 0
    if dedupe:
        keep = ~frame["prompt"].duplicated()
        n_dropped = int((~keep).sum())
        frame = frame[keep]
    if max_prompts is not None:
        if max_prompts < 1:
            raise DataError(f"--max-prompts must be at least 1, got {max_prompts}")
        frame = frame.head(max_prompts)
    keep_columns = ["source_row", "prompt", *[c for c in (*COPIED_COLUMNS, *classes) if c in frame.columns]]
    return PromptTable(frame[keep_columns].reset_index(drop=True), classes, str(path), dataset, n_dropped,
                       dataset_from)


def build_plan(prompts: pd.DataFrame, images_per_prompt: int, seed: int) -> pd.DataFrame:
    """One row per image to make: ``img_savename``, ``source_row``, ``image_index``, ``seed`` + prompt columns."""
    if images_per_prompt < 1:
        raise DataError(f"--images-per-prompt must be at least 1, got {images_per_prompt}")
    repeated = prompts.loc[prompts.index.repeat(images_per_prompt)].reset_index(drop=True)
    repeated.insert(1, "image_index", np.tile(np.arange(images_per_prompt), len(prompts)))
    rows = repeated["source_row"].astype(int)
    repeated.insert(0, "img_savename", [f"{IMAGES_DIR}/{r:07d}_{k:02d}.png"
                                        for r, k in zip(rows, repeated["image_index"], strict=True)])
    repeated.insert(3, "seed", [str(image_seed(seed, r, k)) for r, k in zip(rows, repeated["image_index"],
                                                                          strict=True)])
    first = ["prompt", "img_savename", "source_row", "seed", "image_index"]
    return repeated[first + [c for c in repeated.columns if c not in first]]


def plan_batches(n_images: int, batch_size: int) -> list[list[int]]:
    """Plan positions grouped into consecutive batches; fixed by the plan and batch size alone."""
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    return [list(range(start, min(start + batch_size, n_images))) for start in range(0, n_images, batch_size)]


@dataclass
class GenerationConfig:
    """Everything a run needs; the ``IMAGE_DEFINING`` fields must match when a run is continued."""

    model: str
    prompts: str
    out: str
    split: str | None = None
    prompt_col: str | None = None
    max_prompts: int | None = None
    dedupe_prompts: bool = False
    revision: str | None = None
    lora: str | None = None
    images_per_prompt: int = 1
    steps: int = 50
    guidance: float | None = None
    height: int | None = None
    width: int | None = None
    batch_size: int = 4
    dtype: str = "fp32"
    scheduler: str | None = None
    negative_prompt: str | None = None
    true_cfg_scale: float | None = None
    max_sequence_length: int | None = None
    resolution_binning: bool = True
    seed: int = 0
    save_mode: str = "L"
    long_prompts: str = "report"
    generator_training: str | None = None
    generator_training_ids: str | None = None
    command: list[str] = field(default_factory=list)


def save_png(pixels: np.ndarray, path: Path, save_mode: str) -> None:
    """Write uint8 ``(H, W, C)`` pixels as PNG atomically; ``save_mode`` ``L`` (greyscale) or ``RGB``."""
    if pixels.shape[-1] == 1:
        image = Image.fromarray(pixels[..., 0], mode="L")
    else:
        image = Image.fromarray(pixels[..., :3], mode="RGB")
        if save_mode == "L":
            image = image.convert("L")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def check_options(config: GenerationConfig) -> None:
    """Stop on a numeric option out of range before anything loads (``--steps -2`` once made a "complete" set of
    undenoised noise). Sizes the pipeline itself refuses (e.g. not a multiple of 8) are caught at the first batch."""
    def need(ok: bool, flag: str, value: Any, rule: str) -> None:
        if not ok:
            raise DataError(f"{flag} {value}: {rule}")

    need(config.steps >= 1, "--steps", config.steps, "must be at least 1 (denoising steps)")
    need(config.images_per_prompt >= 1, "--images-per-prompt", config.images_per_prompt, "must be at least 1")
    need(config.batch_size >= 1, "--batch-size", config.batch_size, "must be at least 1")
    for flag, value in (("--height", config.height), ("--width", config.width)):
        need(value is None or value >= 8, flag, value, "must be at least 8 pixels")
    need(config.max_prompts is None or config.max_prompts >= 1, "--max-prompts", config.max_prompts,
         "must be at least 1")
    need(config.guidance is None or config.guidance >= 0, "--guidance", config.guidance, "must not be negative")
    need(config.true_cfg_scale is None or config.true_cfg_scale >= 0, "--true-cfg-scale", config.true_cfg_scale,
         "must not be negative")
    need(config.max_sequence_length is None or config.max_sequence_length >= 1, "--max-sequence-length",
         config.max_sequence_length, "must be at least 1")
    need(config.seed >= 0, "--seed", config.seed, "must not be negative")


def image_is_whole(path: Path) -> bool:
    """Whether ``path`` exists and decodes as an image: header, size and (for PNG) every chunk's checksum, without
    decoding the pixels. A zero-byte or cut-off file left by a killed run is not whole."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            image.verify()
        return width > 0 and height > 0
    except (OSError, SyntaxError, ValueError):
        return False


def check_run(out: Path, run: dict[str, Any]) -> None:
    """Stop when ``out`` already holds a run whose image-defining settings differ, naming each difference.

    Every process calls this (before any barrier), so all of them stop together.
    """
    path = out / RUN_JSON
    if not path.exists():
        return
    if not any((out / IMAGES_DIR).glob("*.png")):
        return  # a run that made no image (e.g. it stopped on a bad option) is replaced by this one
    previous = json.loads(path.read_text())
    defaults = asdict(GenerationConfig(model="", prompts="", out=""))  # settings older runs did not record
    differ = [k for k in IMAGE_DEFINING if previous.get(k, defaults.get(k)) != run.get(k)]
    if differ:
        details = "; ".join(f"{k}: {previous.get(k)!r} there, {run.get(k)!r} now" for k in differ)
        raise DataError(f"{out} holds a different generation run ({details}); use a new --out, or the same "
                        "settings to continue it")


def generate(config: GenerationConfig) -> Path:
    """Run (or continue) the generation described by ``config`` on this process; returns the output folder."""
    import torch

    threads = torch.get_num_threads()  # generation pins one thread on CPU; the caller gets its own count back
    try:
        return _generate(config)
    finally:
        torch.set_num_threads(threads)


def _generate(config: GenerationConfig) -> Path:
    """The body of :func:`generate`."""
    import diffusers
    import torch
    import transformers
    from accelerate import PartialState

    from benchmark.core.progress import progress as progress_display
    from benchmark.fidelity.features import release_process_group_at_exit
    from benchmark.generation.pipelines import (
        CLASS_CONDITIONAL,
        UNCONDITIONAL,
        load_generator,
        resolve_dtype,
        resolve_options,
        run_batch,
    )

    state = PartialState(cpu=not torch.cuda.is_available())
    release_process_group_at_exit()
    # Both libraries warn about every cut prompt, in every batch; the harness counts and reports them once.
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    if state.device.type == "cpu":
        torch.set_num_threads(1)  # CPU results depend on the thread count; processes give the speed instead
    if state.device.type == "cuda":
        torch.backends.cudnn.benchmark = False
    if config.save_mode not in ("L", "RGB"):
        raise DataError(f"--save-mode must be L or RGB, got {config.save_mode!r}")
    check_options(config)
    dtype = resolve_dtype(config.dtype, state.device)
    out = Path(config.out)
    prompts = load_prompts(config.prompts, split=config.split, prompt_col=config.prompt_col,
                           max_prompts=config.max_prompts, dedupe=config.dedupe_prompts)
    loaded = load_generator(config.model, revision=config.revision, dtype=dtype, device=state.device,
                            scheduler=config.scheduler, lora=config.lora)
    options = resolve_options(loaded, guidance=config.guidance, negative_prompt=config.negative_prompt,
                              true_cfg_scale=config.true_cfg_scale, max_sequence_length=config.max_sequence_length,
                              resolution_binning=config.resolution_binning)
    plan = build_plan(prompts.frame, config.images_per_prompt, config.seed)
    _check_plan_fits_model(plan, loaded, prompts.source)
    token_report = _token_report(plan, loaded.encoder_limits(options.record.get("max_sequence_length")))
    if token_report["n_over_limit"] and config.long_prompts == "error":
        raise DataError(f"{prompts.source}: {token_report['n_over_limit']} prompts exceed the tokenizer limit of "
                        f"{token_report['token_limit']} tokens (first rows: {token_report['examples']}); shorten "
                        "them or run with --long-prompts report")
    for column, values in token_report.pop("columns").items():
        plan[column] = values
    limit = token_report["token_limit"]
    added = token_report["encoders"].get(token_report["encoder"], {}).get("prefix_tokens", 0)
    limit_text = f"{limit} tokens" + (f" ({added} of them the pipeline's own text before the prompt)" if added else "")
    plan_csv = plan.to_csv(index=False)
    run = {**asdict(config), "kind": loaded.kind, "scheduler": type(loaded.pipeline.scheduler).__name__,
           "plan_sha256": hashlib.sha256(plan_csv.encode()).hexdigest()}
    check_run(out, run)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (out / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    if state.is_main_process:
        if not (out / RUN_JSON).exists() or not any((out / IMAGES_DIR).glob("*.png")):
            atomic_write_text(out / RUN_JSON, json.dumps(run, indent=2, default=str) + "\n")
        atomic_write_text(out / PLAN_CSV, plan_csv)
        print(prompts.carried(), file=sys.stderr)
        if loaded.kind == UNCONDITIONAL and _has_labels(plan, prompts.classes):
            print(f"warning: {loaded.pipeline_class} is unconditional: the labels of the prompts CSV are copied to "
                  "synthetic.csv but do not condition the images", file=sys.stderr)
        if token_report["n_over_limit"]:
            print(f"warning: {token_report['n_over_limit']} of {token_report['n_prompts']} prompts "
                  f"({token_report['share_over_limit']:.1%}) exceed the tokenizer limit of {limit_text}; the "
                  "pipeline's tokenizer cuts them (counted in manifest.json, prompt_truncated in synthetic.csv)",
                  file=sys.stderr)
        for name, encoder in token_report["encoders"].items():
            if encoder["n_over_limit"] and len(token_report["encoders"]) > 1:
                print(f"note: {encoder['n_over_limit']} prompts exceed {name}'s limit of {encoder['limit']} tokens "
                      f"({encoder['limit_source']}); prompt_truncated_{name} in synthetic.csv", file=sys.stderr)
    state.wait_for_everyone()

    batches = plan_batches(len(plan), config.batch_size)
    names = plan["img_savename"].tolist()
    broken = [n for n in names if (out / n).exists() and not image_is_whole(out / n)]
    state.wait_for_everyone()
    if broken and state.is_main_process:
        for name in broken:
            (out / name).unlink(missing_ok=True)
        print(f"{len(broken)} existing image(s) did not decode (e.g. {broken[0]}: empty or cut off by a killed "
              "run); they are made again", file=sys.stderr)
    state.wait_for_everyone()
    with state.split_between_processes(list(enumerate(batches))) as my_batches:
        my_images = sum(len(b) for _, b in my_batches)
        bar = progress_display(my_images, f"generating (process 0 of {state.num_processes}, {len(plan)} images "
                               "in all)", "img", enabled=state.is_main_process)
        part_path = out / PARTS_DIR / f"rank-{state.process_index:05d}.jsonl"
        with part_path.open("a") as part:
            for batch_index, positions in my_batches:
                missing = [p for p in positions if not (out / names[p]).is_file()]
                if not missing:
                    bar.update(len(positions))
                    continue
                rows = plan.iloc[positions]
                started = time.perf_counter()
                try:
                    images = run_batch(
                        loaded, prompts=rows["prompt"].tolist(),
                        class_labels=[int(c) for c in rows["class_label"]] if loaded.kind == CLASS_CONDITIONAL
                        else None,
                        seeds=[int(s) for s in rows["seed"]], steps=config.steps, guidance=config.guidance,
                        height=config.height, width=config.width, negative_prompt=config.negative_prompt,
                        options=options)
                except ValueError as exc:  # the pipeline's own check of a setting, e.g. a size not divisible by 8
                    raise DataError(f"{loaded.pipeline_class} refused the settings (--height {config.height}, "
                                    f"--width {config.width}, --steps {config.steps}, --guidance "
                                    f"{config.guidance}): {exc}") from exc
                seconds = time.perf_counter() - started
                sizes = {"generated_size": list(loaded.last_generated_size or images.shape[1:3]),
                         "image_size": list(images.shape[1:3])}
                for offset, position in enumerate(positions):
                    if position in missing:
                        save_png(images[offset], out / names[position], config.save_mode)
                        part.write(json.dumps({"img_savename": names[position], "rank": state.process_index,
                                               "batch": batch_index, "seconds": seconds / len(positions),
                                               **sizes, "finished": utc_timestamp()}) + "\n")
                part.flush()
                bar.update(len(positions))
        bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        manifest = {**_manifest_facts(config, loaded, prompts, token_report, options.record),
                    "num_processes": state.num_processes, "device": str(state.device)}
        write_index(out, manifest)
        indexed = json.loads((out / MANIFEST_JSON).read_text())
        if indexed.get("generated_size") not in (None, indexed.get("image_size")):
            (gh, gw), (h, w) = indexed["generated_size"], indexed["image_size"]
            print(f"note: {loaded.pipeline_class} generated at {gh}x{gw} (resolution binning) and resized to "
                  f"{h}x{w}; --no-resolution-binning generates at the requested size", file=sys.stderr)
    state.wait_for_everyone()
    return out


def _has_labels(plan: pd.DataFrame, classes: Sequence[str]) -> bool:
    """Whether any planned row carries a class label or a 1/0 label."""
    columns = [c for c in ("class_label", *classes) if c in plan.columns]
    return bool(columns) and bool(plan[columns].ne("").to_numpy().any())


def _check_plan_fits_model(plan: pd.DataFrame, loaded: Any, source: str) -> None:
    """Stop before the first image when a row cannot be generated: the error names the CSV row and column."""
    from benchmark.generation.pipelines import CLASS_CONDITIONAL, TEXT_TO_IMAGE

    def where(i: int) -> str:
        row = int(plan["source_row"].iat[i])
        return f"{source}: row {row + 1} (line {row + 2})"

    if loaded.kind == TEXT_TO_IMAGE:
        empty = np.flatnonzero(plan["prompt"].str.strip().eq("").to_numpy())
        if empty.size:
            raise DataError(f"{where(int(empty[0]))}: empty prompt for a text-to-image model")
    if loaded.kind == CLASS_CONDITIONAL:
        if "class_label" not in plan.columns:
            raise DataError(f"{source}: the model is class-conditional but the CSV has no 'class_label' column")
        allowed = loaded.class_indices
        valid = {str(c) for c in allowed}
        bad = np.flatnonzero(~plan["class_label"].str.strip().isin(valid).to_numpy())
        if bad.size:
            i = int(bad[0])
            null = f"; {loaded.null_class} is the null class" if loaded.null_class is not None else ""
            raise DataError(f"{where(i)}: column 'class_label' has {plan['class_label'].iat[i]!r}, not one of the "
                            f"UNet's classes {min(allowed)}..{max(allowed)}{null} (the model is class-conditional)")


def _token_report(plan: pd.DataFrame, encoders: Sequence[Any]) -> dict[str, Any]:
    """Prompt token counts against the limit each text encoder applies (text-to-image only).

    A prompt is truncated (``prompt_truncated``) when the encoder that reads furthest cuts it, i.e. some of it
    reaches no encoder; with several encoders each gets ``prompt_tokens_<tokenizer>`` /
    ``prompt_truncated_<tokenizer>`` columns and an entry under ``encoders``.
    """
    unique = plan.drop_duplicates("source_row")
    if not encoders:
        return {"token_limit": None, "encoder": None, "n_prompts": len(unique), "n_over_limit": 0,
                "share_over_limit": 0.0,
                "examples": [], "encoders": {}, "columns": {"prompt_tokens": ["0"] * len(plan),
                                                            "prompt_truncated": ["0"] * len(plan)}}
    prompts = plan["prompt"].unique()
    columns: dict[str, list[str]] = {}
    facts: dict[str, dict[str, Any]] = {}
    over_by: dict[str, set[str]] = {}
    for encoder in encoders:
        counts = {p: encoder.count(p) for p in prompts}
        over_by[encoder.component] = {p for p, n in counts.items() if encoder.limit is not None and n > encoder.limit}
        n_over = int(unique["prompt"].isin(over_by[encoder.component]).sum())
        facts[encoder.component] = {"tokenizer": type(encoder.tokenizer).__name__, "limit": encoder.limit,
                                    "limit_source": encoder.source, "prefix_tokens": encoder.prefix_tokens,
                                    "n_over_limit": n_over}
        if len(encoders) > 1:
            columns[f"prompt_tokens_{encoder.component}"] = [str(counts[p]) for p in plan["prompt"]]
            columns[f"prompt_truncated_{encoder.component}"] = [
                "1" if p in over_by[encoder.component] else "0" for p in plan["prompt"]]
    furthest = max(encoders, key=lambda e: float("inf") if e.limit is None else e.limit)
    counts = {p: furthest.count(p) for p in prompts}
    over = over_by[furthest.component]
    columns = {"prompt_tokens": [str(counts[p]) for p in plan["prompt"]],
               "prompt_truncated": ["1" if p in over else "0" for p in plan["prompt"]], **columns}
    over_rows = unique[unique["prompt"].isin(over).to_numpy()]
    return {"token_limit": furthest.limit, "encoder": furthest.component, "n_prompts": len(unique),
            "n_over_limit": len(over_rows),
            "share_over_limit": len(over_rows) / max(1, len(unique)),
            "examples": [int(r) + 1 for r in over_rows["source_row"].head(5)], "encoders": facts,
            "columns": columns}


def _manifest_facts(config: GenerationConfig, loaded: Any, prompts: PromptTable,
                    token_report: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """What ``manifest.json`` says about the run; ``applied`` holds the pipeline settings as really used."""
    scheduler = loaded.pipeline.scheduler
    return {
        "model": config.model, "revision": config.revision, "lora": config.lora,
        "pipeline_class": loaded.pipeline_class, "kind": loaded.kind,
        "scheduler": type(scheduler).__name__, "scheduler_config": dict(scheduler.config),
        "steps": config.steps, "requested_height": config.height, "requested_width": config.width, **applied,
        "dtype": config.dtype, "batch_size": config.batch_size, "images_per_prompt": config.images_per_prompt,
        "seed": config.seed,
        "generator_training": record_from_arguments(config.generator_training, config.generator_training_ids),
        "seed_policy": "image seed = first 63 bits of sha256('<seed>/<source_row>/<image_index>'), one "
                       "torch.Generator per image (CPU); batches fixed by the plan and batch size",
        "safety_checker": "disabled",
        "prompts_csv": prompts.source, "split": config.split, "max_prompts": config.max_prompts,
        "dedupe_prompts": config.dedupe_prompts, "duplicate_prompts_dropped": prompts.n_duplicates_dropped,
        "dataset": prompts.dataset, "classes": prompts.classes, "save_mode": config.save_mode,
        "long_prompts": token_report,
        "package_versions": package_versions(), "env_lock": environment_lock(), "git_commit": git_commit(),
        "harness_version": __version__,
        "command": shlex.join(config.command),
    }


def write_index(out: str | Path, manifest_updates: dict[str, Any] | None = None) -> pd.DataFrame:
    """Build ``synthetic.csv`` and ``manifest.json`` from ``plan.csv``, the parts and the images on disk.

    Rows are the planned images whose file exists and decodes (:func:`image_is_whole`), in plan order; the
    manifest says how many were planned, finished and missing, and how many finished images had no part entry (a
    crash between writing the image and logging it). Safe to call at any time, e.g. after a crash (``--rebuild-index``).
    """
    out = Path(out)
    if not (out / PLAN_CSV).is_file():
        raise DataError(f"{out}: no {PLAN_CSV}; this folder was not made by benchmark.generation.generate")
    plan = pd.read_csv(out / PLAN_CSV, dtype=str, keep_default_na=False)
    logged: set[str] = set()
    sizes: dict[str, set[tuple[int, ...]]] = {"generated_size": set(), "image_size": set()}
    for part in sorted((out / PARTS_DIR).glob("rank-*.jsonl")):
        for number, line in enumerate(part.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                logged.add(record["img_savename"])
                for key, found in sizes.items():
                    if key in record:
                        found.add(tuple(record[key]))
            except (json.JSONDecodeError, KeyError):
                if number < len(part.read_text().splitlines()):  # only a cut-off last line is expected
                    raise DataError(f"{part}: line {number} is not a part record") from None
    exists = plan["img_savename"].map(lambda n: image_is_whole(out / n))
    done = plan[exists.to_numpy()]
    previous = json.loads((out / MANIFEST_JSON).read_text()) if (out / MANIFEST_JSON).exists() else {}
    manifest = {**previous, **(manifest_updates or {})}
    manifest.update({
        "n_planned": len(plan), "n_images": len(done), "n_missing": int((~exists).sum()),
        "complete": bool(exists.all()), "n_unlogged_images": len(set(done["img_savename"]) - logged),
        "indexed": utc_timestamp(),
    })
    for key, found in sizes.items():  # [height, width]; the model's size differs under resolution binning
        if len(found) == 1:
            manifest[key] = list(found.pop())
        elif found:
            manifest[key] = sorted(list(size) for size in found)
    if isinstance(manifest.get("image_size", [None])[0], int):
        manifest["height"], manifest["width"] = manifest["image_size"]
    atomic_write_text(out / SYNTHETIC_CSV, done.to_csv(index=False))
    atomic_write_text(out / MANIFEST_JSON, json.dumps(manifest, indent=2, default=str) + "\n")
    return done


HELP = {  # the flags whose text is not written where they are added
    "--revision": "hub revision (branch, tag or commit) of --model",
    "--max-prompts": "only the first N prompt rows",
    "--images-per-prompt": "images generated per prompt row (one seed each)",
    "--steps": "denoising steps",
    "--height": "image height in px (default: the pipeline's)",
    "--width": "image width in px (default: the pipeline's)",
    "--batch-size": "images per pipeline call",
    "--dtype": "precision of the weights and the compute (fp16 / bf16 on a GPU)",
    "--seed": "base of the per-image seeds (each image's seed is in plan.csv)",
}


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="generate.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="diffusers folder or hub id")
    parser.add_argument("--revision")
    parser.add_argument("--lora", help="LoRA weights (folder, file or hub id) for a text-to-image model")
    parser.add_argument("--prompts", default=env.get("REAL_CSV"), help="split CSV or any CSV with a prompt column")
    parser.add_argument("--split", help="rows of this split only (split CSVs)")
    parser.add_argument("--prompt-col", help="prompt column (default: prompt, else annotated_prompt)")
    parser.add_argument("--max-prompts", type=int)
    parser.add_argument("--dedupe-prompts", action="store_true", help="drop rows whose prompt repeats (off)")
    parser.add_argument("--out", default=env.get("SYNTHETIC_DIR"), help="synthetic set folder to write")
    parser.add_argument("--images-per-prompt", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the pipeline's; class-conditional "
                        "UNets: classifier-free guidance, only with a null class)")
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch-size", type=int, default=int(env.get("BATCH_SIZE", "4")))
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("--scheduler", help="diffusers scheduler class to use instead, e.g. DDIMScheduler")
    parser.add_argument("--negative-prompt", help="applied with classifier-free guidance (--guidance above 1; "
                        "Flux: --true-cfg-scale above 1); refused where the pipeline would ignore it")
    parser.add_argument("--true-cfg-scale", type=float,
                        help="Flux: true classifier-free guidance against --negative-prompt (above 1)")
    parser.add_argument("--max-sequence-length", type=int,
                        help="T5/Gemma token limit, for pipelines that take one (SD3, Flux, PixArt, Sana, Lumina2)")
    parser.add_argument("--no-resolution-binning", dest="resolution_binning", action="store_false",
                        help="PixArt/Sana: generate at the requested size instead of the nearest trained bin")
    parser.add_argument("--seed", type=int, default=int(env.get("SEED", "0")))
    parser.add_argument("--save-mode", choices=("L", "RGB"), default="L", help="PNG mode (default greyscale)")
    parser.add_argument("--long-prompts", choices=("report", "error"), default="report",
                        help="prompts over the tokenizer limit: count and report them (default), or stop")
    parser.add_argument("--rebuild-index", action="store_true",
                        help="only rebuild synthetic.csv and manifest.json of --out from its plan and images")
    parser.add_argument("--check-only", action="store_true",
                        help="check the flags and read the prompts, generate nothing (generate.sh does this before "
                             "it starts the launcher, so a bad flag or CSV stops in a second)")
    parser.add_argument("--num-processes", type=int, default=int(env.get("NUM_PROCESSES", "1")),
                        help="processes to generate with, one per GPU, through accelerate launch (read by "
                             "generate.sh; NUM_PROCESSES; default 1)")
    add_generator_training_arguments(parser)
    return describe(parser, HELP)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if not args.out:
            raise DataError("give --out (or SYNTHETIC_DIR)")
        if args.rebuild_index:
            if args.check_only:
                return 0
            done = write_index(args.out)
            print(f"{args.out}: indexed {len(done)} images")
            return 0
        if not args.model or not args.prompts:
            raise DataError("give --model and --prompts (or REAL_CSV)")
        fields = {k: v for k, v in vars(args).items() if k not in ("rebuild_index", "check_only", "num_processes")}
        config = GenerationConfig(**fields, command=["generate.sh", *argv])
        check_options(config)
        record_from_arguments(config.generator_training, config.generator_training_ids)  # a bad record stops here
        if args.check_only:
            prompts = load_prompts(config.prompts, split=config.split, prompt_col=config.prompt_col,
                                   max_prompts=config.max_prompts, dedupe=config.dedupe_prompts)
            print(f"checked: {len(prompts.frame)} prompts from {prompts.source}")
            return 0
        out = generate(config)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifest_path = out / MANIFEST_JSON
    if manifest_path.exists() and os.environ.get("RANK", "0") == "0":
        manifest = json.loads(manifest_path.read_text())
        print(f"{out}: {manifest['n_images']} of {manifest['n_planned']} images "
              f"({'complete' if manifest['complete'] else 'incomplete'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
