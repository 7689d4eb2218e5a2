"""How much of realism_swap is the batch size? Two disjoint batches of REAL built-in shapes,
scored as if one were the swaps: their true distance is 0, so whatever realism_swap reports
is the sampling noise of the two batch means.

    python lab/experiments/realism_swap_floor.py [--draws 8] [--checkpoint RUN/checkpoint.pt]

Through the demo preset's discriminator (untrained, or a run's with --checkpoint), at the
batch sizes 32 and 128, for realism_swap_estimate plain and unbiased. Writes
lab/results/realism_swap_floor_cpu.md (or --out).
"""
import argparse
import contextlib
import datetime
import shlex
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import configs  # noqa: E402
from checkpoint import read_checkpoint  # noqa: E402
from machine import cpu_machine, short_commit  # noqa: E402
from imagesets import SyntheticShapes  # noqa: E402
from losses import real_stats, realism_measures  # noqa: E402
from models import Discriminator  # noqa: E402

COMMAND = "lab/experiments/realism_swap_floor.py"
BATCHES = (32, 128)
ESTIMATES = ("plain", "unbiased")


def discriminator(checkpoint):
    disc = Discriminator(configs.parse_args(["--preset", "demo"]).disc_channels)
    if checkpoint:
        disc.load_state_dict(read_checkpoint(checkpoint)["disc"])
    return disc.eval()


def floor(disc, pool, batch, estimate, draws):
    """realism_swap of one real batch against another, over `draws` disjoint pairs."""
    values = []
    for draw in range(draws):
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(draw))
        real, other = pool[order[:batch]], pool[order[batch:2 * batch]]
        with torch.no_grad():
            stats = real_stats(real, lambda images: images, contextlib.nullcontext, disc,
                               swap_estimate=estimate)
            values.append(realism_measures(disc, other, other, stats)[1].item())
    values = torch.tensor(values)
    return values.mean().item(), values.std().item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--checkpoint", default="", help="a run's checkpoint.pt (its disc)")
    parser.add_argument("--out", default=str(ROOT / "lab" / "results" /
                                             "realism_swap_floor_cpu.md"))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    disc = discriminator(args.checkpoint)
    shapes = SyntheticShapes(2 * max(BATCHES) * 4, 32, seed=5)
    pool = torch.stack([shapes[i] for i in range(len(shapes))])
    commit = short_commit()
    lines = ["# realism_swap of two disjoint real batches (true distance 0)", "",
             f"- command: `{shlex.join(['python', COMMAND, *argv])}`",
             f"- {datetime.date.today()}, {cpu_machine()}, commit {commit}; the demo "
             f"preset's discriminator ({args.checkpoint or 'untrained, seed 0'}); 32×32 "
             f"built-in shapes; mean ± sd over {args.draws} disjoint pairs", "",
             "| batch | " + " | ".join(ESTIMATES) + " |", "|---|" + "---|" * len(ESTIMATES)]
    for batch in BATCHES:
        cells = [floor(disc, pool, batch, estimate, args.draws) for estimate in ESTIMATES]
        lines.append(f"| {batch} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in cells)
                     + " |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text + f"wrote {args.out}")


if __name__ == "__main__":
    main()
