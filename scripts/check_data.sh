#!/usr/bin/env bash
# Lists every missing, empty or unreadable image of a split CSV in one report; exit 1 if any.
# Usage: ./scripts/check_data.sh CSV [--image-root DIR] [--workers N]   (or REAL_CSV=..., IMAGE_ROOT=...)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.data.check_data "$@"
