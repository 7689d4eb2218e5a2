"""The demo with and without --lbo_grad_clip 5, paired by seed: held-out MSE / SSIM, split
score and kind drawn at the end of each run, and held-out MSE after the last epoch both runs
reached (a run the tightener stops early has seen fewer images), from the runs' small files in
lab/results/long_runs/. Its output is lab/results/grad_clip_demo/summary.txt:
    python lab/experiments/grad_clip_demo_summary.py"""
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from study import interval  # noqa: E402

RUNS = str(ROOT / "lab" / "results" / "long_runs") + os.sep
# Seed 0's two runs were made before the script that ran the others, under other folder names.
FOLDERS = {0: ("lbo_demo_intel_xeon", "lbo_demo_lbo_grad_clip_5")}


def folders(seed):
    return FOLDERS.get(seed, (f"lbo_demo_seed_{seed}", f"lbo_demo_lbo_grad_clip_5_seed_{seed}"))


def load(folder):
    final = json.load(open(os.path.join(RUNS, folder, "final_metrics.json")))
    epochs = [json.loads(line) for line in open(os.path.join(RUNS, folder, "metrics.jsonl"))]
    return {"epochs": len(epochs), "mse": final["reconstruction"]["mse"],
            "ssim": final["reconstruction"]["ssim"],
            "split": final["behaviour"]["swap"]["split_score"],
            "kind": final["drawn_shapes"]["recon_kind"],
            "heldout_mse": [e["heldout_mse"] for e in epochs]}


seeds = [s for s in range(10) if all(os.path.isdir(RUNS + f) for f in folders(s))]
print("| seed | epochs, plain / clip | held-out MSE, plain / clip | at equal epochs (epoch) "
      "| SSIM, plain / clip | split score, plain / clip | kind drawn, plain / clip |")
print("|---|---|---|---|---|---|---|")
diffs = {k: [] for k in ("mse", "equal", "ssim", "split", "kind")}
for seed in seeds:
    plain, clip = (load(f) for f in folders(seed))
    last = min(plain["epochs"], clip["epochs"])
    equal = (plain["heldout_mse"][last - 1], clip["heldout_mse"][last - 1])
    print(f"| {seed} | {plain['epochs']} / {clip['epochs']} | {plain['mse']:.5f} / "
          f"{clip['mse']:.5f} | {equal[0]:.5f} / {equal[1]:.5f} ({last}) | "
          f"{plain['ssim']:.3f} / {clip['ssim']:.3f} | {plain['split']:.2f} / "
          f"{clip['split']:.2f} | {plain['kind']:.3f} / {clip['kind']:.3f} |")
    for key in ("mse", "ssim", "split", "kind"):
        diffs[key].append(clip[key] - plain[key])
    diffs["equal"].append(equal[1] - equal[0])
print(f"\nclip − plain, paired over {len(seeds)} seeds (mean ± 95 % interval, Student's t):")
for key, label, sign in [("mse", "held-out MSE at the end", -1),
                         ("equal", "held-out MSE at equal epochs", -1), ("ssim", "SSIM", 1),
                         ("split", "split score", 1), ("kind", "kind drawn", 1)]:
    mean, half, n = interval(diffs[key])
    better, worse = sum(sign * d > 0 for d in diffs[key]), sum(sign * d < 0 for d in diffs[key])
    print(f"- {label}: {mean:+.5f} ± {half:.5f}; the clip better on {better} seeds, worse on "
          f"{worse}, of {n}")
