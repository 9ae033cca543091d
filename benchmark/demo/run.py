"""The built-in demo: phantom data, three demo generators and a leakage-safe "pretrained" classifier, end to end.

Two phantom populations with disjoint patients play the two roles of the leakage-safe protocol: the *real* data
set the generators imitate (``dataset = demo``), and a separate population on which the harness trains a
DenseNet-121 that serves as the pretrained classifier (``trained_on = demo-classifier-population``, cached under
``assets/cache/``). The demo generators make images from the real split's test rows:

* ``demo-faithful``: the phantom generator itself, with unseen seeds (new anatomy) and each row's finding;
* ``demo-label-blind``: phantoms whose finding is drawn at random, ignoring the row's label;
* ``demo-untrained-ddpm``: a tiny untrained class-conditional diffusers DDPM run through the real generation code
  (:mod:`benchmark.generation.generate`) whose conditioning has not been learned: every class maps to one shared class
  embedding, so its images (noise) ignore the label. (With an untrained *random* class embedding the noise would
  depend on the class after all, and a classifier can pick that up: that is label signal, just not a useful one.)

Both label-blind generators carry no label signal by construction; the label-blind phantoms look like the real
data, the DDPM's noise does not. A harness that works ranks them faithful > label-blind > untrained (the rule is
:data:`benchmark.utility.cli.RANKING_RULE`). The retrained stage trains on faithful and on label-blind phantoms
made from the *train* rows (:func:`run_demo_retrained`): the label-blind sweep is its negative control, whose
classifiers stay near AUROC 0.5 on real images while the faithful ones do not. Every number is reproducible: images
and bootstraps are seeded, and training runs on ``cpu_threads`` torch threads on CPU (CPU training results depend on
the thread count).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmark import __version__
from benchmark.core.provenance import environment_lock, git_commit
from benchmark.data import read_split_csv
from benchmark.data.synthetic import SyntheticSet, read_synthetic_set, write_synthetic_set
from benchmark.demo import phantoms
from benchmark.models.classifiers import Classifier, load_checkpoint, save_checkpoint

LOG = logging.getLogger(__name__)
CLASSIFIER_DATASET = "demo-classifier-population"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish in a few minutes on 2 CPU cores (classifier training included)."""

    image_size: int = 32
    real_patients: int = 300
    classifier_patients: int = 300
    classifier_val_patients: int = 50
    images_per_patient: int = 2
    classifier_epochs: int = 6
    classifier_batch_size: int = 32
    ddpm_steps: int = 10
    seed: int = 0
    cpu_threads: int = 1  # CPU training results depend on the thread count: one fixed count, the same everywhere


def assets_cache() -> Path:
    """Where the demo caches what it trains: ``$SYNTHCXR_ASSETS`` or ``assets/cache`` of the checkout."""
    return Path(os.environ.get("SYNTHCXR_ASSETS") or REPO_ROOT / "assets" / "cache")


