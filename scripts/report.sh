#!/usr/bin/env bash
# Leaderboard and plots of everything in results/: report.md and one static HTML page (report.html, images embedded)
# with figures/*.png. Stages that have not run are shown as missing, not as errors.
# Usage: ./scripts/report.sh [--results-dir DIR] [--out DIR] [--samples N]
# Environment: RESULTS_DIR (default results/; a flag wins). The report goes to <results-dir>/report unless --out.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.report "$@"
