#!/usr/bin/env bash
# Fidelity (FID, KID, precision/recall/density/coverage), diversity (MS-SSIM) and memorisation of a synthetic set.
# Usage: ./scripts/image_quality_metrics.sh --real CSV --synthetic DIR --model-name NAME [--features xrv|inception|raddino]
#        [--per-class] [--n N] ...   (or REAL_CSV, SYNTHETIC_DIR, MODEL_NAME, EXTRA_INFO, IMAGE_ROOT, BATCH_SIZE,
#        NUM_WORKERS, SEED, RESULTS_DIR; flags win). Multi-GPU feature extraction: accelerate launch -m benchmark.fidelity ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.fidelity "$@"