def classifier_cache_key(config: DemoConfig) -> str:
    """Changes when anything that shapes the classifier does: its settings, the phantom generator, the harness."""
    material = json.dumps({"config": asdict(config), "phantoms": inspect.getsource(phantoms),
                           "version": __version__}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def demo_classifier_dir(config: DemoConfig = DemoConfig()) -> Path:
    """The checkpoint folder of the demo classifier (it exists once :func:`demo_classifier` has trained it)."""
    return assets_cache() / "demo_classifier" / classifier_cache_key(config)


def demo_classifier(config: DemoConfig, progress: bool = True) -> Classifier:
    """The DenseNet-121 trained on the classifier population (disjoint from the real data), cached.

    Safe when several processes ask at once (two stages, or test workers, sharing one cache): one trains while the
    others wait on a file lock beside the folder, then load what it saved."""
    import filelock

    folder = demo_classifier_dir(config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(f"{folder}.lock"):
        if not (folder / "config.json").is_file():
            _train_demo_classifier(config, folder, progress)
    return _named(load_checkpoint(folder), folder)


def _train_demo_classifier(config: DemoConfig, folder: Path, progress: bool) -> None:
    from benchmark.data.preprocess import xrv_input
    from benchmark.models.training import TrainConfig, train_classifier

    offset = 1_000_000  # the real data's patients are numbered from 0; these never meet them
    train_images, train_frame = phantoms.make_phantom_images(config.classifier_patients, config.images_per_patient,
                                                             config.image_size, seed=config.seed + 101,
                                                             patient_offset=offset)
    val_images, val_frame = phantoms.make_phantom_images(config.classifier_val_patients, config.images_per_patient,
                                                         config.image_size, seed=config.seed + 202,
                                                         patient_offset=offset + config.classifier_patients)

    def as_tensor(images: np.ndarray) -> torch.Tensor:
        from benchmark.data import XrayImage

        return torch.from_numpy(np.stack([xrv_input(XrayImage(im, 8, Path("phantom"), "L"), config.image_size)
                                          for im in images]))

    classes = list(phantoms.FINDINGS)
    result = train_classifier(
        as_tensor(train_images), train_frame[classes].to_numpy(np.float32),
        as_tensor(val_images), val_frame[classes].to_numpy(np.float32),
        TrainConfig(image_size=config.image_size, epochs=config.classifier_epochs,
                    batch_size=config.classifier_batch_size, lr=2e-3, seed=config.seed,
                    patience=config.classifier_epochs, cpu_threads=config.cpu_threads),
        progress=progress, description="demo classifier")
    save_checkpoint(result.model, folder, classes, trained_on=[CLASSIFIER_DATASET], input_size=config.image_size,
                    extra={"best_epoch": result.best_epoch, "val_mean_auroc": result.best_val_auroc,
                           "history": result.history, "demo_config": asdict(config)})


def _named(classifier: Classifier, folder: Path) -> Classifier:
    """The demo classifier keyed by its cache key, not by the checkout-dependent path of its folder, so result rows
    from any checkout of the same demo share their key."""
    classifier.name = f"demo-densenet121-{folder.name}"
    return classifier


def _rows_for(test: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    rows = test[["prompt", "source_row", "class_label", *classes]].copy()
    rows.insert(2, "seed", "")
    return rows


def _phantom_manifest(model: str, classes: list[str], config: DemoConfig, *, seed_offset: int) -> dict:
    """Manifest of a phantom synthetic set: its model, classes and how it was made (each image's seed is in
    ``synthetic.csv`` as ``<seed>/<source_row>``)."""
    return {"model": model, "classes": classes, "generator": "benchmark.demo.phantoms",
            "seed": config.seed + seed_offset, "image_size": config.image_size, "git_commit": git_commit(),
            "env_lock": environment_lock(),
            "harness_version": __version__, "generator_training": "none"}


def faithful_set(folder: Path, test: pd.DataFrame, classes: list[str], config: DemoConfig) -> SyntheticSet:
    """Phantoms with each row's finding but new anatomy (unseen seeds): a generator that learned the labels."""
    images = []
    for source_row, finding in zip(test["source_row"], test["finding"], strict=True):
        rng = np.random.default_rng([config.seed + 303, int(source_row)])
        images.append(phantoms.render_phantom(phantoms.sample_anatomy(rng), finding, config.image_size, rng))
    rows = _rows_for(test, classes)
    rows["seed"] = [f"{config.seed + 303}/{r}" for r in test["source_row"]]
    return write_synthetic_set(folder, np.stack(images), rows,
                               _phantom_manifest("demo-faithful", classes, config, seed_offset=303))


def label_blind_set(folder: Path, test: pd.DataFrame, classes: list[str], config: DemoConfig) -> SyntheticSet:
    """Phantoms whose finding is drawn at random, whatever the row's label says: a generator that ignores labels."""
    images = []
    for source_row in test["source_row"]:
        rng = np.random.default_rng([config.seed + 404, int(source_row)])
        finding = str(rng.choice(phantoms.FINDINGS))
        images.append(phantoms.render_phantom(phantoms.sample_anatomy(rng), finding, config.image_size, rng))
    rows = _rows_for(test, classes)
    rows["seed"] = [f"{config.seed + 404}/{r}" for r in test["source_row"]]
    return write_synthetic_set(folder, np.stack(images), rows,
                               _phantom_manifest("demo-label-blind", classes, config, seed_offset=404))


UNTRAINED_DDPM_RECIPE = {"builder": "build_class_conditional", "class_embedding": "one vector shared by all classes"}


def untrained_ddpm_set(folder: Path, split_csv: Path, config: DemoConfig) -> SyntheticSet:
    """A tiny untrained class-conditional DDPM, built from config and run through the real generation code.

    Its class embedding is one vector shared by every class, so what it generates does not depend on the label.
    """
    import shutil

    from benchmark.demo.models import build_class_conditional
    from benchmark.generation.generate import GenerationConfig, generate
    from benchmark.generation.pipelines import ClassConditionalPipeline

    model = folder.parent / "untrained_ddpm_model"
    recipe = {**UNTRAINED_DDPM_RECIPE, "image_size": config.image_size, "seed": config.seed}
    marker = model / "demo_recipe.json"
    if not marker.is_file() or json.loads(marker.read_text()) != recipe:
        for stale in (model, folder):  # a demo folder from an older recipe: its model and images are not this one's
            shutil.rmtree(stale, ignore_errors=True)
        build_class_conditional(model, num_classes=len(phantoms.FINDINGS), image_size=config.image_size,
                                seed=config.seed)
        pipeline = ClassConditionalPipeline.from_pretrained(model)
        with torch.no_grad():
            embedding = pipeline.unet.class_embedding.weight
            embedding.copy_(embedding[:1].expand_as(embedding))
        pipeline.save_pretrained(model)
        marker.write_text(json.dumps(recipe, indent=2) + "\n")
    generate(GenerationConfig(model=str(model), prompts=str(split_csv), out=str(folder), split="test",
                              generator_training="none",
                              steps=config.ddpm_steps, batch_size=16, seed=config.seed,
                              command=["demo", "untrained-ddpm"]))
    return read_synthetic_set(folder)


@dataclass
class DemoData:
    """Everything the demo made: the real split, the classifier, the synthetic sets by model name (made from the
    test rows, for the pretrained stage), and a faithful and a label-blind set made from the *train* rows (training
    data for the retrained stage: the label-blind one is its negative control)."""

    split_csv: Path
    classifier: Classifier
    synthetic: dict[str, SyntheticSet]
    faithful_train: SyntheticSet | None = None
    classifier_dir: Path | None = None
    label_blind_train: SyntheticSet | None = None


def demo_retrained_config(config: DemoConfig = DemoConfig()):
    """The retrained-stage sweep of the demo: every setting, two synthetic sizes for the data-size curves, 2 seeds,
    a small DenseNet-121 budget at demo size (6 epochs: with 4, some seeds of the real baseline stayed near chance,
    e.g. normal 0.56 and cardiomegaly 0.70 for seed 2; with 6, real:200 reached 0.77-1.0 for every class and seed
    0-5)."""
    from benchmark.utility.retrained import RetrainedConfig

    return RetrainedConfig(settings=("real:200", "synthetic:100", "synthetic:200", "real+synthetic:200+100",
                                     "real+synthetic:200+200", "mixed:200"),
                           seeds=(0, 1), image_size=config.image_size, epochs=6, batch_size=16, lr=3e-3,
                           augment=False, patience=6, synthetic_from="train", cpu_threads=config.cpu_threads)


#: the negative control's sweep: the label-blind set alone, beside the real baseline shared with the faithful sweep
NEGATIVE_CONTROL_SETTINGS: tuple[str, ...] = ("real:200", "synthetic:200")
#: three seeds: the seed-to-seed spread is estimated, so its interval and its test against real are the combined ones
NEGATIVE_CONTROL_SEEDS: tuple[int, ...] = (0, 1, 2)


def demo_negative_control_config(config: DemoConfig = DemoConfig()):
    """The retrained demo's negative control: the label-blind generator's images (made from the train rows, their
    findings drawn at random) trained on alone, with the faithful sweep's training settings, so its ``real:200``
    units of seeds 0 and 1 are the faithful sweep's (reused, not trained again). Three seeds (4 units to train): a
    label-blind model's AUROC per class strays from 0.5 with a random sign per seed, which only an interval that
    holds the seed spread covers."""
    from dataclasses import replace

    return replace(demo_retrained_config(config), settings=NEGATIVE_CONTROL_SETTINGS, seeds=NEGATIVE_CONTROL_SEEDS)


def run_demo_retrained(real, demo: DemoData, *, extra_info: str = "", results_dir: str | Path | None = None,
                       config: DemoConfig = DemoConfig(), say=print) -> dict:
    """The demo's retrained stage: the faithful sweep, then the label-blind negative control; prints both tables and
    a line that sets the two synthetic-only settings side by side. Returns the outcomes by model name.

    A stage that works separates them: trained on faithful images, the classifier finds the findings in real test
    images (AUROC well above 0.5); trained on label-blind images it cannot (AUROC near 0.5, its CI covering 0.5)."""
    from benchmark.utility.retrained import format_retrained_table, run_retrained_stage

    outcomes = {}
    for name, synthetic, sweep in (("demo-faithful", demo.faithful_train, demo_retrained_config(config)),
                                   ("demo-label-blind", demo.label_blind_train, demo_negative_control_config(config))):
        outcome = run_retrained_stage(real, synthetic, sweep, model_name=name, extra_info=extra_info,
                                      results_dir=results_dir)
        say(f"\n== retrained-classifier utility, {name} (run {outcome.run_id}) ==")
        say(format_retrained_table(outcome.summary))
        outcomes[name] = outcome
    say(negative_control_summary(outcomes))
    return outcomes


def negative_control_summary(outcomes: dict) -> str:
    """One line per demo generator: its ``synthetic:200`` real-test AUROC per class (mean over seeds [95% CI]) and
    how many of the classes' CIs cover 0.5."""
    lines = ["retrained negative control (trained on synthetic:200 alone, tested on real images):"]
    for name, outcome in outcomes.items():
        rows = outcome.summary[outcome.summary["setting_spec"] == "synthetic:200"]
        cells = [f"{r['class']} {r['auroc']:.2f} [{r['auroc_ci_low']:.2f}, {r['auroc_ci_high']:.2f}]"
                 for _, r in rows.iterrows()]
        covering = int(((rows["auroc_ci_low"] <= 0.5) & (rows["auroc_ci_high"] >= 0.5)).sum())
        lines.append(f"  {name:<18} mean AUROC {rows['auroc'].mean():.3f}; {'; '.join(cells)}; CI covers 0.5 in "
                     f"{covering}/{len(rows)} classes")
    return "\n".join(lines)


def build_demo(workdir: str | Path, config: DemoConfig = DemoConfig(), progress: bool = True) -> DemoData:
    """Make (or reuse) the demo's real data, classifier and synthetic sets under ``workdir``."""
    workdir = Path(workdir)
    real_dir = workdir / "real"
    split_csv = real_dir / "split.csv"
    if not split_csv.exists():
        phantoms.write_demo_dataset(real_dir, n_patients=config.real_patients,
                                    images_per_patient=config.images_per_patient, size=config.image_size,
                                    seed=config.seed)
    table = read_split_csv(split_csv)
    frame = table.frame.copy()
    frame["source_row"] = np.arange(len(frame))
    frame["finding"] = [table.classes[int(c)] for c in frame["class_label"]]
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    classifier = demo_classifier(config, progress=progress)
    synthetic_dir = workdir / "synthetic"
    sets = {
        "demo-faithful": faithful_set(synthetic_dir / "faithful", test, table.classes, config),
        "demo-label-blind": label_blind_set(synthetic_dir / "label_blind", test, table.classes, config),
        "demo-untrained-ddpm": untrained_ddpm_set(synthetic_dir / "untrained_ddpm", split_csv, config),
    }
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    faithful_train = faithful_set(synthetic_dir / "faithful_train", train, table.classes, config)
    label_blind_train = label_blind_set(synthetic_dir / "label_blind_train", train, table.classes, config)
    return DemoData(split_csv, classifier, sets, faithful_train, demo_classifier_dir(config), label_blind_train)
