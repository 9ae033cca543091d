"""Kept so that ``python -m benchmark.privacy_metrics`` (the name before the stages became subpackages) still works;
the code is in :mod:`benchmark.privacy.cli`."""

import sys

from benchmark.privacy.cli import main

if __name__ == "__main__":
    sys.exit(main())
