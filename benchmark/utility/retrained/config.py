"""The retrained stage's settings (:class:`RetrainedConfig`) and the constants its modules share: the results table,
the setting kinds, tasks and threshold policies, the specificity target, the metrics of a row and of the printed
table, and the architecture trained."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from benchmark.data.generator_training import SYNTHETIC_FROM
from benchmark.utility.test_labels import TEST_LABELS

TABLE = "utility_retrained"
SETTING_KINDS: tuple[str, ...] = ("real", "synthetic", "real+synthetic", "mixed")
#: named protocols ``--settings NAME`` expands to. ``chexgenbench``: CheXGenBench's four downstream settings on the
#: split's train rows: all_original, all_synthetic (one image per prompt), mixed (half of the rows replaced by the
#: synthetic image made from their own prompt) and augmented (every real row plus every synthetic image)
SETTING_PRESETS: dict[str, tuple[str, ...]] = {
    "chexgenbench": ("real:all", "synthetic:all", "mixed:all@0.5", "real+synthetic:all+all"),
}
TASKS: tuple[str, ...] = ("multilabel", "binary")
THRESHOLDS: tuple[str, ...] = ("val-youden", "0.5")
#: sensitivity is reported at this specificity by default (``--spec-target``), its threshold chosen on the test images
SPEC_TARGET = 0.9
#: a comparison whose smallest detectable AUROC difference (80% power, two-sided 0.05) exceeds this is underpowered
DETECTABLE_LIMIT = 0.1
THRESHOLD_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "specificity", "f1")
RESAMPLED: tuple[str, ...] = ("sens_at_spec", *THRESHOLD_METRICS)
#: the metrics of every row, each with its interval; every one is compared with the baseline
ROW_METRICS: tuple[str, ...] = ("auroc", *RESAMPLED)
COMPARED: tuple[str, ...] = ROW_METRICS
#: the printed table leads with the metrics that do not depend on prevalence, then those that do
PREVALENCE_FREE: tuple[str, ...] = ("auroc", "sens_at_spec", "recall", "specificity")
AT_PREVALENCE: tuple[str, ...] = ("accuracy", "precision")
TABLE_METRICS: tuple[str, ...] = (*PREVALENCE_FREE, *AT_PREVALENCE)
ARCHITECTURE = "DenseNet-121 (torchxrayvision, 1 channel)"


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class RetrainedConfig:
    """Settings of the stage. Everything but the statistics and the progress bar shapes the trained models."""

    settings: tuple[str, ...] = ("real", "synthetic", "real+synthetic", "mixed")
    n_real: str = "all"
    n_synthetic: str = "all"
    mix_fraction: float = 0.5
    seeds: tuple[int, ...] = (0, 1, 2)
    task: str = "multilabel"
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    balance: str = "none"
    init: str | None = None
    augment: bool = True
    patience: int = 3
    mixed_precision: str = "auto"  # resolved on creation: bf16 / fp16 on a GPU, no on CPU
    num_workers: int = 0
    memory_budget_gb: float = 2.0  # a unit whose training + val images fit is trained from memory, else streamed
    image_cache: str | None = None  # folder of the decoded-image cache (default: $SYNTHCXR_CACHE/images)
    cpu_threads: int | None = None
    with_replacement: bool = False
    synthetic_from: str = "train"
    baseline: str | None = None
    threshold: str = "val-youden"
    spec_target: float = SPEC_TARGET
    n_resamples: int = 2000
    stats_seed: int = 0
    resume: bool = True
    progress: bool = True
    allow_generator_overlap: bool = False
    test_labels: str = "all"  # "physician": score only test rows a physician labelled (benchmark.utility.test_labels)
    preset: str = ""  # what ran (benchmark.core.presets): quick, paper, ...+custom; written in every row

    def __post_init__(self) -> None:
        if isinstance(self.settings, str):
            self.settings = tuple(s.strip() for s in self.settings.split(",") if s.strip())
        if isinstance(self.seeds, (str, int)):
            self.seeds = str(self.seeds).split(",")
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        for name, value, allowed in (("task", self.task, TASKS), ("threshold", self.threshold, THRESHOLDS),
                                     ("synthetic_from", self.synthetic_from, SYNTHETIC_FROM),
                                     ("balance", self.balance, ("none", "loss", "sampler")),
                                     ("test_labels", self.test_labels, TEST_LABELS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not 0.0 < self.mix_fraction <= 1.0:
            raise ValueError(f"mix_fraction must be in (0, 1], got {self.mix_fraction}")
        if not 0.0 < self.spec_target < 1.0:
            raise ValueError(f"spec_target must be in (0, 1), got {self.spec_target}")
        if self.init in ("", "scratch", "none"):
            self.init = None
        if self.memory_budget_gb < 0:
            raise ValueError(f"memory_budget_gb must be at least 0, got {self.memory_budget_gb}")
        from benchmark.models.training import resolve_mixed_precision

        self.mixed_precision = resolve_mixed_precision(self.mixed_precision)

    def training_record(self) -> dict[str, Any]:
        """The fields that shape a trained model (what a resumed run must share)."""
        skip = {"settings", "seeds", "n_real", "n_synthetic", "mix_fraction", "baseline", "n_resamples", "stats_seed",
                "resume", "progress", "num_workers", "spec_target", "allow_generator_overlap",
                "test_labels", "memory_budget_gb", "image_cache", "preset"}
        return {k: v for k, v in asdict(self).items() if k not in skip}
