"""Command-line arguments every utility stage shares: which real split and synthetic set, and where results go.

Each flag falls back to the CheXGenBench-style environment variable of SPEC §3 (a flag wins over a variable).
"""

from __future__ import annotations

import argparse
import os


def add_set_arguments(parser: argparse.ArgumentParser, classes_help: str) -> None:
    """``--real``, ``--synthetic``, ``--model-name``, ``--extra-info``, ``--image-root``, ``--classes``,
    ``--results-dir`` with their environment defaults (``REAL_CSV``, ``SYNTHETIC_DIR``, ...), and
    ``--allow-generator-overlap`` (:mod:`benchmark.data.generator_training`)."""
    env = os.environ
    parser.add_argument("--real", default=env.get("REAL_CSV"), help="split CSV of the real images")
    parser.add_argument("--synthetic", default=env.get("SYNTHETIC_DIR"), help="synthetic set folder")
    parser.add_argument("--model-name", default=env.get("MODEL_NAME"), help="default: the set's manifest model")
    parser.add_argument("--extra-info", default=env.get("EXTRA_INFO", ""))
    parser.add_argument("--image-root", default=env.get("IMAGE_ROOT"))
    parser.add_argument("--classes", default=env.get("CLASSES"), help=classes_help)
    parser.add_argument("--results-dir", default=env.get("RESULTS_DIR"))
    parser.add_argument("--allow-generator-overlap", action="store_true",
                        help="run even when the synthetic set's manifest says the generator was trained on patients "
                             "of the split's val/test rows (recorded in every row)")
