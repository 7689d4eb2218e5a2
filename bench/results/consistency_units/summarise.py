"""One row per run of run.sh: epochs, held-out MSE / SSIM, split score, the kind drawn by
the reconstructions and the swap, and the shape probe from all dims / core / detail.
Run from the repository root: python bench/results/consistency_units/summarise.py"""
import glob
import json
import os

for folder in sorted(glob.glob("bench/results/long_runs/lbo_large_spread_*")):
    m = json.load(open(os.path.join(folder, "final_metrics.json")))
    epochs = sum(1 for _ in open(os.path.join(folder, "metrics.jsonl")))  # a line an epoch
    shape = m["factors"]["probes"]["shape"]
    print(f"| {os.path.basename(folder)[len('lbo_large_spread_'):]} | {epochs} "
          f"| {m['reconstruction']['mse']:.4f} / {m['reconstruction']['ssim']:.3f} "
          f"| {m['behaviour']['swap']['split_score']:.2f} "
          f"| {m['drawn_shapes']['recon_kind']:.3f} / {m['drawn_shapes']['swap_kind']:.3f} "
          f"| {shape['all']:.2f} / {shape['core']:.2f} / {shape['detail']:.2f} |")
