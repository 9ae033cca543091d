"""Kept so that ``python -m benchmark.check_data`` (the name before the stages became subpackages) still works;
the code is in :mod:`benchmark.data.check_data`."""

import sys

from benchmark.data.check_data import main

if __name__ == "__main__":
    sys.exit(main())
