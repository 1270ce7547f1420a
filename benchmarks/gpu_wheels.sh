#!/usr/bin/env bash
# The wheels a bare GPU machine needs beside its own PyTorch (2.11, Python 3.12, no network) to run
# benchmarks/gpu_check.sh: this project's pinned packages that it lacks or has in another version.
#
#   bash benchmarks/gpu_wheels.sh [DEST]      # DEST default: .whl (ignored by git), about 20 MB
#
# Binary wheels are downloaded for CPython 3.12 / manylinux x86-64; packages published only as source
# (deepspeed, sam2, antlr4-python3-runtime, iopath) are built here into pure-Python wheels (deepspeed
# without its prebuilt ops, sam2 without its optional CUDA extension: the same builds as tools/setup_env.sh).
# On the machine: python3 -m pip install --no-index --no-deps --target /tmp/site DEST/*.whl (gpu_check.sh does).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.whl}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$DEST"
# What the project imports that the machine's image lacks (its list: the device tool's KINDS.md), or holds
# in a version this project does not run with (transformers 5, tokenizers 0.23, huggingface-hub 1.x).
BINARY=(
  "transformers==4.48.0" "tokenizers==0.21.4" "huggingface-hub==0.36.0" "peft==0.21.2"
  "mmengine==0.10.6" "addict==2.4.0" "yapf==0.43.0" "termcolor==3.1.0" "platformdirs==4.3.8"
  "xtuner==0.2.0" "datasets==3.6.0" "dill==0.3.8" "multiprocess==0.70.16" "pytz==2025.2"
  "hjson==3.1.0" "pydantic==2.11.7" "pydantic-core==2.33.2" "annotated-types==0.7.0" "typing-inspection==0.4.1"
  "hydra-core==1.3.2" "omegaconf==2.3.0" "pycocotools==2.0.10"
)
SOURCE=("deepspeed==0.16.2" "sam2==1.1.0" "antlr4-python3-runtime==4.9.3" "iopath==0.1.10")
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" \
    -d "$DEST" "${BINARY[@]}"
DS_BUILD_OPS=0 SAM2_BUILD_CUDA=0 SAM2_BUILD_ALLOW_ERRORS=1 \
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "${SOURCE[@]}"
n=$(ls "$DEST"/*.whl | wc -l)
echo "[gpu_wheels] $n wheels, $(du -sh "$DEST" | cut -f1) in $DEST"
