"""Kept so that ``python -m benchmark.run_all`` (the name before the stages became subpackages) still works;
the code is in :mod:`benchmark.pipeline.run_all`."""

import sys

from benchmark.pipeline.run_all import main

if __name__ == "__main__":
    sys.exit(main())
