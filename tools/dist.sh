#!/usr/bin/env bash
# Distributed training with torchrun (one node or several).
#
#   bash tools/dist.sh train CONFIG NGPUS [tools/train.py arguments ...]
#
# NGPUS: processes on this node (one per GPU). Environment:
#   NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500)   multi-node rendezvous
#   DEEPSPEED   DeepSpeed json; default configs/deepspeed/zero2.json, or zero2_cpu.json (gloo, fp32) on
#               a machine without GPUs; `none` trains with plain DDP. A --deepspeed argument wins.
#   PYTHON      interpreter (default: the repo's .venv if present, else python)
# Example, 2 nodes x 8 GPUs:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 bash tools/dist.sh train configs/desa2va_4b.py 8   # on node0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 bash tools/dist.sh train configs/desa2va_4b.py 8   # on node1
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: bash tools/dist.sh train CONFIG NGPUS [tools/train.py arguments ...]" >&2
    exit 2
fi
TASK=$1; CONFIG=$2; NGPUS=$3; shift 3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$TASK" != "train" ]; then
    echo "dist.sh: unknown task '$TASK' (evaluation: projects/desa2va/evaluation/dist_test.sh)" >&2
    exit 2
fi
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-29500}

GPUS_HERE=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
DS_ARGS=()
if [[ " $* " != *" --deepspeed "* ]]; then
    if [ -z "${DEEPSPEED:-}" ]; then
        if [ "$GPUS_HERE" -gt 0 ]; then DEEPSPEED="$ROOT/configs/deepspeed/zero2.json"
        else DEEPSPEED="$ROOT/configs/deepspeed/zero2_cpu.json"; fi
    fi
    if [ "$DEEPSPEED" != "none" ]; then DS_ARGS=(--deepspeed "$DEEPSPEED"); fi
fi
if [ "$GPUS_HERE" -eq 0 ]; then
    # CPU: share the cores between the processes (torchrun's default is 1 thread each)
    CORES=$("$PYTHON" -c "import os; print(len(os.sched_getaffinity(0)))")
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( CORES / NGPUS > 0 ? CORES / NGPUS : 1 ))}
    echo "[dist.sh] no GPU found: ${NGPUS} CPU process(es), gloo, ${OMP_NUM_THREADS} thread(s) each" >&2
elif [ "$NGPUS" -gt "$GPUS_HERE" ]; then
    echo "dist.sh: asked for $NGPUS processes but this node has $GPUS_HERE GPU(s)" >&2
    exit 2
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --master_port="$PORT" \
    --nproc_per_node="$NGPUS" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${DS_ARGS[@]}" "$@"
