"""``python -m benchmark.utility``: the main job: classifier utility (and the built-in demo); flags and inputs are
checked before torch is imported."""

import logging
import sys

from benchmark.core.cli import staged_main
from benchmark.utility.defaults import build_parser, precheck

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
sys.exit(staged_main(build_parser, "benchmark.utility.cli:run", precheck=precheck))
