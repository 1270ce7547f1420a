#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
# Idempotent: when .venv already matches requirements.txt and setup.py it returns in seconds.
#   bash tools/setup_env.sh            # create/update .venv
#   VENV=/path/to/venv bash tools/setup_env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.desa2va-env-stamp"
want="$(cat "$ROOT/requirements.txt" "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "[setup_env] $VENV is up to date"
  exit 0
fi

echo "[setup_env] creating/updating $VENV"
# A new environment takes ~7.1 GB (torch 2.14.1's x86_64 wheel depends on the CUDA libraries even on a
# CPU machine). Say so before pip fails half-way with "No space left on device".
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  free_kb="$(df -Pk "$(dirname "$VENV")" | awk 'NR==2 {print $4}')"
  if [ -n "$free_kb" ] && [ "$free_kb" -lt $((8 * 1024 * 1024)) ]; then
    echo "[setup_env] ERROR: $(( free_kb / 1024 )) MB free on the disk of $(dirname "$VENV"); a new" \
         "environment needs about 8 GB (7.1 GB installed). Free space, or set VENV to a path on a larger disk." >&2
    exit 1
  fi
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
pip_run() {  # quiet on success; on failure print the end of pip's log
  local log; log="$(mktemp)"
  if ! "${PIP[@]}" "$@" >"$log" 2>&1; then
    grep -v "is ignored: it is neither" "$log" | tail -40; rm -f "$log"; return 1
  fi
  rm -f "$log"
}
pip_run install -U pip setuptools wheel
# Torch first and pinned: an unpinned torch pulls a multi-GB CUDA build from the registry.
pip_run install "torch==2.14.1" "torchvision==0.29.1"
pip_run install -r "$ROOT/requirements.txt"
# Meta's SAM 2 package: built against the torch above; its optional CUDA extension is skipped.
SAM2_BUILD_CUDA=0 SAM2_BUILD_ALLOW_ERRORS=1 pip_run install --no-build-isolation "sam2==1.1.0"
# xtuner pins bitsandbytes==0.45.0, which fails to import beside the triton that torch 2.14 ships
# (`triton.ops` is gone), and peft imports it whenever it is installed, breaking LoRA. QLoRA is not
# used by this project, so remove it.
pip_run uninstall -y bitsandbytes || true
pip_run install --no-build-isolation --no-deps -e "$ROOT"
"$VENV/bin/python" -c "import torch, transformers, peft, mmengine, xtuner, sam2, pycocotools, decord, projects.desa2va; print('[setup_env] ok: torch', torch.__version__, 'transformers', transformers.__version__)"
echo "$want" > "$STAMP"
