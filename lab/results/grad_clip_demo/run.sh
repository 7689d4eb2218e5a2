#!/bin/bash
# The demo with and without --lbo_grad_clip 5, one seed after the other (2 cores: never two
# torch jobs at once). Run from the repository root:
#   bash bench/results/grad_clip_demo/run.sh SEED...
# Each run's small files go to bench/results/long_runs/lbo_demo[_lbo_grad_clip_5]_seed_N/.
set -euo pipefail
. .venv/bin/activate
mkdir -p /tmp/clip_demo
for seed in "$@"; do
  for variant in plain clip; do
    if [ $variant = clip ]; then extra="--lbo_grad_clip 5"; keep=lbo_demo_lbo_grad_clip_5_seed_$seed
    else extra=""; keep=lbo_demo_seed_$seed; fi
    out=/tmp/clip_demo/$keep; dest=bench/results/long_runs/$keep
    cmd="python train.py --preset demo --seed $seed $extra"
    echo "== $keep: $cmd  ($(git rev-parse --short HEAD), $(date -u +%H:%M))"
    start=$SECONDS
    $cmd --output_dir "$out" > "$out.log" 2>&1 || { echo "$keep failed"; tail -5 "$out.log"; continue; }
    mkdir -p "$dest"
    cp "$out"/{final_metrics.json,metrics.jsonl,report.md,reconstructions.png,cross_reconstruction.png} "$dest"/
    echo "$cmd   (commit $(git rev-parse --short HEAD), $((SECONDS - start)) s wall)" > "$dest/command.txt"
    echo "== $keep done in $((SECONDS - start)) s"
  done
done
