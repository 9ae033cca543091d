#!/usr/bin/env bash
# What the results tables hold, and taking a wrong run's rows out (a backup copy of each changed table first).
# Usage: ./scripts/results.sh [--results-dir DIR] list
#        ./scripts/results.sh [--results-dir DIR] remove --model NAME [--extra-info X] [--table T] [--yes]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.core.manage "$@"
