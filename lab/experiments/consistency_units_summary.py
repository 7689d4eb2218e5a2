"""One row per run of the consistency_units screens: epochs, held-out MSE / SSIM, split score, the kind drawn by
the reconstructions and the swap, the shape probe from all dims / core / detail, and the
groups' bottleneck shares over all epochs. The two seed-0 runs of the three-removed setting
were run before the switch existed (through a screen script, since retired: lab/README.md);
the switch gives the spread run's numbers bit for bit. The table is the one in
lab/results/consistency_units_cpu.md:
    python lab/experiments/consistency_units_summary.py"""
import glob
import json
import os
from pathlib import Path

RUNS = str(Path(__file__).resolve().parents[2] / "lab" / "results" / "long_runs") + os.sep
EARLIER = {"seed0": "lbo_demo_large_shapes_pixel_emphasis_3_three_removed_core_consistency_"
                    "in_core_units",
           "plain_seed0": "lbo_demo_large_shapes_pixel_emphasis_3_three_removed"}


def row(name, folder):
    m = json.load(open(os.path.join(folder, "final_metrics.json")))
    epochs = [json.loads(line) for line in open(os.path.join(folder, "metrics.jsonl"))]
    shares = {g: sum(e["bottleneck"][g] for e in epochs) / len(epochs)
              for g in epochs[0]["bottleneck"]}
    shape = m["factors"]["probes"]["shape"]
    necks = ", ".join(f"{g} {s:.0%}" for g, s in shares.items() if s >= 0.005)
    return (f"| {name} | {len(epochs)} "
            f"| {m['reconstruction']['mse']:.4f} / {m['reconstruction']['ssim']:.3f} "
            f"| {m['behaviour']['swap']['split_score']:.2f} "
            f"| {m['drawn_shapes']['recon_kind']:.3f} / {m['drawn_shapes']['swap_kind']:.3f} "
            f"| {shape['all']:.2f} / {shape['core']:.2f} / {shape['detail']:.2f} | {necks} |")


folders = {name: RUNS + folder for name, folder in EARLIER.items()}
folders.update({os.path.basename(f)[len("lbo_large_spread_"):]: f
                for f in glob.glob(RUNS + "lbo_large_spread_*")})
print("| run | epochs | MSE / SSIM | split | kind drawn, recon / swap "
      "| shape probe, all / core / detail | bottleneck |")
print("|---|---|---|---|---|---|---|")
for name in sorted(folders):
    print(row(name, folders[name]))
