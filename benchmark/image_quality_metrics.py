"""Kept so that ``python -m benchmark.image_quality_metrics`` (the name before the stages became subpackages) still
works; the code is in :mod:`benchmark.fidelity.cli`."""

import sys

from benchmark.fidelity.cli import main

if __name__ == "__main__":
    sys.exit(main())
