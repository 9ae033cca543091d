#!/usr/bin/env bash
# Makes a synthetic set from a prompts CSV with any diffusers pipeline, via `accelerate launch`.
# Usage: ./scripts/generate.sh --model M --prompts CSV --split test --out DIR --num-processes N [options]
# NUM_PROCESSES (default 1) and NUM_MACHINES (default 1) set the launch; ACCELERATE_ARGS adds launcher flags
# (e.g. "--machine_rank 0 --main_process_ip HOST --main_process_port 29500" for multi-node).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
NUM_PROCESSES="${NUM_PROCESSES:-1}"
NUM_MACHINES="${NUM_MACHINES:-1}"
args=()
help=0
while (($#)); do
  case "$1" in
    --num-processes) NUM_PROCESSES="$2"; shift 2 ;;
    --num-processes=*) NUM_PROCESSES="${1#*=}"; shift ;;
    -h|--help) help=1; args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
# --help, and the flags and prompts CSV checked, without the launcher (which imports torch first)
if (( help )); then exec "$PYTHON" -m benchmark.generation "${args[@]}"; fi
"$PYTHON" -m benchmark.generation --check-only "${args[@]}" >/dev/null
# --quiet: a refused input shows the harness's own error, not the launcher's traceback around it.
launch=("$SYNTHCXR_ROOT/.venv/bin/accelerate" launch --quiet --num_processes "$NUM_PROCESSES"
        --num_machines "$NUM_MACHINES" --mixed_precision no --dynamo_backend no)
# --multi_gpu starts one process per slot through torch.distributed; on a machine without GPUs the harness then
# runs them as CPU processes (gloo).
if (( NUM_PROCESSES > 1 || NUM_MACHINES > 1 )); then launch+=(--multi_gpu); fi
# shellcheck disable=SC2206
extra=(${ACCELERATE_ARGS:-})
exec "${launch[@]}" "${extra[@]}" -m benchmark.generation "${args[@]}"
