#!/usr/bin/env bash
# Creates .venv if missing and installs requirements.txt into it. Idempotent: when the installed
# requirements match requirements.txt (a stamp file holds its hash) it returns in well under a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
PYTHON_FOR_VENV="${PYTHON_FOR_VENV:-python3}"

want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating $VENV" >&2
  "$PYTHON_FOR_VENV" -m venv "$VENV"
fi
echo "setup: installing requirements.txt into $VENV (first run takes a few minutes)" >&2
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements.txt" >&2
echo "$want" > "$STAMP"
echo "setup: done" >&2
