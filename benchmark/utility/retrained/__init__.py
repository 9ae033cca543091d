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

# Exported lazily (PEP 562): ``benchmark.utility.retrained.cli`` and ``config`` load without torch, so the stage's
# --help and flag errors come at once; the training modules are imported when one of their names is first used.
_EXPORTS = {
    "add_retrained_arguments": "cli", "build_parser": "cli", "main": "cli", "retrained_config_from_args": "cli",
    "TABLE_METRICS": "config", "RetrainedConfig": "config",
    "UnitPredictions": "evaluation", "evaluate_units": "evaluation",
    "RetrainedOutcome": "execution", "run_retrained_stage": "execution",
    "Pools": "planning", "SettingSpec": "planning", "Size": "planning", "SizeError": "planning",
    "build_training_set": "planning", "make_pools": "planning", "parse_settings": "planning", "parse_size": "planning",
    "plan_units": "planning",
    "format_retrained_table": "table",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
