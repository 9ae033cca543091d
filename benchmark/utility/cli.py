"""``./scripts/utility_metrics.sh``: the main job. Classifier utility of synthetic sets (SPEC §3, §4).

``--stage pretrained`` (default) runs the RoentGen Table 3 protocol (:mod:`benchmark.utility.pretrained`);
``--stage retrained`` trains DenseNet-121s on real / synthetic / mixed sets (:mod:`benchmark.utility.retrained`);
``--stage all`` runs both. With no real split and no synthetic set given (flags or ``REAL_CSV`` /
``SYNTHETIC_DIR``), it runs the built-in demo end to end (:mod:`benchmark.demo.run`): phantom data, three demo
generators, a leakage-safe classifier and the ranking check; with no ``--stage`` the demo runs every stage
(pretrained, retrained, and the image-quality metrics of :mod:`benchmark.fidelity.cli`), so that
``./scripts/report.sh`` afterwards has a full report to show.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmark.core.cli import parse_stage_args
from benchmark.core.stats import SIGNAL_ALPHA
from benchmark.data import DataError, read_split_csv
from benchmark.data.leakage import LeakageError
from benchmark.data.splits.common import parse_class_list
from benchmark.data.subgroups import age_cuts, subgroup_variables
from benchmark.data.synthetic import read_synthetic_set
from benchmark.utility.defaults import DEFAULT_STAGE, STAGES, build_parser  # noqa: F401  (re-exported)
from benchmark.utility.label_mapping import parse_label_map
from benchmark.utility.pretrained import PretrainedConfig, format_table, run_pretrained_stage
from benchmark.utility.retrained import (
    format_retrained_table,
    retrained_config_from_args,
    run_retrained_stage,
)

DEMO_ORDER = ("demo-faithful", "demo-label-blind", "demo-untrained-ddpm")
RANKING_RULE = (f"a model carries label signal when the classifier finds at least one class above chance in its "
                f"images (one-sided Brunner-Munzel test of AUROC > 0.5, Holm-adjusted over the classes, family-wise "
                f"alpha {SIGNAL_ALPHA}); models with label signal rank first, by mean synthetic AUROC; models "
                "without it are ordered by realism (Frechet distance to the real test images in the classifier's "
                "feature space, lower first).")


def _config(args: argparse.Namespace, classifier: str) -> PretrainedConfig:
    return PretrainedConfig(classifier=classifier, cache_dir=args.xrv_cache_dir,
                            label_map=parse_label_map(args.label_map), threshold=args.threshold,
                            n_resamples=args.n_resamples, seed=args.seed, batch_size=args.batch_size,
                            num_workers=args.num_workers, allow_leakage=args.allow_leakage, real_split=args.real_split,
                            allow_generator_overlap=args.allow_generator_overlap, test_labels=args.test_labels,
                            by=subgroup_variables(args.by), age_cuts=age_cuts(args.age_bands),
                            preset=getattr(args, "preset", None) or "")



def run_demo(args: argparse.Namespace) -> int:
    """The built-in demo, end to end; exit status 1 if the ranking faithful > label-blind > untrained fails.

    Every demo number is the same whatever ``--num-workers``, torch's thread count or the machine load: training
    runs on a fixed CPU thread count (:class:`benchmark.demo.run.DemoConfig`), data and bootstraps are seeded."""
    from benchmark.demo.run import build_demo

    started = time.perf_counter()
    args.preset = "demo"  # the demo's own small settings, whatever --preset says
    print(f"No real split or synthetic set given: running the built-in demo in {args.demo_dir}/ "
          "(phantom data, three demo generators, a classifier trained on a disjoint phantom population).")
    demo = build_demo(args.demo_dir)
    real = read_split_csv(demo.split_csv)
    status = 0
    stage = args.stage or "all"
    if args.stage is None:
        run_demo_image_quality(args, demo)
    if stage in ("pretrained", "all"):
        status = run_demo_pretrained(args, demo, real, started)
    if stage in ("retrained", "all"):
        from benchmark.demo.run import run_demo_retrained

        run_demo_retrained(real, demo, extra_info=args.extra_info, results_dir=args.results_dir)
        print(f"({time.perf_counter() - started:.0f} s in all)")
    return status


def run_demo_image_quality(args: argparse.Namespace, demo) -> None:
    """FID / KID / precision-recall-density-coverage, diversity and memorisation of each demo set (overall and per
    class), in the feature space of the demo classifier (a DenseNet-121 that never saw the demo's real data)."""
    from benchmark.fidelity import cli as image_quality_metrics

    for name in DEMO_ORDER:
        print(f"\n== image quality, {name} ==")
        flags = ["--real", str(demo.split_csv), "--synthetic", str(demo.synthetic[name].root), "--model-name", name,
                 "--features", "xrv", "--weights", str(demo.classifier_dir), "--per-class",
                 "--num-workers", "0", "--seed", str(args.seed), "--msssim-size", "64", "--diversity-pairs", "100"]
        if args.extra_info:
            flags += ["--extra-info", args.extra_info]
        if args.results_dir:
            flags += ["--results-dir", str(args.results_dir)]
        parsed = image_quality_metrics.build_parser().parse_args(flags)
        parsed.preset = "demo"
        image_quality_metrics.run(parsed)


def run_demo_pretrained(args: argparse.Namespace, demo, real, started: float) -> int:
    """The demo's pretrained stage over the three demo generators, and the ranking check (exit 1 if it fails)."""
    config = _config(args, demo.classifier.name)
    summary = {}
    for name in DEMO_ORDER:
        outcome = run_pretrained_stage(real, demo.synthetic[name], config, model_name=name,
                                       extra_info=args.extra_info, results_dir=args.results_dir,
                                       classifier=demo.classifier, use_cache=not args.no_cache)
        print(f"\n== {name} (run {outcome.run_id}) ==\n{format_table(outcome.table)}")
        summary[name] = demo_summary(outcome.table, demo, real, name, config)
    real_rows = outcome.table[outcome.table["image_source"] == "real"]
    print(f"\nreal test images: mean AUROC {np.nanmean(real_rows['auroc'].astype(float)):.3f}")
    for name, facts in summary.items():
        print(f"{name:<22} mean AUROC {facts['mean_auroc']:.3f}  classes with label signal {facts['with_signal']}"
              f"/{facts['n_classes']} (smallest Holm-adjusted p {facts['min_p_holm']:.2g})"
              f"  Frechet distance to real (classifier features) {facts['frechet']:.1f}")
    ranked = rank_demo_models(summary)
    ok = tuple(ranked) == DEMO_ORDER
    print(f"ranking: {' > '.join(ranked)} -> {'as expected' if ok else 'NOT the expected order'} "
          f"({time.perf_counter() - started:.0f} s). Rule: {RANKING_RULE} "
          f"Results in {args.results_dir or 'results'}/utility_pretrained.csv")
    return 0 if ok else 1


def demo_summary(table, demo, real, name: str, config: PretrainedConfig) -> dict[str, float]:
    """Mean synthetic AUROC, how many classes carry label signal (Holm-adjusted one-sided test of AUROC > 0.5) and
    the Frechet distance to the real test images in the demo classifier's feature space."""
    from benchmark.fidelity.distances import fid
    from benchmark.models.scoring import score_images

    rows = table[(table["image_source"] == "synthetic") & table["evaluable"].astype(bool)]
    classifier = demo.classifier
    real_features = score_images(classifier.features, real.subset("test").image_paths(), classifier.input_size,
                                 config.batch_size, config.num_workers)
    synthetic_features = score_images(classifier.features, demo.synthetic[name].image_paths(),
                                      classifier.input_size, config.batch_size, config.num_workers)
    return {"mean_auroc": float(np.nanmean(rows["auroc"].astype(float))),
            "with_signal": int(rows["label_signal"].astype(bool).sum()), "n_classes": len(rows),
            "min_p_holm": float(np.nanmin(rows["auroc_p_above_chance_holm"].astype(float))),
            "frechet": fid(real_features, synthetic_features, device="cpu")}


def rank_demo_models(summary: dict[str, dict[str, float]]) -> list[str]:
    """Models with label signal first (by mean AUROC), then models without it by realism (lower distance first);
    see :data:`RANKING_RULE`."""
    with_signal = sorted((n for n, f in summary.items() if f["with_signal"] > 0),
                         key=lambda n: summary[n]["mean_auroc"], reverse=True)
    without = sorted((n for n, f in summary.items() if f["with_signal"] == 0), key=lambda n: summary[n]["frechet"])
    return with_signal + without


def run(args: argparse.Namespace) -> int:
    """The stage (or, nothing configured, the demo) for parsed flags; the exit status (2: bad input)."""
    try:
        subgroup_variables(args.by), age_cuts(args.age_bands)  # flag errors before any file is read
        if not args.real and not args.synthetic:
            return run_demo(args)
        if not args.real or not args.synthetic:
            raise DataError("give both --real (split CSV) and --synthetic (synthetic set folder), or neither for the "
                            "demo")
        real = read_split_csv(args.real, image_root=args.image_root, classes=parse_class_list(args.classes) or None)
        synthetic = read_synthetic_set(args.synthetic)
        model_name = args.model_name or synthetic.model_name
        args.stage = args.stage or DEFAULT_STAGE
        if args.stage in ("pretrained", "all"):
            outcome = run_pretrained_stage(real, synthetic, _config(args, args.classifier), model_name=model_name,
                                           extra_info=args.extra_info, results_dir=args.results_dir,
                                           use_cache=not args.no_cache)
            print(format_table(outcome.table))
            print(f"\nrun {outcome.run_id}: predictions and ROC curves in {outcome.run_folder}")
        if args.stage in ("retrained", "all"):
            retrained = run_retrained_stage(real, synthetic, retrained_config_from_args(args), model_name=model_name,
                                            extra_info=args.extra_info, results_dir=args.results_dir)
            print(format_retrained_table(retrained.summary))
            print(f"\nrun {retrained.run_id}: checkpoints and learning curves in {retrained.run_folder}")
    except (DataError, LeakageError, ValueError) as exc:  # GeneratorOverlapError is a DataError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(parse_stage_args(build_parser(), argv))


if __name__ == "__main__":
    sys.exit(main())
