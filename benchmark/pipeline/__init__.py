"""The whole benchmark from one config (``run_all``; ``python -m benchmark.pipeline``): every stage for every
model, skipping what an earlier run already did with the same inputs.

Modules, each importing only those above it:

* :mod:`~benchmark.pipeline.config`: the YAML config, ``--set`` overrides and environment read and validated into a
  :class:`RunConfig` (:func:`load_config`, :class:`ConfigError`, :func:`args_to_argv`, :data:`STAGES`);
* :mod:`~benchmark.pipeline.fingerprints`: input fingerprints, the done-records a stage leaves (marker files and
  result rows) and the run-or-skip decision read from them (:class:`~benchmark.pipeline.fingerprints.SkipEngine`);
* :mod:`~benchmark.pipeline.runner`: each stage's command, and :class:`Runner`, which runs the stages in order;
* :mod:`~benchmark.pipeline.run_all`: the command line (``main``; its docstring describes the config keys).

May import: every other subpackage (it is the top of the tree).
"""

from benchmark.pipeline.config import RUN_ALL_TABLES, STAGES, ConfigError, RunConfig, args_to_argv, load_config
from benchmark.pipeline.runner import Runner

__all__ = ["RUN_ALL_TABLES", "STAGES", "ConfigError", "RunConfig", "Runner", "args_to_argv", "load_config"]
