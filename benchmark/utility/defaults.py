"""The utility stage's flags (``utility_metrics.sh``), importable without torch.

``--help`` and argument errors come from here before any model library is imported; :func:`precheck` reads the
split and the synthetic set the same way, so a bad column, row or class stops before torch is loaded too.
"""

from __future__ import annotations

import argparse
import os

from benchmark.core.cli import add_set_arguments, describe
from benchmark.core.presets import add_preset_argument
from benchmark.data import DataError, read_split_csv
from benchmark.data.splits.common import parse_class_list
from benchmark.data.subgroups import DEFAULT_AGE_CUTS, age_cuts, subgroup_variables
from benchmark.data.synthetic import read_synthetic_set
from benchmark.utility.label_mapping import parse_label_map
from benchmark.utility.retrained.cli import add_retrained_arguments
from benchmark.utility.test_labels import add_test_labels_argument

STAGES = ("pretrained", "retrained", "all")
DEFAULT_STAGE = "pretrained"  # for a real split and synthetic set; the demo runs everything when none is given


HELP = {  # the flags whose text is not written where they are added
    "--threshold": "where sensitivity and specificity are read: the classifier's own operating point, or Youden's J "
                   "on the real val split",
    "--real-split": "split of real images scored beside the synthetic ones",
    "--epochs": "training epochs per unit (retrained stage)",
    "--lr": "peak learning rate (AdamW, one-cycle schedule)",
    "--weight-decay": "AdamW weight decay",
}


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="utility_metrics.sh", description="The main job: classifier utility of "
                                     "synthetic sets (pretrained and retrained classifiers); nothing given: the "
                                     "built-in demo.")
    add_set_arguments(parser, "classes to evaluate (default: the split's)")
    add_preset_argument(parser, "utility")
    parser.add_argument("--classifier", default=env.get("CLASSIFIER", "densenet121-res224-all"),
                        help="xrv weights key (all, nih, pc, chex, mimic_nb, mimic_ch, rsna) or a checkpoint folder")
    parser.add_argument("--xrv-cache-dir", help="torchxrayvision weights cache (default: xrv's own)")
    parser.add_argument("--stage", choices=STAGES, default=None,
                        help=f"default {DEFAULT_STAGE}; the demo (nothing configured) runs every stage and the "
                        "image-quality metrics")
    parser.add_argument("--label-map", help="'class=Output,normal=normal-rule' overrides of the default mapping")
    parser.add_argument("--threshold", choices=("operating-point", "val-youden"), default="operating-point")
    parser.add_argument("--real-split", default="test", choices=("train", "val", "test"))
    add_test_labels_argument(parser)
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument("--by", default="", help="pretrained stage: also report per subgroup of sex, age-band and/or "
                        "view (comma list), with each subgroup's FNR and AUROC gap to the largest one")
    parser.add_argument("--age-bands", default=",".join(str(c) for c in DEFAULT_AGE_CUTS),
                        help="cut points of --by age-band in years (default 40,60,80: <40, 40-59, 60-79, 80+)")
    parser.add_argument("--allow-leakage", action="store_true",
                        help="run even when the classifier was trained on the split's dataset (recorded in every row)")
    parser.add_argument("--no-cache", action="store_true",
                        help="pretrained stage: neither read nor write the cache of classifier outputs (by image "
                        "content, weights and preprocessing, under <results>/cache/features)")
    parser.add_argument("--batch-size", type=int, default=int(env.get("BATCH_SIZE", "32")))
    parser.add_argument("--num-workers", type=int, default=int(env.get("NUM_WORKERS", "2")))
    parser.add_argument("--seed", type=int, default=int(env.get("SEED", "0")))
    parser.add_argument("--demo-dir", default=env.get("DEMO_DIR", "demo"),
                        help="where the demo writes its data when nothing else is configured")
    add_retrained_arguments(parser)
    return describe(parser, HELP)


def precheck(args: argparse.Namespace) -> None:
    """The checks that need no model: flag values, the split CSV and the synthetic set (nothing for the demo)."""
    subgroup_variables(args.by), age_cuts(args.age_bands)
    parse_label_map(args.label_map)
    if not args.real and not args.synthetic:
        return
    if not args.real or not args.synthetic:
        raise DataError("give both --real (split CSV) and --synthetic (synthetic set folder), or neither for the demo")
    read_split_csv(args.real, image_root=args.image_root, classes=parse_class_list(args.classes) or None)
    read_synthetic_set(args.synthetic)
