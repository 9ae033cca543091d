"""Command-line arguments every utility stage shares: which real split and synthetic set, and where results go.

Each flag falls back to the CheXGenBench-style environment variable of SPEC §3 (a flag wins over a variable).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence


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


def staged_main(build_parser: Callable[[], argparse.ArgumentParser], run: str, *,
                precheck: Callable[[argparse.Namespace], object] | None = None,
                argv: Sequence[str] | None = None) -> int:
    """A stage's ``python -m`` entry: parse the flags and ``precheck`` them (read and check the CSVs) with only
    light modules imported, so ``--help`` answers at once and a misspelt flag, column or class stops before torch is
    imported; then import ``run`` (``"package.module:function"``) and call it with the parsed flags.

    Returns the exit status: 2 with one ``error: ...`` line for a :class:`DataError` (as ``exit_status``), else what
    ``run`` returned when it is an int, else 0."""
    from benchmark.core.errors import exit_status

    args = parse_stage_args(build_parser(), argv)
    if precheck is not None:
        status = exit_status(lambda: precheck(args))
        if status:
            return status
    module, _, function = run.partition(":")
    work = getattr(importlib.import_module(module), function)
    returned: list[object] = []
    status = exit_status(lambda: returned.append(work(args)))
    code = returned[0] if returned else None
    return status or (code if isinstance(code, int) and not isinstance(code, bool) else 0)


def parse_stage_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; for a stage with ``--preset`` (:func:`benchmark.core.presets.add_preset_argument`)
    the chosen preset's values are the defaults, and a run on real data prints what the preset sets and a rough
    time estimate (stderr) before anything else happens."""
    stage = getattr(parser, "preset_stage", None)
    if stage is None:
        return parser.parse_args(argv)
    from benchmark.core.presets import parse_with_preset, preset_line

    args = parse_with_preset(parser, stage, argv)
    if getattr(args, "real", None):
        print(preset_line(stage, args), file=sys.stderr, flush=True)
    return args


def heavy_modules_loaded() -> list[str]:
    """Which of torch, torchvision, torchxrayvision, transformers, diffusers, accelerate are imported (for tests of
    the fast paths)."""
    return [m for m in ("torch", "torchvision", "torchxrayvision", "transformers", "diffusers", "accelerate")
            if m in sys.modules]


#: help of the flags several stages share (a stage's own text wins)
COMMON_HELP: dict[str, str] = {
    "--extra-info": "free text in the rows' key (a checkpoint, a setting), so runs of one model stay apart",
    "--image-root": "folder the split's relative image paths are under (default: the split's sidecar, else its "
                    "folder)",
    "--results-dir": "results folder (default: $RESULTS_DIR, else results/)",
    "--batch-size": "images per forward pass",
    "--num-workers": "worker processes reading images",
    "--seed": "seed of every random draw (samples, resamples, splits), so a rerun gives the same figures",
    "--device": "auto (a GPU when present), cpu, cuda, cuda:1, ...",
    "--bootstrap": "bootstrap resamples of the intervals",
    "--n-resamples": "bootstrap resamples of the intervals",
    "--prompt-template": "prompt made from the labels where the CSV has none ({view}, {findings})",
    "--fractions": "train,val,test shares of the patients' images",
}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, unless its text already names one or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (not action.option_strings or "default" in text.lower() or action.default is None
                or action.default is False or action.default == "" or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def describe(parser: argparse.ArgumentParser, helps: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """Give every option of ``parser`` (and of its sub-commands) help text (``helps``, then :data:`COMMON_HELP`)
    and a help layout that shows its default; returns ``parser``."""
    texts = {**COMMON_HELP, **(helps or {})}
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                describe(sub, helps)
        elif action.option_strings and not action.help:
            action.help = texts.get(action.option_strings[-1])
    return parser
