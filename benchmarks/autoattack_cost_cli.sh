#!/usr/bin/env bash
# What `robustfront eval --attacks autoattack` (standard version, official budgets, exact fp32) costs on
# this machine, measured through the command line itself. Writes benchmarks/results/aa_cli_*.json and
# prints the load average before and after each run (the machine may be shared).
#
#   bash benchmarks/autoattack_cost_cli.sh [OUT_DIR] [CIFAR10_PATH] 2> benchmarks/results/aa_cli.log
#
# 1. digits: the README's PGD-AT small_cnn, AutoAttack at 32/255 on all 360 test images.
# 2. ResNet-18 (CIFAR-10 size, 11M parameters, random weights in the kuangliu layout) on 2 CIFAR-10 test
#    images, at eps = 0.0004 (about 0.1/255: no attack succeeds: every attack spends its whole budget on every point,
#    the cost of a point that stays robust) and at 8/255 (APGD-CE breaks every point at once, the cost
#    of a point that does not).
set -euo pipefail
OUT=${1:-benchmarks/results}
CIFAR=${2:-../shared/datasets/cifar10-jpeg.tar.gz}   # relative to the working folder (the repository root, as above)
TMP=$(mktemp -d)
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
# timings and the load average go to stderr (keep it: bash ... 2> benchmarks/results/aa_cli.log)
run() { echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2; /usr/bin/time -f "wall %e s, cpu %U+%S s" nice -n 15 "$@"
        echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2; }

python -m robustfront train --data digits --model small_cnn --method pgd_at --epochs 10 --eps 32/255 --alpha 8/255 \
    --attack-steps 7 --out "$TMP/digits_pgd" --no-progress > /dev/null
run python -m robustfront eval --checkpoint "$TMP/digits_pgd/checkpoints/best.pt" --attacks autoattack --eps 32/255 \
    --no-state --out "$OUT/aa_cli_digits.json" > /dev/null

python -c "import torch; from robustfront.models import create_model; torch.manual_seed(0); \
m = create_model('resnet18', mean=[0.0] * 3, std=[1.0] * 3); \
torch.save({k: v for k, v in m.state_dict().items() if not k.startswith('normalize.')}, '$TMP/r18.pt')"
for eps in 0.0004 8/255; do
  tag=$(echo "$eps" | tr -d '/.')
  run python -m robustfront eval --model resnet18 --weights "$TMP/r18.pt" --data "$CIFAR" --attacks autoattack \
      --eps "$eps" --n 2 --no-state --out "$OUT/aa_cli_resnet18_eps$tag.json" > /dev/null
done
rm -rf "$TMP"
