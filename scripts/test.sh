#!/usr/bin/env bash
# The whole test suite (CI runs this): set-up, lint, then pytest. Extra arguments go to pytest.
# Set-up also installs Debian's Chromium (as root, when missing) for the report's headless-browser test.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$SYNTHCXR_ROOT"
if [[ ! -x /usr/bin/chromium && "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
  echo "test: installing Debian's chromium for the report's browser test" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "test: could not install chromium; the browser test will fail in CI" >&2
fi
"$SYNTHCXR_ROOT/.venv/bin/ruff" check .
"$PYTHON" -m pytest "$@"
