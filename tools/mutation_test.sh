#!/usr/bin/env bash
# Mutation testing (mutmut 3) of evaluation/metrics.py with tests/evaluation/test_metrics.py and of
# evaluation/sharding.py with tests/evaluation/test_sharding.py (configuration: setup.cfg [mutmut]).
#   bash tools/mutation_test.sh            # run (resumes an interrupted run), then print the survivors
# mutmut must import its mutated copy (mutants/projects/...), not the editable install, so it runs from
# its own venv (.venv-mutmut) that sees .venv's packages through a path entry, without .venv's .pth files.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
MV="${MUTMUT_VENV:-$ROOT/.venv-mutmut}"
[ -x "$MV/bin/mutmut" ] || { python3 -m venv "$MV"; "$MV/bin/python" -m pip -q install "mutmut==3.8.1"; }
deps="$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
own="$("$MV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$deps" > "$own/desa2va-deps.pth"   # a plain path entry: .pth files inside it are not run
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
"$MV/bin/mutmut" run "$@" || true
"$MV/bin/mutmut" results
