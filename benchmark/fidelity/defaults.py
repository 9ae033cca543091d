"""The image-quality stage's defaults and its command-line flags, importable without torch.

``image_quality_metrics.sh --help`` and argument errors come from here before any model library is imported;
the modules that use a default (:mod:`~benchmark.fidelity.distances`, ``diversity``, ``features``,
``memorisation``) import it from here, so each value is written once.
"""

from __future__ import annotations

import argparse
import os

from benchmark.core.cli import add_set_arguments, describe
from benchmark.core.presets import add_preset_argument
from benchmark.data import DataError, read_split_csv
from benchmark.data.subgroups import DEFAULT_AGE_CUTS, age_cuts, subgroup_variables
from benchmark.data.synthetic import read_synthetic_set

#: jackknife groups of whole patients for the FID / FD∞ / KID intervals, and the fewest that give one
DEFAULT_JACKKNIFE_GROUPS = 20
MIN_JACKKNIFE_GROUPS = 5
#: MS-SSIM diversity: image side, random pairs per set, prompts for same-prompt pairs, images per prompt
DEFAULT_SIZE = 256
DEFAULT_PAIRS = 250
DEFAULT_PROMPTS = 100
DEFAULT_PER_PROMPT = 4
#: feature extractors (``pixels``: memorisation's pixel space) and the pixel-space image side
EXTRACTORS: tuple[str, ...] = ("xrv", "inception", "raddino", "raddino-chexgenbench", "pixels")
DEFAULT_PIXEL_SIZE = 64
#: memorisation: threshold quantile of real-vs-real distances, shift tolerance (px), calibration images
DEFAULT_QUANTILE = 0.999
DEFAULT_MAX_SHIFT = 2
DEFAULT_CALIBRATION_N = 5000
CHEXGENBENCH = "chexgenbench"
PROTOCOLS = ("ours", CHEXGENBENCH)


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


