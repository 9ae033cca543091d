# Sourced by every script in scripts/: finds the repository, makes sure .venv exists and is current,
# and puts the harness on PYTHONPATH. Scripts then only set variables and call `python -m benchmark.<stage>`.
SYNTHCXR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$SYNTHCXR_ROOT/scripts/setup.sh" >&2
export PYTHONPATH="$SYNTHCXR_ROOT${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="$SYNTHCXR_ROOT/.venv/bin/python"
