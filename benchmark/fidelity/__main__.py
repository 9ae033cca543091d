"""``python -m benchmark.fidelity``: the image-quality stage."""

import sys

from benchmark.fidelity.cli import main

sys.exit(main())
