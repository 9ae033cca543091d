"""``python -m benchmark.utility.retrained`` (and ``accelerate launch -m``): the retrained stage alone."""

import sys

from benchmark.utility.retrained.cli import main

sys.exit(main())
