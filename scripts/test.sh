#!/usr/bin/env bash
# The whole test suite (CI runs this): set-up, lint, then pytest on TEST_WORKERS processes (default 2, one per core
# of the project's machines; a file's tests share a worker, so module fixtures are built once, and the demo run and
# demo classifier are shared by every worker, tests/conftest.py). Extra arguments
# go to pytest and win (e.g. `-n 0` runs in one process). Idle OpenMP threads sleep instead of spinning
# (OMP_WAIT_POLICY=PASSIVE): two workers that spin-wait on 2 cores slow each other down many times over.
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
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
"$PYTHON" -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
