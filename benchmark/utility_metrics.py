"""Kept so that ``python -m benchmark.utility_metrics`` (the name before the stages became subpackages) still works;
the code is in :mod:`benchmark.utility.cli`."""

import sys

from benchmark.utility.cli import main

if __name__ == "__main__":
    sys.exit(main())
