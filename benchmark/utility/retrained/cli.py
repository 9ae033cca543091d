"""Retrained-classifier utility (RoentGen's data-augmentation tables): does training on synthetic images help a
classifier on real ones?

The stage's command line (``python -m benchmark.utility.retrained``; ``accelerate launch`` / ``torchrun`` for DDP)
and its flags, which the main job's CLI (:mod:`benchmark.utility.cli`) shares: :func:`add_retrained_arguments`,
:func:`retrained_config_from_args`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from types import SimpleNamespace

from benchmark.core.cli import add_set_arguments
from benchmark.data import DataError
from benchmark.data.generator_training import SYNTHETIC_FROM
from benchmark.utility.retrained.config import SPEC_TARGET, TASKS, THRESHOLDS, RetrainedConfig
from benchmark.utility.test_labels import add_test_labels_argument


def add_retrained_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the stage's flags to ``parser`` (shared ones such as --n-resamples, --num-workers, --seed are not added)."""
    group = parser.add_argument_group("retrained-classifier utility")
    default = SimpleNamespace(**{f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
                                 for f in fields(RetrainedConfig)})  # the defaults, without __post_init__'s torch
    group.add_argument("--settings", default=",".join(default.settings),
                       help="comma-separated kind[:size]: real[:N], synthetic[:M], real+synthetic[:N+M], "
                            "mixed[:N[@F]]; sizes are counts (1100, 1.1k), counts at most (max200), fractions "
                            "(0.5, 50%%) or all, e.g. "
                            "'real:1.1k,synthetic:1.1k,mixed:1.1k,synthetic:5.5k,real+synthetic:1.1k+5.5k'; or "
                            "'chexgenbench': CheXGenBench's four settings (real:all, synthetic:all, mixed:all@0.5, "
                            "real+synthetic:all+all)")
    group.add_argument("--n-real", default=default.n_real, help="real size where a setting gives none (default all)")
    group.add_argument("--n-synthetic", default=default.n_synthetic,
                       help="synthetic size where a setting gives none (default all)")
    group.add_argument("--mix-fraction", type=float, default=default.mix_fraction,
                       help="mixed: fraction of the real rows replaced by their synthetic images (default 0.5)")
    group.add_argument("--seeds", default=",".join(map(str, default.seeds)), help="training seeds (default 0,1,2)")
    group.add_argument("--task", choices=TASKS, default=default.task,
                       help="one multi-label model, or one binary one-vs-rest model per class")
    group.add_argument("--epochs", type=int, default=default.epochs)
    group.add_argument("--image-size", type=int, default=default.image_size, help="training size in px (default 224)")
    group.add_argument("--train-batch-size", type=int, default=default.batch_size, help="per process")
    group.add_argument("--lr", type=float, default=default.lr)
    group.add_argument("--weight-decay", type=float, default=default.weight_decay)
    group.add_argument("--balance", choices=("none", "loss", "sampler"), default=default.balance,
                       help="class balance: positive weights in the loss, or a weighted sampler")
    group.add_argument("--init", default="scratch",
                       help="scratch, a torchxrayvision weights key (all, nih, pc, ...) or a checkpoint folder")
    group.add_argument("--no-augment", action="store_true", help="no random affine augmentation")
    group.add_argument("--patience", type=int, default=default.patience, help="early stopping on real val AUROC")
    group.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default="auto",
                       help="auto (default): bf16 on a GPU that supports it, else fp16 with a gradient scaler; "
                            "no on CPU")
    group.add_argument("--memory-budget", type=float, default=default.memory_budget_gb, metavar="GB",
                       help="a unit whose training and val images (float32) fit in this many GB trains from memory; "
                            "larger ones stream from the image cache with --num-workers workers (same figures; "
                            "default 2)")
    group.add_argument("--image-cache", default=None,
                       help="folder of the decoded-image cache (default: $SYNTHCXR_CACHE/images, else "
                            "<results>/cache/images)")
    group.add_argument("--cpu-threads", type=int, default=default.cpu_threads,
                       help="on CPU, train with this many torch threads (CPU results depend on the thread count; "
                            "fix it for numbers that are the same on every machine; default: torch's setting)")
    group.add_argument("--with-replacement", action="store_true",
                       help="a size larger than what exists repeats images instead of stopping")
    group.add_argument("--synthetic-from", choices=SYNTHETIC_FROM, default=default.synthetic_from,
                       help="train (default): a synthetic image made from a val/test row stops the run (the "
                            "classifier would be tested on its real twin); train-subset: such images are left out; "
                            "any: they are used, and every row says so")
    group.add_argument("--baseline", help="the setting every other is compared with (default: the first real one)")
    group.add_argument("--decision-threshold", choices=THRESHOLDS, default=default.threshold,
                       help="threshold of accuracy / precision / recall / specificity / F1: Youden's J on the real "
                            "val split (re-chosen in every bootstrap resample of the val patients), or 0.5")
    group.add_argument("--spec-target", type=float, default=default.spec_target,
                       help="sens_at_spec, the primary threshold metric: sensitivity at this specificity "
                            "(default 0.9)")
    group.add_argument("--no-resume", action="store_true", help="start a new run even if this sweep was begun")


