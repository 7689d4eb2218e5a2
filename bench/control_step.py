"""Speed of the beta-VAE control's training step, logging LBO's measures on every step against
every Nth (configs.control_measure_every).

    python bench/control_step.py [--preset study] [--every 1,8] [--epochs 2] [--output FILE]

The control's gradient needs one encode, one decode and the -ELBO; the measures it logs (for
an epoch summary read like LBO's) take a second forward of every decode LBO makes, without
gradients. Each value of --every trains its own Trainer (same seed, same weights) through
whole epochs of the preset's built-in dataset, the variants' steps interleaved batch by
batch so that machine noise hits them alike. Reports images/s and the ratio to the first
value, and whether the variants' weights agree at the end (the logging changes nothing).
Writes bench/results/control_step_cpu.md (or --output).
"""
import argparse
import dataclasses
import datetime
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import configs  # noqa: E402
import train  # noqa: E402
from data import build_datasets, make_loader  # noqa: E402
from machine import cpu_machine, short_commit  # noqa: E402
from summary import EpochStats  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def timed_epochs(cfg, everies, epochs):
    """Seconds spent in elbo_step per value of `every` over `epochs` epochs of batches, the
    images per variant, and whether every variant ends with the same weights."""
    trainers = {}
    for every in everies:
        torch.manual_seed(0)
        trainers[every] = train.Trainer(
            dataclasses.replace(cfg, control_measure_every=every), torch.device("cpu"))
    train_set = build_datasets(cfg)[0]
    seconds = dict.fromkeys(everies, 0.0)
    images = 0
    for epoch in range(1, epochs + 1):
        stats = {every: EpochStats() for every in everies}
        for x in make_loader(train_set, cfg, train=True, epoch=epoch):
            images += len(x)
            for every, trainer in trainers.items():
                torch.manual_seed(images)
                started = time.perf_counter()
                trainer.elbo_step(x, stats[every])
                seconds[every] += time.perf_counter() - started
    weights = [trainer.vae.state_dict() for trainer in trainers.values()]
    same = all(torch.equal(w[name], weights[0][name]) for w in weights for name in w)
    return seconds, images, same


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="study")
    parser.add_argument("--every", default="1,8", help="values of control_measure_every")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--output", default=str(RESULTS / "control_step_cpu.md"))
    args = parser.parse_args(argv)
    everies = [int(v) for v in args.every.split(",")]
    cfg = configs.parse_args(["--preset", args.preset, "--objective", "elbo",
                              "--decoder", "standard"])
    seconds, images, same = timed_epochs(cfg, everies, args.epochs)
    base = images / seconds[everies[0]]
    rows = [f"| {every} | {images / s:.0f} | {images / s / base:.2f} |"
            for every, s in seconds.items()]
    report = "\n".join([
        "# The beta-VAE control's step: LBO's measures logged on every Nth step", "",
        f"- command: `python bench/control_step.py {shlex.join(argv or sys.argv[1:])}`",
        f"- machine: {cpu_machine()}; commit {short_commit()}; {datetime.date.today()}",
        f"- preset {args.preset} (`--objective elbo --decoder standard`, the study's control): "
        f"batch {cfg.batch_size}, {cfg.image_size}x{cfg.image_size}; {args.epochs} epochs "
        f"of {images // args.epochs} images per variant, interleaved batch by batch",
        f"- the variants' weights agree at the end: {'yes' if same else 'NO'}", "",
        "| control_measure_every | images/s | ratio to the first row |",
        "|---|---|---|", *rows, ""])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
