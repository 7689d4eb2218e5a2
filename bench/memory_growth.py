"""Resident memory over many guarded LBO steps of the full-size model on the CPU.

    python bench/memory_growth.py [--steps 200] [--batch 4]

The guard snapshots every parameter, buffer and optimizer tensor each step; this checks that
the snapshots are refilled in place rather than piling up. Prints and writes
bench/results/memory_growth_cpu.json.
"""
import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import configs  # noqa: E402
import train  # noqa: E402
from machine import cpu_machine  # noqa: E402
from summary import EpochStats  # noqa: E402


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    # Full-width VAE and discriminator; random perceptual features (no download here).
    cfg = configs.parse_args(["--perceptual", "random", "--batch_size", str(args.batch),
                              "--calibration_batches", "2", "--output_dir", "/tmp/memory_bench"])
    torch.manual_seed(0)
    trainer = train.Trainer(cfg, torch.device("cpu"))
    stats = EpochStats()
    x = torch.rand(args.batch, 3, 64, 64)
    for _ in range(cfg.calibration_batches):
        trainer.calibration_step(x, stats)
    trainer.finish_calibration()
    samples, started = [], time.time()
    for step in range(1, args.steps + 1):
        # Discriminator updates included: lbo_step makes them on accepted steps. Its result
        # is held through the next step, as train_epoch holds it for the progress bar.
        evaluation = trainer.lbo_step(torch.rand_like(x), stats, f"step {step}",  # noqa: F841
                                      lambda line: None)
        if step % 10 == 0:
            samples.append((step, rss_mb()))
            print(f"step {step:4d}  rss {samples[-1][1]:8.1f} MB", flush=True)
    after_warmup = [mb for step, mb in samples if step >= 20]
    result = {
        "machine": cpu_machine(),
        "command": "python bench/memory_growth.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
        "vae_params": sum(p.numel() for p in trainer.vae.parameters()),
        "steps": args.steps, "batch": args.batch,
        "accepted": stats.accepted, "rollbacks": stats.rollbacks, "rejected": stats.rejected,
        "seconds_per_step": (time.time() - started) / args.steps,
        "rss_mb_at_step_20": after_warmup[0], "rss_mb_final": after_warmup[-1],
        "rss_mb_max_after_step_20": max(after_warmup),
        "growth_mb_after_step_20": after_warmup[-1] - after_warmup[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "samples": samples,
    }
    out = Path(__file__).resolve().parent / "results" / "memory_growth_cpu.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
