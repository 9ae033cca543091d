"""Kept so that ``python -m benchmark.register_images`` (the name before the stages became subpackages) still works;
the code is in :mod:`benchmark.data.register_images`."""

import sys

from benchmark.data.register_images import main

if __name__ == "__main__":
    sys.exit(main())
