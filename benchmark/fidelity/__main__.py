"""``python -m benchmark.fidelity``: the image-quality stage (flags and inputs checked before torch is imported)."""

import sys

from benchmark.core.cli import staged_main
from benchmark.fidelity.defaults import build_parser, precheck

sys.exit(staged_main(build_parser, "benchmark.fidelity.cli:run", precheck=precheck))
