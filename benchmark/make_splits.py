"""Kept so that ``python -m benchmark.make_splits`` (the name before the stages became subpackages) still works;
the code is in :mod:`benchmark.data.make_splits`."""

import sys

from benchmark.data.make_splits import main

if __name__ == "__main__":
    sys.exit(main())
