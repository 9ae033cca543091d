#!/usr/bin/env bash
# Turns an existing image folder (flat, one subfolder per class, or with a labels CSV) into a synthetic set.
# Usage: ./scripts/register_images.sh --images FOLDER --out DIR [--labels CSV --file-col C] [--model-name NAME]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PYTHON" -m benchmark.data.register_images "$@"
