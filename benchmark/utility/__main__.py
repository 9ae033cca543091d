"""``python -m benchmark.utility``: the main job: classifier utility (and the built-in demo)."""

import sys

from benchmark.utility.cli import main

sys.exit(main())
