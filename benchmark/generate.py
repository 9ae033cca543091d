"""Kept so that ``python -m benchmark.generate`` (the name before the stages became subpackages) still works;
the code is in :mod:`benchmark.generation.generate`."""

import sys

from benchmark.generation.generate import main

if __name__ == "__main__":
    sys.exit(main())
