#!/usr/bin/env bash
# The README's test command: sets up .venv when missing or stale, then runs pytest offline.
#   bash tools/run_tests.sh                 # whole suite
#   bash tools/run_tests.sh tests/models -k lora
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
# Nothing may download at run time: make any attempt fail loudly.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
exec "${VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
