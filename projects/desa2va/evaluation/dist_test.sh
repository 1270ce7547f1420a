#!/usr/bin/env bash
# Distributed evaluation: bash projects/desa2va/evaluation/dist_test.sh SCRIPT MODEL_PATH NGPUS [args...]
#   SCRIPT: refcoco_eval | ref_vos_eval (with or without .py). PORT, NNODES, NODE_RANK, MASTER_ADDR from env.
set -euo pipefail
SCRIPT="${1%.py}"; MODEL="$2"; NPROC="$3"; shift 3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
PY="${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29510}" --nproc_per_node="$NPROC" \
  "$HERE/$SCRIPT.py" --model_path "$MODEL" "$@"
