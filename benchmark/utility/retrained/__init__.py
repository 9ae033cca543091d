"""The retrained-classifier sweep (RoentGen's data-augmentation tables): does training on synthetic images help a
classifier on real ones?

The package owns the sweep: a DenseNet-121 (torchxrayvision's architecture, 1 channel) is trained for each *setting*
at its sizes and for each seed, selected on the real validation split and always tested on the held-out real test
split; synthetic images are only ever training data. Settings (``--settings``, comma separated, each
``kind[:size]``):

* ``real[:N]`` N real training rows; ``synthetic[:M]`` M synthetic images;
* ``real+synthetic[:N+M]`` both together (augmentation);
* ``mixed[:N[@F]]`` N real training rows of which a fraction F is replaced by the synthetic images made *from those
  rows* (matched on ``source_row``), so the set keeps its size and labels.

Modules, each importing only those above it:

* :mod:`~benchmark.utility.retrained.config`: :class:`RetrainedConfig` and the shared constants (:data:`TABLE_METRICS`);
* :mod:`~benchmark.utility.retrained.planning`: sizes and settings parsed, the pools, stratified draws, the units to
  train (sizes, the sharing of draws between settings);
* :mod:`~benchmark.utility.retrained.evaluation`: per-seed and seed-mean rows, their intervals, the paired tests
  against the baseline and Holm's adjustment (the statistics);
* :mod:`~benchmark.utility.retrained.table`: the printed table (:func:`format_retrained_table`);
* :mod:`~benchmark.utility.retrained.plots`: learning curves;
* :mod:`~benchmark.utility.retrained.execution`: run folders, resuming, training, the distributed state
  (:func:`run_retrained_stage`);
* :mod:`~benchmark.utility.retrained.cli`: the flags and :func:`main` (``python -m benchmark.utility.retrained``).

May import: :mod:`benchmark.core`, :mod:`benchmark.data`, :mod:`benchmark.models`, :mod:`benchmark.fidelity`
(the process group's release at exit).
"""

from benchmark.utility.retrained.cli import add_retrained_arguments, build_parser, main, retrained_config_from_args
from benchmark.utility.retrained.config import TABLE_METRICS, RetrainedConfig
from benchmark.utility.retrained.evaluation import UnitPredictions, evaluate_units
from benchmark.utility.retrained.execution import RetrainedOutcome, run_retrained_stage
from benchmark.utility.retrained.planning import (
    Pools,
    SettingSpec,
    Size,
    SizeError,
    build_training_set,
    make_pools,
    parse_settings,
    parse_size,
    plan_units,
)
from benchmark.utility.retrained.table import format_retrained_table

__all__ = [
    "TABLE_METRICS",
    "Pools",
    "RetrainedConfig",
    "RetrainedOutcome",
    "SettingSpec",
    "Size",
    "SizeError",
    "UnitPredictions",
    "add_retrained_arguments",
    "build_parser",
    "build_training_set",
    "evaluate_units",
    "format_retrained_table",
    "main",
    "make_pools",
    "parse_settings",
    "parse_size",
    "plan_units",
    "retrained_config_from_args",
    "run_retrained_stage",
]
