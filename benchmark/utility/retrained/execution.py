"""Running a sweep (:func:`run_retrained_stage`): run folders and their keys, resuming, training the units, the
distributed state, and the files and rows a run writes.

A sweep is resumable: each (setting, sizes, seed) writes its checkpoint, predictions and a done-marker under
``results/runs/<run_id>/units/``, and rerunning the same command finds that run and trains only what is missing.
Under ``accelerate launch`` / ``torchrun`` every process trains (DDP) and only the main process writes. Real-only
units do not depend on the synthetic set and are reused by every sweep on the same split and training settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.core.provenance import config_hash, new_run_id
from benchmark.core.results import check_writable, run_dir, table_path, write_run_rows
from benchmark.core.stats import youden_threshold
from benchmark.data import DataError, SplitTable, atomic_write_text
from benchmark.data.generator_training import check_generator_overlap
from benchmark.data.generator_training import resolve as resolve_generator_training
from benchmark.data.image_cache import CachedImages, ImageCache, default_image_cache_dir
from benchmark.data.synthetic import SyntheticSet
from benchmark.utility.retrained.config import ARCHITECTURE, TABLE, RetrainedConfig
from benchmark.utility.retrained.evaluation import UnitPredictions, evaluate_units
from benchmark.utility.retrained.planning import Pools, Unit, baseline_spec, make_pools, parse_settings, plan_units
from benchmark.utility.retrained.plots import plot_learning_curves, plot_sweep_curves
from benchmark.utility.retrained.table import format_retrained_table
from benchmark.utility.test_labels import keyed_extra_info, test_label_mask

# ---------------------------------------------------------------------------------------------- the stage


@dataclass
class RetrainedOutcome:
    """What the stage produced. ``table``: every row written (per seed and ``mean``); ``summary``: the mean rows;
    ``trained`` / ``resumed``: unit ids trained by this call / taken from an earlier call of the same sweep;
    ``reused``: real-only units copied from another sweep on the same real split and training settings. On non-main
    processes of a distributed run the frames are empty."""

    table: pd.DataFrame
    summary: pd.DataFrame
    run_id: str
    run_folder: Path
    trained: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def _frame_digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes()).hexdigest()


def sweep_key(real: SplitTable, synthetic: SyntheticSet, classes: Sequence[str], config: RetrainedConfig,
              model_name: str, extra_info: str, num_processes: int) -> str:
    """Identity of a sweep for resuming: data, classes, training settings, model name, process count."""
    return config_hash({"stage": "retrained", "model_name": model_name, "extra_info": extra_info,
                        "classes": list(classes), "real": _frame_digest(real.frame), "real_root": str(real.image_root),
                        "synthetic": _frame_digest(synthetic.frame), "synthetic_root": str(synthetic.root),
                        "training": config.training_record(), "num_processes": num_processes})


def real_key(real: SplitTable, classes: Sequence[str], config: RetrainedConfig, num_processes: int) -> str:
    """Identity of what a real-only unit depends on: the real split, classes, training settings, process count.

    Units trained on real images alone are the same whatever the synthetic set, so every sweep on this split reuses
    them (the same real baseline for every generator compared).
    """
    training = {k: v for k, v in config.training_record().items() if k != "synthetic_from"}
    return config_hash({"stage": "retrained-real", "classes": list(classes), "real": _frame_digest(real.frame),
                        "real_root": str(real.image_root), "training": training, "num_processes": num_processes})


def _find_run(runs_root: Path, key: str) -> str | None:
    """The newest run folder whose ``sweep.json`` has ``key``."""
    found = []
    for path in runs_root.glob("*/sweep.json"):
        try:
            if json.loads(path.read_text()).get("sweep_key") == key:
                found.append(path.parent.name)
        except (OSError, json.JSONDecodeError):
            continue
    return max(found) if found else None


def _unit_done(unit_folder: Path, unit: Unit, test_paths: Sequence[str], key: str | None = None) -> bool:
    """Whether ``unit_folder`` holds this unit finished (done-marker last), tested on ``test_paths`` (and, if given,
    trained under real-only ``key``)."""
    try:
        done = json.loads((unit_folder / "done.json").read_text())
        predictions = pd.read_csv(unit_folder / "predictions_test.csv", usecols=["image"])
    except (OSError, json.JSONDecodeError, ValueError):
        return False
    return (done.get("unit") == unit.record() and (key is None or done.get("real_key") == key)
            and predictions["image"].astype(str).tolist() == list(test_paths))


def _reuse_real_unit(runs_root: Path, folder: Path, unit: Unit, key: str, test_paths: Sequence[str]) -> bool:
    """Copy a finished real-only ``unit`` of another run with the same real ``key`` into ``folder``; True if found."""
    import shutil

    for source in sorted(runs_root.glob(f"*/units/{unit.id}"), reverse=True):
        if source.parent.parent.resolve() == folder.resolve() or not _unit_done(source, unit, test_paths, key):
            continue
        target = folder / "units" / unit.id
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("done.json"))
        done = json.loads((source / "done.json").read_text())
        done["reused_from"] = done.get("reused_from") or source.parent.parent.name
        atomic_write_text(target / "done.json", json.dumps(done, indent=2) + "\n")
        return True
    return False


def _load_unit(folder: Path, unit: Unit, classes: Sequence[str], pools: Pools) -> UnitPredictions:
    """A finished unit's test and val scores, thresholds and training positives, as written (or copied) there."""
    target = folder / "units" / unit.id
    done = json.loads((target / "done.json").read_text())
    columns = [f"score:{c}" for c in classes]
    scores = pd.read_csv(target / "predictions_test.csv")[columns].to_numpy(np.float64)
    val_file = target / "predictions_val.csv"
    val_scores = pd.read_csv(val_file)[columns].to_numpy(np.float64) if val_file.is_file() else None
    return UnitPredictions(unit.spec.kind, unit.spec.label, unit.n_real, unit.n_synthetic, unit.seed, scores,
                           np.asarray(done["thresholds"], dtype=np.float64), done["info"], val_scores=val_scores,
                           threshold_policy=done["info"].get("threshold_policy", "val-youden"),
                           train_positives=pools.positives(unit.training))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, flush=True)


