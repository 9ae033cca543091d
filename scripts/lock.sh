#!/usr/bin/env bash
# Refreshes requirements.lock from requirements.txt: the exact version and sha256 hashes of every package,
# transitive ones included, for Linux, macOS and Windows on Python 3.11+ (uv's universal resolution).
# Run it deliberately (never from setup.sh): a new lock changes the environment every figure is computed in.
# It keeps every version the current lock pins (uv prefers the pins of its output file) and resolves only what
# requirements.txt changed; `--upgrade` moves everything to today's releases, `--upgrade-package X` one package.
# Afterwards: ./scripts/setup.sh, ./scripts/test.sh, and the demo (./scripts/utility_metrics.sh) to check its
# figures; commit the lock with the README's figures if they moved. Extra arguments go to `uv pip compile`
# (e.g. `--upgrade-package torch`, or `-c constraints.txt` to cap a package).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -x "$ROOT/.venv/bin/uv" ]]; then UV="$ROOT/.venv/bin/uv"
elif command -v uv >/dev/null; then UV="$(command -v uv)"
else echo "lock: uv not found: run ./scripts/setup.sh first, or 'python3 -m pip install uv'" >&2; exit 1; fi
req_hash="$(sha256sum requirements.txt | cut -d' ' -f1)"
tmp="$(mktemp requirements.lock.XXXXXX)"
trap 'rm -f "$tmp"' EXIT
if [[ -f requirements.lock ]]; then tail -n +2 requirements.lock > "$tmp"; fi  # the current pins, preferred by uv
"$UV" pip compile --config-file uv.toml requirements.txt --universal --python-version 3.11 --generate-hashes --quiet \
  --custom-compile-command "./scripts/lock.sh" --output-file "$tmp" "$@"
{ echo "# requirements.txt sha256: $req_hash"; cat "$tmp"; } > requirements.lock
echo "lock: wrote requirements.lock ($(grep -cE '^[A-Za-z0-9]' requirements.lock) packages)" >&2
