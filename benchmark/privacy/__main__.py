"""``python -m benchmark.privacy``: the privacy stage."""

import sys

from benchmark.privacy.cli import main

sys.exit(main())