def _predict(model: torch.nn.Module, images: torch.Tensor | CachedImages, device: torch.device,
             num_workers: int = 0) -> np.ndarray:
    """Probabilities float64 ``(N, n_outputs)`` of a selected model (sigmoid outputs) for ``(N, 1, S, S)`` images."""
    from benchmark.models.training import predict_probabilities

    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    out = predict_probabilities(model, images, device, batch_size=128, num_workers=num_workers, sigmoid=False)
    model.to("cpu", memory_format=torch.contiguous_format)  # saved as on CPU
    return out.astype(np.float64)


def _thresholds(val_labels: np.ndarray, val_scores: np.ndarray, policy: str) -> np.ndarray:
    """Per class: Youden's J on the real validation split (0.5 where it lacks both labels), or 0.5."""
    out = np.full(val_labels.shape[1], 0.5)
    if policy == "0.5":
        return out
    for j in range(val_labels.shape[1]):
        known = ~np.isnan(val_labels[:, j])
        y = val_labels[known, j]
        if 0 < y.sum() < len(y):
            out[j] = youden_threshold(y, val_scores[known, j])
    return out


def _distributed_state() -> Any:
    """accelerate's process state, set up as :func:`~benchmark.models.training.train_classifier` does (``cpu`` when no
    GPU). Created first without ``cpu``, it would miss a CPU launch by torchrun / accelerate: one process each."""
    from accelerate import PartialState

    from benchmark.fidelity.features import release_process_group_at_exit

    state = PartialState(cpu=not torch.cuda.is_available())
    release_process_group_at_exit()
    return state


