#!/usr/bin/env bash
# The whole test suite (CI runs this): set-up, lint, then pytest. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$SYNTHCXR_ROOT"
"$SYNTHCXR_ROOT/.venv/bin/ruff" check .
"$PYTHON" -m pytest "$@"
