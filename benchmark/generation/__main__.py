"""``python -m benchmark.generation``: generation (under ``accelerate launch -m``)."""

import sys

from benchmark.generation.generate import main

sys.exit(main())
