#!/usr/bin/env bash
# The CPU testbed study (issue 18, docs/evidence.md): the four sweeps in priority order, resumable
# (re-run the same command after an interruption: finished points are kept). Run from the repository root.
#   bash benchmarks/testbed_study.sh [OUT]      (default OUT: runs/testbed)
set -euo pipefail
out=${1:-runs/testbed}
for s in ca_at_front trades_front agr raat; do
  echo "[study] $(date -u +%FT%TZ) sweep $s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  robustfront sweep --config "configs/testbed/$s.yaml" --out "$out/$s" --jobs 2 || echo "[study] sweep $s ended with failures"
done
echo "[study] $(date -u +%FT%TZ) done (load: $(cut -d' ' -f1-3 /proc/loadavg))"
