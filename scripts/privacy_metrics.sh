#!/usr/bin/env bash
# Patient re-identification (Siamese verification model: --reid-model PATH or --reid-train) and text-image
# alignment (--alignment-model NAME_OR_DIR) of a synthetic set.
# Usage: ./scripts/privacy_metrics.sh --real CSV --synthetic DIR --model-name NAME (--reid-model PATH | --reid-train)
#        [--alignment-model M] [--fmr 0.01] ...   (or REAL_CSV, SYNTHETIC_DIR, MODEL_NAME, EXTRA_INFO, IMAGE_ROOT,
#        RESULTS_DIR; flags win).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.privacy "$@"
