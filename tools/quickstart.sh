#!/usr/bin/env bash
# The main job on the embedded default, on a CPU: venv, the tiny foundations, synthetic data, stage 1, stage 2,
# evaluation before/after training, summary and mask overlays in work_dirs/quickstart/.
#
#   bash tools/quickstart.sh [tools/quickstart.py options]
#
# About 15 minutes on 2 cores, plus the venv (see README). Arguments go to tools/quickstart.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHON="$ROOT/.venv/bin/python"
exec "$PYTHON" tools/quickstart.py "$@"
