"""Do the decoder's BatchNorm running statistics depend on what training decodes beside the
reconstructions?

    python lab/experiments/decoder_batchnorm.py CHECKPOINT [CHECKPOINT ...] [--batches N]

In an LBO step the decoder runs once on five latents per image (the reconstruction and the
core-only, swapped and two perturbed latents), so its BatchNorm running statistics, which
evaluation and every picture use, describe that mixture (the beta-VAE control decodes the
reconstruction alone: its two rows should agree). This script measures held-out MSE
and SSIM with the saved statistics, and again with the decoder's statistics re-estimated from
the reconstruction pass alone (z = mu + sigma * eps of training images, as the reconstruction
chunk is made in a step; a cumulative average over N training batches). Writes
lab/results/decoder_batchnorm_<device>.md.
"""
import argparse
import datetime
import shlex
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import configs  # noqa: E402
from data import build_datasets, make_loader  # noqa: E402
from machine import cpu_machine, short_commit  # noqa: E402
from evaluate import load_checkpoint  # noqa: E402
from quality import reconstruction_metrics  # noqa: E402

RESULTS = ROOT / "lab" / "results"


@torch.no_grad()
def reestimate_from_reconstructions(vae, train_set, cfg, device, batches):
    """Reset the decoder's BatchNorm statistics and average them over the reconstruction
    pass of `batches` training batches (encoder in eval mode, decoder norms in training)."""
    norms = [m for m in vae.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average, not an exponential one
    vae.eval()
    for norm in norms:
        norm.train()
    for i, x in enumerate(make_loader(train_set, cfg, train=True, epoch=1)):
        if i == batches:
            break
        mu, logvar = vae.posterior(x.to(device))
        vae.decode_latent(vae.reparameterize(mu, logvar, torch.randn_like(mu)))
    vae.eval()


def measure(path, device, batches):
    cfg, vae, _ = load_checkpoint(path, device)
    train_set, heldout, _ = build_datasets(cfg)
    vae.eval()
    joint = reconstruction_metrics(vae, heldout, cfg, device)
    reestimate_from_reconstructions(vae, train_set, cfg, device, batches)
    alone = reconstruction_metrics(vae, heldout, cfg, device)
    return cfg, joint, alone


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--batches", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    commit = short_commit()
    lines = ["# Decoder BatchNorm statistics: joint decode against reconstructions alone", "",
             f"Machine: {cpu_machine() if device.type == 'cpu' else torch.cuda.get_device_name()}"
             f"; commit {commit}; {datetime.date.today()}.",
             f"Command: `python lab/experiments/{Path(__file__).name} "
             f"{shlex.join(sys.argv[1:])}`", "",
             "| checkpoint | objective | statistics | held-out images | MSE | SSIM |",
             "|---|---|---|---|---|---|"]
    for path in args.checkpoints:
        cfg, joint, alone = measure(path, device, args.batches)
        saved = "saved (joint decode)" if configs.scores_goals(cfg) else "saved (reconstructions)"
        for name, result in ((saved, joint),
                             (f"reconstructions alone ({args.batches} batches)", alone)):
            lines.append(f"| {path} | {cfg.objective} | {name} | {result['images']} | "
                         f"{result['mse']:.5f} | {result['ssim']:.4f} |")
        print(lines[-2], lines[-1], sep="\n", flush=True)
    output = Path(args.output or RESULTS / f"decoder_batchnorm_{device.type}.md")
    output.write_text("\n".join(lines) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
