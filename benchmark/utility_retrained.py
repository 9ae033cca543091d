"""Kept so that ``python -m benchmark.utility_retrained`` (the name before the stages became subpackages) still works;
the code is in :mod:`benchmark.utility.retrained`."""

import sys

from benchmark.utility.retrained.cli import main

if __name__ == "__main__":
    sys.exit(main())
