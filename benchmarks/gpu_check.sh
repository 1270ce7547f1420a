#!/usr/bin/env bash
# The real-size measurements, in one go on a GPU machine (written for a lent H200 with 15 minutes of use
# in all, machine start included; this script takes about 7 minutes there):
#   1. the bf16 training step of configs/desa2va_1b.py (DeSa2VA and Sa2VA modes) and configs/desa2va_4b.py
#      at real size, random weights, one GPU, DeepSpeed ZeRO-2 (configs/deepspeed/zero2.json);
#   2. inference_latency.py at 1B and 4B (per-query latency, propagation FPS with 1 / 3 / 5 objects);
#   3. video_memory.py at 1B: peak GPU memory of video inference on 20 and 200 frames at 1024 px.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT: where the JSON results go (default $OUT, else
#                                              # benchmarks/results/gpu); a log of everything is OUT/gpu_check.log
#
# The machine has its own PyTorch (2.11, CUDA 13), Python 3.12 and no network. Everything else travels as
# wheels in .whl (made here by `bash benchmarks/gpu_wheels.sh`, about 23 MB, ignored by git) and is installed
# into /tmp/site by this script. With the device tool: run `bash benchmarks/gpu_wheels.sh` here, then
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# and record the rows it prints (benchmarks/RESULTS.md is appended to on that machine, not here).
# Every step has its own time limit, so one that hangs leaves the others their time.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RES="${1:-${OUT:-$ROOT/benchmarks/results/gpu}}"
mkdir -p "$RES"
LOG="$RES/gpu_check.log"
PY="${PYTHON:-python3}"
cd "$ROOT"
exec > >(tee -a "$LOG") 2>&1
echo "[gpu_check] $(date -u +%FT%TZ) on $(hostname)"
if [ -d "$ROOT/.whl" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$ROOT"/.whl/*.whl || { echo "[gpu_check] wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$PY" - <<'EOF' || exit 1
import torch, transformers, peft, mmengine, xtuner, deepspeed, sam2, pycocotools
print("[gpu_check] torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", "| transformers", transformers.__version__,
      "| deepspeed", deepspeed.__version__, "| bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

status=0
step() {  # step SECONDS NAME COMMAND...
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS
  echo "[gpu_check] >>> $name (limit ${limit}s)"
  timeout "$limit" "$@"; local rc=$?
  echo "[gpu_check] <<< $name rc=$rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}
DS="configs/deepspeed/zero2.json"
step 150 "train step 1B (bf16, ZeRO-2)" "$PY" benchmarks/train_step.py --config configs/desa2va_1b.py --random-init \
    --deepspeed "$DS" --steps 3 --warmup 1 --workloads image video text --modes desa2va sa2va --no-flops --out "$RES"
step 150 "train step 4B (bf16, ZeRO-2)" "$PY" benchmarks/train_step.py --config configs/desa2va_4b.py --random-init \
    --deepspeed "$DS" --steps 3 --warmup 1 --workloads image video --modes desa2va --no-flops --out "$RES"
step 60 "inference latency 1B" "$PY" benchmarks/inference_latency.py --config configs/desa2va_1b.py --random-init \
    --repeats 3 --frames 100 --out "$RES"
step 75 "inference latency 4B" "$PY" benchmarks/inference_latency.py --config configs/desa2va_4b.py --random-init \
    --repeats 3 --frames 100 --modes desa2va sa2va --out "$RES"
step 75 "video memory 1B, 20 and 200 frames" "$PY" benchmarks/video_memory.py --config configs/desa2va_1b.py \
    --random-init --frames 20 200 --out "$RES"
echo "[gpu_check] rows appended to benchmarks/RESULTS.md on this machine:"
tail -n 8 benchmarks/RESULTS.md
echo "[gpu_check] done, status $status; results in $RES"
exit $status
