#!/usr/bin/env bash
# The GPU run (docs/gpu.md): CUDA tests, bench, one epoch, short schedules + AutoAttack, compile, the
# environment, within --budget-s; gpu_run.json and summary.txt to --out (default $OUT). On the CPU:
# --dry-run (a minute, tiny model); --plan prints the plan and runs nothing.
#
#   bash benchmarks/gpu/run.sh --budget-s 470 --data .data/cifar10-jpeg.tar.gz --out "$OUT"
#
# Needs no network: robustfront runs from this checkout (PYTHONPATH, no install); pyautoattack and
# pytest come from .whl/ when the machine lacks them (benchmarks/gpu/prepare.sh puts them there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# the interpreter: $PYTHON, else the first of python3, python that has torch
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for c in python3 python; do
        if command -v "$c" >/dev/null && "$c" -c "import torch" 2>/dev/null; then PY="$c"; break; fi
    done
fi
[ -n "$PY" ] || { echo "run.sh: no python with torch on PATH; allowed: set PYTHON=/path/to/python" >&2; exit 2; }
has() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }
extra=""
# unpacked wheels, .whl/site/<module>/ (prepare.sh): each used only when <module> is not installed
for dir in .whl/site/*/; do
    [ -d "$dir" ] || continue
    pkg="$(basename "$dir")"
    has "$pkg" || extra="$extra:$ROOT/.whl/site/$pkg"
done
# or plain wheels in .whl/: installed without network and without their dependencies
for whl in .whl/*.whl; do
    [ -e "$whl" ] || continue
    name="$(basename "$whl" | cut -d- -f1)"
    has "$name" || "$PY" -m pip install --quiet --no-index --no-deps "$whl" >&2
done
export PYTHONPATH="$ROOT$extra${PYTHONPATH:+:$PYTHONPATH}"
# the commit this checkout was prepared from (prepare.sh; the device's copy has no .git)
if [ -z "${ROBUSTFRONT_COMMIT:-}" ] && [ -f .whl/commit ]; then export ROBUSTFRONT_COMMIT="$(cat .whl/commit)"; fi
export ROBUSTFRONT_CACHE="${ROBUSTFRONT_CACHE:-$ROOT/runs/gpu/cache}"
export PYTHONUNBUFFERED=1
exec "$PY" "$ROOT/benchmarks/gpu/gpu_run.py" "$@"
