#!/usr/bin/env bash
# The CPU testbed study (issue 18, docs/evidence.md): the four claim sweeps in priority order, then the
# calibration sweep, then the verdicts, the figures and the end-of-training conflict of every method.
# Resumable: re-run the same command after an interruption (finished points are kept). From the repo root:
#   bash benchmarks/testbed_study.sh [OUT]      (default OUT: runs/testbed)
set -euo pipefail
out=${1:-runs/testbed}
for s in ca_at_front trades_front agr raat calibration; do
  echo "[study] $(date -u +%FT%TZ) sweep $s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  robustfront sweep --config "configs/testbed/$s.yaml" --out "$out/$s" --jobs 2 || echo "[study] sweep $s ended with failures"
done
echo "[study] $(date -u +%FT%TZ) sweeps done (load: $(cut -d' ' -f1-3 /proc/loadavg))"
python benchmarks/testbed_claims.py "$out" --out "$out/results" --figures "$out/results/figures"
python benchmarks/testbed_conflict.py "$out" --out "$out/results" --figures "$out/results/figures"
echo "[study] $(date -u +%FT%TZ) done: $out/results (claims.md, calibration.md, points.csv, figures/)"
