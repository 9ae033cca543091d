"""``python -m benchmark.report``: build the report."""

import sys

from benchmark.report.tables import main

sys.exit(main())
