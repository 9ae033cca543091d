"""``python -m benchmark.pipeline``: the whole benchmark from one config."""

import sys

from benchmark.pipeline.run_all import main

sys.exit(main())
