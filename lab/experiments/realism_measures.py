"""What do the realism and perceptual goals reward? Each measure on images of known quality.

    python lab/experiments/realism_measures.py --control C.pt --collapsed L.pt --discriminator D.pt

On one batch of held-out images x, every candidate output is scored by the measures a step
computes against x: pixel MSE, the perceptual distance (the run's perceptual network), the
original design's realism score (1 - mean sigmoid D(image)) and the feature realism (the distance from x
in the discriminator's stages; losses.realism_measures). The candidates: x itself, the
control's reconstructions of x (faithful but blurred), the same reconstructions paired with the
wrong images, the batch's mean image for every input, and the reconstructions of a decoder
that collapsed to one texture (an LBO run with the original design's realism score). The discriminator is
the one saved in --discriminator (an LBO checkpoint: trained against that run's outputs).
A measure that rewards reconstruction ranks x < reconstructions < wrong pairs / mean image.
Writes lab/results/realism_measures_<device>.md.
"""
import argparse
import contextlib
import datetime
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from checkpoint import read_checkpoint  # noqa: E402
from data import build_datasets  # noqa: E402
from machine import cpu_machine, short_commit  # noqa: E402
from evaluate import load_checkpoint  # noqa: E402
from losses import real_stats, realism_measures  # noqa: E402
from models import Discriminator, PerceptualFeatures  # noqa: E402

RESULTS = ROOT / "lab" / "results"


def reconstructions(path, x, device):
    _, vae, _ = load_checkpoint(path, device)
    vae.eval()
    return vae.reconstruct(x).clamp(0, 1)


def discriminator(path, device):
    state = read_checkpoint(path)
    disc = Discriminator(tuple(state["config"]["disc_channels"])).to(device)
    disc.load_state_dict(state["disc"])
    return disc.eval().requires_grad_(False)


def scores(images, x, disc, perceptual):
    """The measures of `images` against x, as the step computes them (images as recon)."""
    spec = realism_measures(disc, images, images,
                            real_stats(x, perceptual, contextlib.nullcontext))[0]
    features = realism_measures(disc, images, images,
                                real_stats(x, perceptual, contextlib.nullcontext, disc))[0]
    return {"pixel MSE": F.mse_loss(images, x).item(),
            "perceptual": F.mse_loss(perceptual(images), perceptual(x)).item(),
            "realism score (seed)": spec.item(), "realism features": features.item()}


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--control", required=True, help="checkpoint of a β-VAE control run")
    parser.add_argument("--collapsed", required=True,
                        help="checkpoint of a run whose decoder draws one image for all")
    parser.add_argument("--discriminator", required=True, help="checkpoint whose disc to use")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = load_checkpoint(args.control, device)[0]
    heldout = build_datasets(cfg)[1]
    x = torch.stack([heldout[i] for i in range(min(args.images, len(heldout)))]).to(device)
    perceptual = PerceptualFeatures(cfg.perceptual == "vgg16", cfg.vgg_weights).to(device)
    disc = discriminator(args.discriminator, device)
    recon = reconstructions(args.control, x, device)
    candidates = {
        "x itself": x,
        "control's reconstructions of x": recon,
        "the same reconstructions, wrong images": recon.roll(1, 0),
        "the batch's mean image for every input": x.mean(0, keepdim=True).expand_as(x),
        "collapsed decoder's outputs (one texture)": reconstructions(args.collapsed, x, device),
    }
    table = {name: scores(images, x, disc, perceptual) for name, images in candidates.items()}
    commit = short_commit()
    columns = list(next(iter(table.values())))
    lines = ["# What the realism and perceptual measures reward", "",
             f"Machine: {cpu_machine() if device.type == 'cpu' else torch.cuda.get_device_name()}"
             f"; commit {commit}; {datetime.date.today()}; {len(x)} held-out images "
             f"({cfg.perceptual} perceptual features).",
             f"Command: `python lab/experiments/{Path(__file__).name} "
             f"{shlex.join(sys.argv[1:])}`", "",
             "Lower is better for every measure; each is computed against x as a step does.", "",
             "| candidate | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{row[c]:.4g}" for c in columns) + " |"
              for name, row in table.items()]
    output = RESULTS / f"realism_measures_{device.type}.md"
    output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(table) - 2:]))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