def retrained_config_from_args(args: argparse.Namespace) -> RetrainedConfig:
    """The :class:`RetrainedConfig` of parsed arguments (``add_retrained_arguments`` plus shared flags if present)."""
    return RetrainedConfig(
        settings=tuple(s.strip() for s in args.settings.split(",") if s.strip()), n_real=args.n_real,
        n_synthetic=args.n_synthetic, mix_fraction=args.mix_fraction,
        seeds=tuple(int(s) for s in str(args.seeds).split(",") if s.strip()), task=args.task,
        image_size=args.image_size, epochs=args.epochs, batch_size=args.train_batch_size, lr=args.lr,
        weight_decay=args.weight_decay, balance=args.balance, init=args.init, augment=not args.no_augment,
        patience=args.patience, mixed_precision=args.mixed_precision, cpu_threads=args.cpu_threads,
        memory_budget_gb=args.memory_budget, image_cache=args.image_cache,
        num_workers=int(getattr(args, "num_workers", 0) or 0), with_replacement=args.with_replacement,
        synthetic_from=args.synthetic_from, baseline=args.baseline, threshold=args.decision_threshold,
        spec_target=float(getattr(args, "spec_target", SPEC_TARGET)),
        n_resamples=int(getattr(args, "n_resamples", 2000)), stats_seed=int(getattr(args, "seed", 0) or 0),
        resume=not args.no_resume, allow_generator_overlap=bool(getattr(args, "allow_generator_overlap", False)),
        test_labels=str(getattr(args, "test_labels", "all")), preset=str(getattr(args, "preset", None) or ""))


def build_parser() -> argparse.ArgumentParser:
    """``python -m benchmark.utility.retrained``: the stage alone (``accelerate launch`` / ``torchrun`` for DDP)."""
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m benchmark.utility.retrained",
                                     description=__doc__.splitlines()[0])
    add_set_arguments(parser, "classes to train on (default: the split's)")
    parser.add_argument("--run-id", help="run folder to use or resume (default: the newest run of this sweep)")
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument("--num-workers", type=int, default=int(env.get("NUM_WORKERS", "0")))
    parser.add_argument("--seed", type=int, default=int(env.get("SEED", "0")), help="seed of the bootstrap")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-unit lines")
    add_test_labels_argument(parser)
    add_retrained_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stage from the command line; exit 2 on bad input."""
    from benchmark.data import read_split_csv
    from benchmark.data.splits.common import parse_class_list
    from benchmark.data.synthetic import read_synthetic_set

    args = build_parser().parse_args(argv)
    from benchmark.utility.retrained.execution import _distributed_state, run_retrained_stage  # torch: after the flags
    from benchmark.utility.retrained.table import format_retrained_table

    main_process = _distributed_state().is_main_process
    try:
        if not args.real or not args.synthetic:
            raise DataError("give --real (split CSV) and --synthetic (synthetic set folder)")
        config = retrained_config_from_args(args)
        config.progress = not args.quiet
        real = read_split_csv(args.real, image_root=args.image_root, classes=parse_class_list(args.classes) or None)
        synthetic = read_synthetic_set(args.synthetic, classes=real.classes)
        outcome = run_retrained_stage(real, synthetic, config, model_name=args.model_name or synthetic.model_name,
                                      extra_info=args.extra_info, results_dir=args.results_dir, run_id=args.run_id)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if main_process:
        print(format_retrained_table(outcome.summary))
        print(f"\nrun {outcome.run_id}: trained {len(outcome.trained)}, resumed {len(outcome.resumed)}; checkpoints, "
              f"predictions and learning curves in {outcome.run_folder}")
    return 0
