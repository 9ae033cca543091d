#!/usr/bin/env bash
# One model through splits -> generation -> image quality -> utility -> report, from a YAML config and/or the
# environment, skipping stages whose outputs are complete (and unchanged). With no arguments: configs/demo.yaml.
# Usage: ./scripts/run_all.sh [--config FILE] [--set KEY=VALUE ...] [--only STAGES] [--force STAGES|all] [--dry-run]
#        (or REAL_CSV, SYNTHETIC_DIR, MODEL_NAME, EXTRA_INFO, CLASSIFIER, NUM_PROCESSES, RESULTS_DIR; see --help)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.pipeline "$@"
