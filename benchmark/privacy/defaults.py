"""The privacy stage's defaults and its command-line flags, importable without torch.

``privacy_metrics.sh --help`` and argument errors come from here before any model library is imported; the
re-identification modules import their defaults from here, so each value is written once.
"""

from __future__ import annotations

import argparse

from benchmark.core.cli import add_set_arguments, describe
from benchmark.core.presets import add_preset_argument
from benchmark.data import DataError, read_split_csv
from benchmark.data.synthetic import read_synthetic_set

#: re-identification backbones, input scalings, the false-match rate of its threshold, embedding and image sizes
ARCHITECTURES: tuple[str, ...] = ("resnet50", "densenet121", "resnet18", "resnet10")
INPUT_SCALINGS: tuple[str, ...] = ("unit", "imagenet")
DEFAULT_FMR = 0.01
DEFAULT_N_FEATURES = 128
DEFAULT_IMAGE_SIZE = 224
#: re-identification designs: CheXGenBench's prompt-matched one, the nearest-neighbour screen, or matched when it can
DESIGNS = ("auto", "matched", "screen")


HELP = {  # the flags whose text is not written where they are added
    "--reid-epochs": "epochs of re-identification training (--reid-train)",
    "--reid-lr": "learning rate of re-identification training (--reid-train)",
    "--reid-batch-size": "batch of re-identification training (--reid-train)",
    "--no-per-class": "overall rows only",
}


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``privacy_metrics.sh``; environment variables (SPEC §3) are the defaults, flags win."""
    p = argparse.ArgumentParser(prog="privacy_metrics.sh", description="Patient re-identification (CheXGenBench's "
                                "privacy metrics) and text-image alignment of a synthetic set.",
                                epilog="Give at least one of: --reid-model PATH (a trained re-id checkpoint) or "
                                "--reid-train (train one on the split's train patients), and/or --alignment-model "
                                "NAME (alignment rows only).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_set_arguments(p, "comma-separated classes (default: the split's)")
    add_preset_argument(p, "privacy")
    p.add_argument("--reid-model", default=None, help="re-id checkpoint: CheXGenBench's Siamese ResNet-50 state dict "
                   "(or one saved by --reid-train)")
    p.add_argument("--reid-train", action="store_true", help="train the re-id model on the split's train patients")
    p.add_argument("--reid-arch", choices=ARCHITECTURES, default=None,
                   help="backbone (default: a checkpoint's sidecar config, else resnet50)")
    p.add_argument("--reid-input-scaling", choices=INPUT_SCALINGS, default=None,
                   help="input of a ResNet checkpoint: unit = [0, 1] as CheXGenBench's (the default for a checkpoint "
                        "without a sidecar config), imagenet = ImageNet-normalised (what --reid-train uses)")
    p.add_argument("--reid-image-size", type=int, default=None,
                   help="image side fed to the re-id model (default: the size a checkpoint's sidecar records, "
                        f"else {DEFAULT_IMAGE_SIZE}; the training size with --reid-train)")
    p.add_argument("--reid-allow-size-mismatch", action="store_true",
                   help="use --reid-image-size even where it differs from the size the checkpoint was trained at "
                        "(the row says so, and its reid_model key gets @<size>px)")
    p.add_argument("--design", choices=DESIGNS, default="auto",
                   help="matched: CheXGenBench's prompt-matched design (synthetic images made from train rows "
                        "against their own source, with a within-set null) besides the nearest-neighbour screen; "
                        "screen: the screen only; auto (default): matched when the set has train sources")
    p.add_argument("--reid-features", type=int, default=DEFAULT_N_FEATURES, help="embedding size (training)")
    p.add_argument("--reid-epochs", type=int, default=10)
    p.add_argument("--reid-lr", type=float, default=1e-4)
    p.add_argument("--reid-batch-size", type=int, default=32)
    p.add_argument("--cpu-threads", type=int, default=None, help="fixed torch threads while training on CPU")
    p.add_argument("--fmr", type=float, default=DEFAULT_FMR, help="false-match rate of the re-id threshold")
    p.add_argument("--alignment-model", default=None,
                   help="transformers dual encoder (hub id or saved folder), or biovil-t (CheXGenBench's BioViL-T)")
    p.add_argument("--trust-remote-code", action="store_true", help="for alignment models with custom code")
    p.add_argument("--no-per-class", action="store_true")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    return describe(p, HELP)


def check_asked(args: argparse.Namespace) -> None:
    """Both inputs given, and at least one analysis (re-identification or alignment), not two re-id sources."""
    if not args.real or not args.synthetic:
        raise DataError("give --real CSV and --synthetic DIR (or set REAL_CSV and SYNTHETIC_DIR)")
    if not (args.reid_model or args.reid_train or args.alignment_model):
        raise DataError("nothing to do: give --reid-model PATH or --reid-train, and/or --alignment-model NAME")
    if args.reid_model and args.reid_train:
        raise DataError("give either --reid-model or --reid-train, not both")


def precheck(args: argparse.Namespace) -> None:
    """The checks that need no model: which analyses are asked for, the split CSV and the synthetic set (a bad
    column, row or class stops here, before torch is imported)."""
    check_asked(args)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    read_split_csv(args.real, image_root=args.image_root, classes=classes)
    read_synthetic_set(args.synthetic, classes=[])
