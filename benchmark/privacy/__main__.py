"""``python -m benchmark.privacy``: the privacy stage (flags and inputs checked before torch is imported)."""

import sys

from benchmark.core.cli import staged_main
from benchmark.privacy.defaults import build_parser, precheck

sys.exit(staged_main(build_parser, "benchmark.privacy.cli:run", precheck=precheck))
