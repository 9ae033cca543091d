#!/usr/bin/env bash
# Builds a patient-level split CSV: padchest | chexgenbench | csv | folder | demo (see --help of each).
# Reads CLASSES, SEED and IMAGE_ROOT from the environment as defaults; flags win.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.data.make_splits "$@"