HELP = {  # the flags whose text is not written where they are added
    "--features": "feature space of FID, KID, PRDC, detectability: torchxrayvision DenseNet-121, Inception, RAD-DINO",
    "--kid-subset-size": "images per KID subset",
    "--kid-subsets": "KID subsets averaged",
    "--no-memorisation": "skip the memorisation check (each synthetic image's nearest training images)",
    "--memorisation-quantile": "quantile of the real-vs-real nearest distances under which a synthetic image counts "
                               "as a copy",
    "--no-diversity": "skip MS-SSIM diversity",
    "--images-per-prompt": "images per prompt in the same-prompt diversity pairs",
}


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``image_quality_metrics.sh``; environment variables (SPEC §3) are the defaults, flags win."""
    p = argparse.ArgumentParser(prog="image_quality_metrics.sh",
                                description="FID, KID, precision/recall/density/coverage, detectability, diversity "
                                            "and memorisation of a synthetic set against real images.")
    add_set_arguments(p, "comma-separated classes (default: the split's)")
    add_preset_argument(p, "image_quality")
    p.add_argument("--features", choices=[e for e in EXTRACTORS if e != "pixels"], default="xrv")
    p.add_argument("--weights", default=None, help="xrv weights key or checkpoint folder; RAD-DINO id or folder; "
                   "Inception weights file")
    p.add_argument("--xrv-cache-dir", default=None, help="torchxrayvision weights cache (default: xrv's own)")
    p.add_argument("--image-size", type=int, default=None, help="run the extractor at this size (default: native)")
    p.add_argument("--real-split", default="test", help="split(s) of the fidelity reference, e.g. test or val,test")
    p.add_argument("--per-class", action="store_true", help="one row per class as well as overall")
    p.add_argument("--n", type=int, default=None, help="subsample both sides to N images (e.g. 5000)")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage")
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--jackknife-groups", type=int, default=DEFAULT_JACKKNIFE_GROUPS,
                   help="groups of whole patients for the FID / FD∞ / KID jackknife intervals (capped at the number "
                        "of clusters on the smaller side; below 5: no interval)")
    p.add_argument("--bootstrap", type=int, default=None, help="deprecated and ignored (FID's interval is now the "
                   "jackknife); accepted for one release")
    p.add_argument("--batch-size", type=int, default=_env_int("BATCH_SIZE", 32))
    p.add_argument("--num-workers", type=int, default=_env_int("NUM_WORKERS", 0))
    p.add_argument("--seed", type=int, default=_env_int("SEED", 0))
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--cache-dir", default=None, help="feature cache (default $SYNTHCXR_CACHE/features, else "
                   "<results>/cache/features)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--no-memorisation", action="store_true")
    p.add_argument("--pixel-size", type=int, default=DEFAULT_PIXEL_SIZE, help="side of the pixel-space images")
    p.add_argument("--max-shift", type=int, default=DEFAULT_MAX_SHIFT, help="pixel-space shift tolerance (px)")
    p.add_argument("--memorisation-quantile", type=float, default=DEFAULT_QUANTILE)
    p.add_argument("--calibration-n", type=int, default=DEFAULT_CALIBRATION_N,
                   help="training images used to calibrate the memorisation thresholds")
    p.add_argument("--no-diversity", action="store_true")
    p.add_argument("--protocol", choices=PROTOCOLS, default="ours", help="chexgenbench: CheXGenBench's own protocol "
                   "(RAD-DINO CLS features of images squashed to 299 px, prompts of the real rows deduplicated, per "
                   "class the synthetic images made from the class's real prompts, k 5, and their KID beside ours), "
                   "written as rows of their own")
    p.add_argument("--by", default="", help="also one row per subgroup of sex, age-band and/or view (comma list; "
                   "class column 'sex=F' etc.), with its N")
    p.add_argument("--age-bands", default=",".join(str(c) for c in DEFAULT_AGE_CUTS),
                   help="cut points of --by age-band in years")
    p.add_argument("--save-reference", default=None, metavar="FILE", help="also write the real --real-split images' "
                   "feature statistics (mean, covariance, N; no image) to FILE.npz, to publish beside the figures")
    p.add_argument("--reference", default=None, metavar="FILE", help="FID against reference statistics FILE in "
                   "place of --real (same extractor required; FID only)")
    p.add_argument("--frd", action="store_true", help="also FRD, the Fréchet radiomics distance (frd-score's v1 "
                   "radiomics, with a patient jackknife interval); slow: about 0.4 s per 256 px image on one core")
    p.add_argument("--no-detectability", action="store_true", help="skip the real-vs-synthetic linear probe "
                   "(detect_auroc)")
    p.add_argument("--msssim-size", type=int, default=DEFAULT_SIZE, help="MS-SSIM image size (176+: 5 scales)")
    p.add_argument("--diversity-pairs", type=int, default=DEFAULT_PAIRS, help="random pairs per set")
    p.add_argument("--diversity-prompts", type=int, default=DEFAULT_PROMPTS, help="prompts for same-prompt pairs")
    p.add_argument("--images-per-prompt", type=int, default=DEFAULT_PER_PROMPT)
    return describe(p, HELP)


def precheck(args: argparse.Namespace) -> None:
    """The checks that need no model: the flags' values, the split CSV and the synthetic set (read as the stage
    reads them; a bad column, row or class stops here, before torch is imported)."""
    subgroup_variables(args.by), age_cuts(args.age_bands)
    if args.reference:
        return  # FID against reference statistics: the stage checks its file and the set itself
    if not args.real or not args.synthetic:
        raise DataError("give --real CSV and --synthetic DIR (or set REAL_CSV and SYNTHETIC_DIR)")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    real = read_split_csv(args.real, image_root=args.image_root, classes=classes)
    synthetic = read_synthetic_set(args.synthetic, classes=real.classes if args.per_class else None)
    synthetic.check_labels(real.classes)
