#!/usr/bin/env bash
# The main job: pretrained- (and retrained-) classifier utility of synthetic sets.
# With nothing configured it runs the built-in demo end to end.
# Usage: ./scripts/utility_metrics.sh --real CSV --synthetic DIR --model-name NAME [--classifier KEY] [--stage ...]
# Environment: REAL_CSV, SYNTHETIC_DIR, MODEL_NAME, EXTRA_INFO, IMAGE_ROOT, CLASSES, CLASSIFIER, BATCH_SIZE,
# NUM_WORKERS, SEED, RESULTS_DIR (flags win).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.utility "$@"