def _model_checksum(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _train_unit(unit: Unit, x: CachedImages, y: np.ndarray, val_x: CachedImages, val_y: np.ndarray,
                classes: Sequence[str], config: RetrainedConfig) -> dict[str, Any]:
    """Train the unit's model(s) (every process); returns models, histories, best epochs, val AUROCs by model name.

    ``x``: the unit's ``n`` training images from the cache, ``y`` ``(n, C)``; with ``val_x`` they are read into
    memory when together they fit ``config.memory_budget_gb``, else streamed (the same values either way).
    Multilabel trains one model named ``all``, binary one model per class (named after it) on that class's column.
    """
    from benchmark.models.training import TrainConfig, train_classifier

    train_config = TrainConfig(image_size=config.image_size, epochs=config.epochs, batch_size=config.batch_size,
                               lr=config.lr, weight_decay=config.weight_decay, seed=unit.seed, init=config.init,
                               balance=config.balance, augment=config.augment, patience=config.patience,
                               num_workers=config.num_workers, mixed_precision=config.mixed_precision,
                               cpu_threads=config.cpu_threads)
    if x.nbytes + val_x.nbytes <= config.memory_budget_gb * 1e9:
        x, val_x = x.load(), val_x.load()
    targets = {"all": slice(None)} if config.task == "multilabel" else {c: slice(j, j + 1) for j, c in
                                                                        enumerate(classes)}
    out: dict[str, Any] = {"models": {}, "histories": {}, "best_epochs": {}, "best_val_auroc": {}}
    for name, columns in targets.items():
        result = train_classifier(x, y[:, columns], val_x, val_y[:, columns], train_config, progress=config.progress,
                                  description=unit.id if name == "all" else f"{unit.id} {name}")
        out["models"][name] = result.model
        out["histories"][name] = result.history
        out["best_epochs"][name] = result.best_epoch
        out["best_val_auroc"][name] = result.best_val_auroc
    return out


def run_retrained_stage(
    real: SplitTable,
    synthetic: SyntheticSet,
    config: RetrainedConfig,
    *,
    model_name: str,
    extra_info: str = "",
    results_dir: str | Path | None = None,
    run_id: str | None = None,
) -> RetrainedOutcome:
    """Plan, train (or resume), evaluate and write a retrained-classifier sweep (SPEC §4 rows + run files).

    Sizes and the mixed matching are checked for every unit before anything trains. The run folder is ``run_id``'s,
    else (with ``config.resume``) the newest run of the same sweep, else a new one.
    """
    from accelerate.utils import broadcast_object_list, gather_object

    from benchmark.models.classifiers import save_checkpoint

    extra_info = keyed_extra_info(extra_info, config.test_labels)
    state = _distributed_state()
    main = state.is_main_process
    talk = config.progress and main
    classes = list(real.classes)
    check_writable(TABLE, results_dir)  # before any training: a full disk or a corrupt CSV stops here
    generator = check_generator_overlap(
        resolve_generator_training(synthetic.manifest.get("generator_training"),
                                   where=str(synthetic.root / "manifest.json")),
        real, allow=config.allow_generator_overlap)
    specs = parse_settings(config.settings, config.n_real, config.n_synthetic, config.mix_fraction)
    baseline = baseline_spec(specs, config.baseline)
    if baseline is not None:  # the baseline trains first, so every later unit can be compared as soon as it is done
        specs = [baseline] + [s for s in specs if s != baseline]
    pools = make_pools(real, synthetic, classes, config.synthetic_from)
    extra_columns = {**generator.columns(), "synthetic_from": pools.synthetic_from}
    units = plan_units(specs, config.seeds, pools, config.with_replacement)
    val, test = real.subset("val"), real.subset("test")
    if len(val.frame) == 0 or len(test.frame) == 0:
        raise DataError(f"{real.source}: the retrained stage needs real val and test rows (patient-disjoint splits)")
    val_y, test_y_all = val.labels(), test.labels()
    # --test-labels physician: every unit predicts every test image (so runs stay resumable and comparable), the
    # figures use the physician-read rows only (the others' labels count as unknown)
    test_y = np.where(test_label_mask(test, config.test_labels)[:, None], test_y_all, np.nan)
    if not any(0 < np.nansum(val_y[:, j]) < (~np.isnan(val_y[:, j])).sum() for j in range(len(classes))):
        raise DataError(f"{real.source}: no class has both labels among the real val rows; model selection needs them")
    test_paths = [str(p) for p in test.image_paths()]
    statistics = {"n_resamples": config.n_resamples, "seed": config.stats_seed, "spec_target": config.spec_target,
                  "test_patients": test.frame["patient_id"].astype(str).to_numpy(), "val_labels": val_y,
                  "val_patients": val.frame["patient_id"].astype(str).to_numpy()}

    key = sweep_key(real, synthetic, classes, config, model_name, extra_info, state.num_processes)
    real_only_key = real_key(real, classes, config, state.num_processes)
    decision: list[Any] = [None, [], [], ""]
    if main:
        try:
            decision = list(_open_run(units, key, real_only_key, config, run_id, results_dir, test_paths, real,
                                      synthetic, model_name, extra_info, classes))
        except (ValueError, OSError) as exc:
            decision = [None, [], [], str(exc)]
    decision = broadcast_object_list(decision, from_process=0) if state.num_processes > 1 else decision
    run_id, done_ids, reused, error = decision
    if error:
        raise ValueError(error)
    folder = run_dir(run_id, results_dir)
    done_ids = set(done_ids) | set(reused)
    todo = [u for u in units if u.id not in done_ids]
    _say(f"retrained sweep {run_id}: {len(units)} units ({len(units) - len(todo) - len(reused)} done earlier, "
         f"{len(reused)} real-only taken from other runs, {len(todo)} to train) in {folder}", talk)

    real_needed = np.unique(np.concatenate([u.training.real for u in todo] or [np.zeros(0, np.int64)]))
    synthetic_needed = np.unique(np.concatenate([u.training.synthetic for u in todo] or [np.zeros(0, np.int64)]))
    real_x = synthetic_x = val_x = test_x = None
    if todo:
        real_paths, synthetic_paths = real.image_paths(), synthetic.image_paths()
        lists = {"real training images": [real_paths[int(pools.train_rows[i])] for i in real_needed],
                 "synthetic training images": [synthetic_paths[int(pools.synthetic_rows[i])] for i in synthetic_needed],
                 "real val images": val.image_paths(), "real test images": test.image_paths()}
        cache = ImageCache(config.image_cache or default_image_cache_dir(results_dir), config.image_size)
        _build_cache(cache, lists, config, state, talk)
        real_x, synthetic_x, val_x, test_x = (cache.images(paths) for paths in lists.values())

    predictions: list[UnitPredictions] = []
    trained, resumed = [], []
    for number, unit in enumerate(units, 1):
        if unit.id in done_ids:
            if unit.id not in reused:
                resumed.append(unit.id)
            if main:
                predictions.append(_load_unit(folder, unit, classes, pools))
            continue
        _say(f"[{number}/{len(units)}] {unit.spec.label} seed {unit.seed}: {unit.n_real} real + {unit.n_synthetic} "
             f"synthetic training images", talk)
        started = time.perf_counter()
        train_x = (real_x.select(np.searchsorted(real_needed, unit.training.real))
                   + synthetic_x.select(np.searchsorted(synthetic_needed, unit.training.synthetic)))
        trained_models = _train_unit(unit, train_x, unit.training.labels(pools), val_x, val_y, classes, config)
        checksums = {name: _model_checksum(model) for name, model in trained_models["models"].items()}
        every = gather_object([checksums]) if state.num_processes > 1 else [checksums]
        if any(c != checksums for c in every):
            raise RuntimeError(f"{unit.id}: the processes selected different models ({every}); DDP went out of step")
        trained.append(unit.id)
        if main:
            prediction = _save_unit(folder, unit, trained_models, pools, real, synthetic, classes, config, val_x, val_y,
                                    test_x, test_y_all, test_paths, time.perf_counter() - started, state,
                                    save_checkpoint, real_only_key)
            predictions.append(prediction)
            base = [p for p in predictions if baseline is not None and p.setting_spec == baseline.label
                    and p.seed == unit.seed and p is not prediction]
            partial = evaluate_units([*base, prediction], test_y, classes,
                                     baseline=baseline.label if baseline else None, mean_rows=False, **statistics)
            partial = partial[(partial["setting_spec"] == unit.spec.label) & (partial["seed"] == str(unit.seed))]
            _write_rows(partial, model_name, extra_info, run_id, real, synthetic, config, results_dir,
                        folder=folder, extra_columns=extra_columns, copy_name=f"rows_{unit.id}.csv")
        state.wait_for_everyone()

    if not main:
        return RetrainedOutcome(pd.DataFrame(), pd.DataFrame(), run_id, folder, trained, resumed, reused)
    table = evaluate_units(predictions, test_y, classes, baseline=baseline.label if baseline else None,
                           progress="retrained: intervals per class" if talk else None, **statistics)
    table = _write_rows(table, model_name, extra_info, run_id, real, synthetic, config, results_dir, folder=folder,
                        extra_columns=extra_columns)
    summary = table[table["seed"] == "mean"].reset_index(drop=True)
    atomic_write_text(folder / "summary.txt", format_retrained_table(summary) + "\n")
    plot_sweep_curves(folder, units)
    info = json.loads((folder / "sweep.json").read_text())
    info.update({"status": "complete", "completed": [u.id for u in units]})
    atomic_write_text(folder / "sweep.json", json.dumps(info, indent=2) + "\n")
    return RetrainedOutcome(table, summary, run_id, folder, trained, resumed, reused)


def _build_cache(cache: ImageCache, lists: dict[str, Sequence[Path]], config: RetrainedConfig, state: Any,
                 talk: bool) -> None:
    """Main process: decode into ``cache`` every image of ``lists`` not yet there; the others wait. An error (a disk
    too small, an unreadable image) stops every process with the main process's message."""
    failure: DataError | None = None
    if state.is_main_process:
        try:
            for what, paths in lists.items():
                cache.build(paths, num_workers=config.num_workers, progress=talk, what=what)
        except DataError as exc:
            failure = exc
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([str(failure) if failure else ""], from_process=0)[0]
        failure = failure or (DataError(message) if message else None)
    if failure is not None:
        raise failure


def _open_run(units: Sequence[Unit], key: str, real_only_key: str, config: RetrainedConfig, run_id: str | None,
              results_dir: str | Path | None, test_paths: Sequence[str], real: SplitTable, synthetic: SyntheticSet,
              model_name: str, extra_info: str,
              classes: Sequence[str]) -> tuple[str, list[str], list[str], str]:
    """Main process: choose the run folder (given, resumed or new), write ``sweep.json``, list the units done here
    and the real-only units copied from other runs."""
    runs_root = table_path(TABLE, results_dir).parent / "runs"
    if run_id is None and config.resume:
        run_id = _find_run(runs_root, key)
    run_id = run_id or new_run_id("retrained")
    folder = run_dir(run_id, results_dir)
    sweep_file = folder / "sweep.json"
    if sweep_file.is_file():
        existing = json.loads(sweep_file.read_text())
        if existing.get("sweep_key") != key:
            raise ValueError(f"{folder} holds another sweep (other data, classes or training settings); give a new "
                             "run id or none")
    done = [u.id for u in units if _unit_done(folder / "units" / u.id, u, test_paths)]
    reused = [u.id for u in units if u.id not in done and u.n_synthetic == 0 and config.resume
              and _reuse_real_unit(runs_root, folder, u, real_only_key, test_paths)]
    info = {"sweep_key": key, "real_key": real_only_key, "stage": "retrained", "model_name": model_name,
            "extra_info": extra_info, "real_csv": str(real.source), "synthetic_dir": str(synthetic.root),
            "classes": list(classes), "config": asdict(config),
            "units": [u.record() | {"id": u.id} for u in units], "status": "running", "command": sys.argv}
    atomic_write_text(sweep_file, json.dumps(info, indent=2, default=str) + "\n")
    return run_id, done, reused, ""


def _save_unit(folder: Path, unit: Unit, trained: dict[str, Any], pools: Pools, real: SplitTable,
               synthetic: SyntheticSet, classes: Sequence[str], config: RetrainedConfig, val_x: CachedImages,
               val_y: np.ndarray, test_x: CachedImages, test_y: np.ndarray, test_paths: Sequence[str], elapsed: float,
               state: Any, save_checkpoint: Any, real_only_key: str) -> UnitPredictions:
    """Main process: checkpoint(s), predictions, training list, curves, then the done-marker (written last)."""
    target = folder / "units" / unit.id
    target.mkdir(parents=True, exist_ok=True)
    device = state.device
    if config.task == "multilabel":
        model = trained["models"]["all"]
        val_scores = _predict(model, val_x, device, config.num_workers)
        test_scores = _predict(model, test_x, device, config.num_workers)
    else:
        val_scores = np.column_stack([_predict(trained["models"][c], val_x, device, config.num_workers)[:, 0]
                                      for c in classes])
        test_scores = np.column_stack([_predict(trained["models"][c], test_x, device, config.num_workers)[:, 0]
                                       for c in classes])
    thresholds = _thresholds(val_y, val_scores, config.threshold)
    trained_on = ([real.dataset] if unit.n_real else []) + ([f"synthetic:{synthetic.model_name}"]
                                                           if unit.n_synthetic else [])
    for name, model in trained["models"].items():
        outputs = list(classes) if name == "all" else [name]
        save_checkpoint(model, target / ("checkpoint" if name == "all" else f"checkpoint_{_slug(name)}"), outputs,
                        trained_on=trained_on, input_size=config.image_size,
                        extra={"unit": unit.record(), "best_epoch": trained["best_epochs"][name],
                               "val_mean_auroc": trained["best_val_auroc"][name]})
    for split, scores, labels, paths in (("val", val_scores, val_y, [str(p) for p in
                                                                      real.subset("val").image_paths()]),
                                         ("test", test_scores, test_y, list(test_paths))):
        frame = pd.DataFrame({"image": paths})
        for j, name in enumerate(classes):
            frame[f"label:{name}"] = labels[:, j]
            frame[f"score:{name}"] = scores[:, j]
        frame.to_csv(target / f"predictions_{split}.csv", index=False)
    real_paths, synthetic_paths = real.image_paths(), synthetic.image_paths()
    listing = pd.DataFrame({
        "source": ["real"] * unit.n_real + ["synthetic"] * unit.n_synthetic,
        "image": [str(real_paths[int(pools.train_rows[i])]) for i in unit.training.real]
        + [str(synthetic_paths[int(pools.synthetic_rows[i])]) for i in unit.training.synthetic],
        "split_row": [int(pools.train_rows[i]) for i in unit.training.real] + [""] * unit.n_synthetic,
        "synthetic_row": [""] * unit.n_real + [int(pools.synthetic_rows[i]) for i in unit.training.synthetic],
        "replaces_split_row": [""] * unit.n_real + ([int(pools.train_rows[i]) for i in unit.training.replaced]
                                                    if len(unit.training.replaced) else [""] * unit.n_synthetic)})
    listing.to_csv(target / "training_set.csv", index=False)
    atomic_write_text(target / "history.json", json.dumps({"histories": trained["histories"],
                                                           "best_epochs": trained["best_epochs"]}, indent=1) + "\n")
    plot_learning_curves(trained["histories"], trained["best_epochs"], target / "learning_curve.png",
                         f"{unit.spec.label}, seed {unit.seed}")
    sources = pools.synthetic_source[unit.training.synthetic]
    split_of = dict(zip(range(len(real.frame)), real.frame["split"], strict=True))
    from_splits = pd.Series([split_of.get(int(s), "unknown") for s in sources]).value_counts().to_dict()
    best_auroc = [v for v in trained["best_val_auroc"].values() if np.isfinite(v)]
    info = {"n_train": unit.n_real + unit.n_synthetic, "n_replaced": len(unit.training.replaced),
            "best_epoch": (next(iter(trained["best_epochs"].values())) if len(trained["best_epochs"]) == 1
                           else float(np.mean(list(trained["best_epochs"].values())))),
            "best_val_auroc": float(np.mean(best_auroc)) if best_auroc else math.nan,
            "synthetic_source_splits": ";".join(f"{k}:{v}" for k, v in sorted(from_splits.items())),
            "train_seconds": round(elapsed, 1), "num_processes": state.num_processes, "task": config.task,
            "threshold_policy": config.threshold}
    done = {"unit": unit.record(), "real_key": real_only_key if unit.n_synthetic == 0 else None,
            "thresholds": thresholds.tolist(), "info": info,
            "model_checksums": {n: _model_checksum(m) for n, m in trained["models"].items()}}
    atomic_write_text(target / "done.json", json.dumps(done, indent=2) + "\n")
    # What was just written is what a resumed run reads back: evaluate from the files for identical results.
    return _load_unit(folder, unit, classes, pools)


def _write_rows(table: pd.DataFrame, model_name: str, extra_info: str, run_id: str, real: SplitTable,
                synthetic: SyntheticSet, config: RetrainedConfig, results_dir: str | Path | None, *, folder: Path,
                extra_columns: dict[str, str], copy_name: str = "metrics.csv") -> pd.DataFrame:
    """Add the identifying columns, save the run's copy (``folder/copy_name``) and upsert into
    ``results/utility_retrained.csv``; returns the full rows."""
    table = table.copy()
    table.insert(0, "extra_info", extra_info)
    table.insert(0, "model_name", model_name)
    table["real_dataset"] = real.dataset
    table["synthetic_dir"] = str(synthetic.root)
    table["architecture"] = ARCHITECTURE
    table["image_size"] = config.image_size
    table["epochs"] = config.epochs
    table["init"] = config.init or "scratch"
    table["balance"] = config.balance
    table["n_resamples"] = config.n_resamples
    table["model_selection"] = "best mean AUROC on the real val split"
    table["run_id"] = run_id
    table["test_labels"] = config.test_labels
    table["preset"] = config.preset
    for column, value in extra_columns.items():
        table[column] = value
    record = {**asdict(config), "stage": "retrained", "model_name": model_name}
    write_run_rows(TABLE, table, folder, results_dir=results_dir, config=record, run_id=run_id, copy_name=copy_name)
    return table
