#!/usr/bin/env bash
# Creates .venv if missing and installs requirements.lock into it: the exact version and hash of every package,
# so every machine computes in the same environment. Idempotent: when .venv was installed from this very lock (a
# stamp file holds its sha256) it returns at once. Installs with uv (itself pinned and hash-checked in the lock;
# ~30 s from an empty cache here, against ~160 s for pip), falling back to pip when uv cannot be installed.
# It never resolves versions itself: a requirements.txt edited after the lock stops here until ./scripts/lock.sh
# refreshes the lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
LOCK="$ROOT/requirements.lock"
STAMP="$VENV/.lock.sha256"
PYTHON_FOR_VENV="${PYTHON_FOR_VENV:-python3}"

if [[ ! -f "$LOCK" ]]; then
  echo "setup: $LOCK is missing: run ./scripts/lock.sh to make it from requirements.txt" >&2
  exit 1
fi
lock_for="$(sed -n '1s/^# requirements.txt sha256: //p' "$LOCK")"
req_now="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [[ "$lock_for" != "$req_now" ]]; then
  echo "setup: requirements.txt changed since requirements.lock was made from it; refresh the lock deliberately" \
       "with ./scripts/lock.sh (see the README, 'The environment'), or undo the edit" >&2
  exit 1
fi
want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating $VENV" >&2
  "$PYTHON_FOR_VENV" -m venv "$VENV"
fi
echo "setup: installing requirements.lock into $VENV (the first time takes a minute or two)" >&2
start=$SECONDS
if [[ ! -x "$VENV/bin/uv" ]]; then
  # uv's own pinned, hashed entry from the lock (its requirement lines up to the first comment line)
  uv_req="$(mktemp)"
  awk '/^uv==/{on=1} on && /^ *#/{exit} on{print}' "$LOCK" > "$uv_req"
  if [[ -s "$uv_req" ]]; then
    "$VENV/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$uv_req" >&2 \
      || echo "setup: could not install uv from the lock; installing with pip instead" >&2
  fi
  rm -f "$uv_req"
fi
if [[ -x "$VENV/bin/uv" ]]; then
  # sync: exactly the lock, nothing else (a package left from an older lock is removed); hashes are checked
  # packages built from source (pyradiomics, docopt) build with the lock's own pinned, hashed numpy and setuptools
  "$VENV/bin/uv" pip sync --quiet --require-hashes --config-file "$ROOT/uv.toml" --build-constraints "$LOCK" \
    --require-build-hashes --python "$VENV/bin/python" "$LOCK" >&2
else
  # pip has no per-package build dependency: everything else first, then pyradiomics built against the installed numpy
  rest="$(mktemp)"; radiomics="$(mktemp)"
  awk '/^pyradiomics==/{on=1} on && /^[A-Za-z0-9]/ && !/^pyradiomics==/{on=0} {print > (on ? R : O)}' \
    R="$radiomics" O="$rest" "$LOCK"
  "$VENV/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$rest" >&2
  if grep -q . "$radiomics"; then
    "$VENV/bin/python" -m pip install --quiet --no-deps --require-hashes --no-build-isolation -r "$radiomics" >&2
  fi
  rm -f "$rest" "$radiomics"
fi
echo "$want" > "$STAMP"
echo "setup: done in $((SECONDS - start)) s (requirements.lock sha256 ${want:0:12})" >&2
