#!/bin/bash
# Screens of consistency_units spread on the larger built-in shapes (radius 0.15-0.25 of the
# side, centres 0.39-0.61), one LBO demo-size run each, one after the other (2 cores: never
# two at once). Run from the repository root:  bash bench/results/consistency_units/run.sh NAME...
# Each run's small files are copied to bench/results/long_runs/lbo_large_spread_NAME/.
set -euo pipefail
LARGE='from imagesets import SyntheticShapes as S; S.RADIUS = (0.15, 0.10); S.CENTRE = (0.39, 0.22); import train; train.main()'
# "three removed": a live mu head, the SPEC's decoder and consistency, four groups dropped,
# no tightening inside the 12 epochs (bench/results/kind_learning_large_shapes_cpu.md)
# (--lbo_grad_clip 0: the demo preset clips since d4ca576; these screens were run unclipped)
BASE="--preset demo --pixel_emphasis 3 --consistency_units spread --mu_init_std 0.01 --decoder spec --consistency spec --tighten_start_epoch 20 --lbo_grad_clip 0"
args_of() {
  case $1 in
    seed0) echo "$BASE --drop_groups core,swap,realism,disentangle --seed 0" ;;
    seed1) echo "$BASE --drop_groups core,swap,realism,disentangle --seed 1" ;;
    seed2) echo "$BASE --drop_groups core,swap,realism,disentangle --seed 2" ;;
    with_core) echo "$BASE --drop_groups swap,realism,disentangle" ;;
    with_swap) echo "$BASE --drop_groups core,realism,disentangle" ;;
    with_realism) echo "$BASE --drop_groups core,swap,disentangle" ;;
    with_disentangle) echo "$BASE --drop_groups core,swap,realism" ;;
    with_split) echo "$BASE --drop_groups core,swap,realism,disentangle --consistency split" ;;
    with_asymmetric) echo "$BASE --drop_groups core,swap,realism,disentangle --decoder asymmetric" ;;
    plain_seed1) echo "$BASE --drop_groups core,swap,realism,disentangle --consistency_units plain --seed 1" ;;
    plain_seed2) echo "$BASE --drop_groups core,swap,realism,disentangle --consistency_units plain --seed 2" ;;
    with_disentangle_seed1) echo "$BASE --drop_groups core,swap,realism --seed 1" ;;
    with_asymmetric_core16) echo "$BASE --drop_groups core,swap,realism,disentangle --decoder asymmetric --core_dim 16" ;;
    with_asymmetric_split) echo "$BASE --drop_groups core,swap,realism,disentangle --decoder asymmetric --consistency split" ;;
    without_disentangle) echo "$BASE --drop_groups disentangle" ;;
    with_core_seed1) echo "$BASE --drop_groups swap,realism,disentangle --seed 1" ;;
    with_swap_seed1) echo "$BASE --drop_groups core,realism,disentangle --seed 1" ;;
    with_realism_seed1) echo "$BASE --drop_groups core,swap,disentangle --seed 1" ;;
    with_swap_seed2) echo "$BASE --drop_groups core,realism,disentangle --seed 2" ;;
    with_realism_seed2) echo "$BASE --drop_groups core,swap,disentangle --seed 2" ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}
for name in "$@"; do
  out=/tmp/spread_runs/$name; keep=bench/results/long_runs/lbo_large_spread_$name
  args="$(args_of "$name") --output_dir $out"
  echo "== $name: $args  ($(git rev-parse --short HEAD), $(date -u +%H:%M))"
  start=$SECONDS
  python -c "$LARGE" $args > "/tmp/spread_runs/$name.log" 2>&1 || { echo "$name failed"; tail -5 "/tmp/spread_runs/$name.log"; continue; }
  mkdir -p "$keep"
  cp "$out"/{final_metrics.json,metrics.jsonl,report.md,reconstructions.png,cross_reconstruction.png} "$keep"/
  echo "$args" > "$keep/command.txt"
  echo "== $name done in $((SECONDS - start)) s"
done
