#!/usr/bin/env bash
# Training on a Slurm cluster: one task per GPU, across as many nodes as GPUS needs.
#
#   bash tools/slurm.sh PARTITION JOB CONFIG GPUS [tools/train.py arguments ...]
#
# Environment: GPUS_PER_NODE (8 or GPUS if fewer), CPUS_PER_TASK (5), SRUN_ARGS (extra srun options,
# e.g. "--quotatype=reserved"), PORT (29500), DEEPSPEED (as in tools/dist.sh; default
# configs/deepspeed/zero2.json, `none` for DDP), PYTHON (default: python).
# Example: bash tools/slurm.sh gpu desa2va4b configs/desa2va_4b.py 16
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: bash tools/slurm.sh PARTITION JOB CONFIG GPUS [tools/train.py arguments ...]" >&2
    exit 2
fi
PARTITION=$1; JOB=$2; CONFIG=$3; GPUS=$4; shift 4
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}
export MASTER_PORT=${PORT:-29500}

DS_ARGS=()
if [[ " $* " != *" --deepspeed "* ]]; then
    DEEPSPEED=${DEEPSPEED:-$ROOT/configs/deepspeed/zero2.json}
    if [ "$DEEPSPEED" != "none" ]; then DS_ARGS=(--deepspeed "$DEEPSPEED"); fi
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086  # SRUN_ARGS holds several options
exec srun -p "$PARTITION" --job-name="$JOB" \
    --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --launcher slurm "${DS_ARGS[@]}" "$@"
