#!/usr/bin/env bash
# What only a GPU can show, in one short script (1 and 2 took about 8 minutes on one H200;
# 0 has not run on a GPU yet):
#   0. the GPU path part by part (bench/gpu_paths.py): a run interrupted mid-epoch and resumed
#      on CUDA against a straight one; peak memory at batch 256 on the 64x64 default with
#      forced refusals; recompiles under --compile across calibration, training, look-ahead
#      and evaluation, and BatchNorm buffers unchanged by a look-ahead; host syncs per step;
#      the CelebA loader at batch 256 on generated 178x218 JPEGs; every measure of one batch
#      on the CPU and the GPU side by side -> bench/results/gpu_paths_cuda.{md,json}
#   1. the full-width guarded step (batch 256, bf16 autocast, channels-last, compiled, and the
#      next-batch guard) against the naive baseline -> bench/results/step_speed_cuda.{md,json}
#   2. the default study grid at the study preset, 5 seeds, runs side by side
#      -> lab/results/study_cuda.md (+ .json, .png), each run's small files kept under
#         lab/results/study_runs_cuda/ so that an interrupted check continues
#
#   3. (LONG=1 only, minutes more) 20x the study's images, 160 epochs: the control, which
#      draws the kind only there on a CPU (lab/results/long_control_cpu.md), and LBO with
#      the split switches, untightened so that the tightener's stop cannot end it first; one
#      seed each, side by side -> lab/results/long_runs_cuda/
#
#   bash bench/gpu_check.sh            # 0, 1 and 2
#   STEPS=6 SEEDS=1 bash bench/gpu_check.sh   # a quicker look
#   PARTS_ONLY=1 bash bench/gpu_check.sh   # 0 alone
#   LONG=1 bash bench/gpu_check.sh     # 0, 1, 2 and 3
# Exits at once, saying so, when no CUDA device is visible. Nothing here runs in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
STEPS=${STEPS:-12}
SEEDS=${SEEDS:-5}
JOBS=${JOBS:-12}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch; this script is for a GPU machine" >&2
    exit 1
fi
"$PYTHON" -c "import torch; print('gpu_check:', torch.cuda.get_device_name(), torch.__version__)"

echo "== 0/2 the GPU path part by part: resume, memory, compile, syncs, loader, measures"
# A failed part is written down with the others' numbers; the script goes on regardless.
"$PYTHON" bench/gpu_paths.py --device cuda --batch 256 || echo "gpu_check: a part failed (bench/results/gpu_paths_cuda.md)"

if [ "${PARTS_ONLY:-0}" = 1 ]; then
    exit 0
fi

echo "== 1/2 full-width step: bf16, channels-last, compile, next-batch (batch 256)"
"$PYTHON" bench/step_speed.py --device cuda --batch 256 --steps "$STEPS" \
    --variants naive,ours,ours+amp+channels_last,ours+amp+channels_last+compile,ours+amp+channels_last+next_batch

echo "== 2/2 the default study grid, --preset study, $SEEDS seeds, $JOBS runs at a time"
# One CPU thread per run: a dozen runs share the host's cores (they fight otherwise).
OMP_NUM_THREADS=1 "$PYTHON" study.py --device cuda --jobs "$JOBS" --seeds "$SEEDS" \
    --out runs/study_cuda --keep lab/results/study_runs_cuda
cp runs/study_cuda/study.md lab/results/study_cuda.md
cp runs/study_cuda/study.json lab/results/study_cuda.json
cp runs/study_cuda/study.png lab/results/study_cuda.png
echo "gpu_check: wrote bench/results/gpu_paths_cuda.md, bench/results/step_speed_cuda.md, lab/results/study_cuda.md"

if [ "${LONG:-0}" = 1 ]; then
    echo "== 3/3 160 epochs (655,360 images): the control and LBO with the split switches"
    mkdir -p runs
    declare -A RUNS=([elbo_beta1_160_epochs]="--objective elbo --decoder standard"
                     [lbo_consistency_asymmetric_160_epochs]="--consistency split --decoder asymmetric --tighten_start_epoch 1000000")
    for name in "${!RUNS[@]}"; do
        # shellcheck disable=SC2086  # the flags are words
        OMP_NUM_THREADS=4 "$PYTHON" train.py --preset study --device cuda --epochs 160 \
            ${RUNS[$name]} --output_dir "runs/long_cuda/$name" > "runs/long_cuda_$name.log" 2>&1 &
    done
    wait
    for name in "${!RUNS[@]}"; do
        mkdir -p "lab/results/long_runs_cuda/$name"
        cp "runs/long_cuda/$name"/{metrics.jsonl,final_metrics.json,report.md,reconstructions.png,cross_reconstruction.png} \
            "lab/results/long_runs_cuda/$name/"
    done
    echo "gpu_check: wrote lab/results/long_runs_cuda/"
fi
