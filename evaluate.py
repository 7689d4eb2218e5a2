"""Evaluate a trained BOM VAE v15 and draw its pictures (SPEC §8).

    python evaluate.py outputs_bom_v15/checkpoint.pt [--output_dir DIR]

Runs automatically at the end of training; run it by hand to redraw everything from a
checkpoint (after an interrupted run, or with a different held-out set).
"""
import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

import configs
import plots
from checkpoint import read_checkpoint
from configs import GROUPS, UserError
from data import build_datasets, make_loader
from losses import ssim_per_image
from models import VAE

TRAVERSAL_DIMS = 15
TRAVERSAL_VALUES = torch.linspace(-3, 3, 11)
PICTURE_IMAGES = 8


@torch.no_grad()
def reconstruction_metrics(vae, dataset, cfg, device, amp=contextlib.nullcontext):
    """MSE, PSNR and SSIM of eval-mode reconstructions (decode(mu)) on up to cfg.eval_images."""
    vae.eval()
    squared, ssims, seen = [], [], 0
    for x in make_loader(dataset, cfg, train=False):
        x = x[: cfg.eval_images - seen].to(device)
        with amp():
            recon = vae.reconstruct(x).float()
        squared.append((recon - x).pow(2).flatten(1).mean(1).cpu())
        ssims.append(ssim_per_image(recon, x).cpu())
        seen += len(x)
        if seen >= cfg.eval_images:
            break
    vae.train()
    mse = torch.cat(squared)
    psnr = (10 * torch.log10(1 / mse.clamp(min=1e-10))).mean().item()
    return {"images": seen, "mse": mse.mean().item(), "psnr": psnr,
            "ssim": torch.cat(ssims).mean().item()}


def _first_images(dataset, n):
    return torch.stack([dataset[i] for i in range(min(n, len(dataset)))])


@torch.no_grad()
def _traversal_grid(vae, mu, dims):
    """For one image's mu: each dim in `dims` swept over TRAVERSAL_VALUES around its value."""
    rows = []
    for d in dims:
        z = mu.repeat(len(TRAVERSAL_VALUES), 1)
        z[:, d] += TRAVERSAL_VALUES.to(z)
        rows.append(vae.decode(z).float().cpu())
    return torch.stack(rows)


@torch.no_grad()
def draw_pictures(vae, dataset, history, out, device, target_rollback_rate):
    """Every picture of SPEC §8 from eval-mode decodes of held-out images."""
    out = Path(out)
    vae.eval()
    x = _first_images(dataset, 2 * PICTURE_IMAGES).to(device)
    mu, _ = vae.encode(x)
    mu = mu.float()
    core = vae.core_dim
    z_core_only = torch.cat([mu[:, :core], torch.zeros_like(mu[:, core:])], 1)
    recon, recon_core = vae.decode(mu).float(), vae.decode(z_core_only).float()
    half = len(x) // 2
    cross = vae.decode(torch.cat([mu[:half, :core], mu[half:2 * half, core:]], 1)).float()
    # The most variable dims of each part (over this sample) show the most in a traversal.
    spread = mu.var(0) if len(mu) > 1 else torch.ones(mu.shape[1], device=mu.device)
    core_dims = spread[:core].argsort(descending=True)[:TRAVERSAL_DIMS].tolist()
    detail_dims = (spread[core:].argsort(descending=True)[:TRAVERSAL_DIMS] + core).tolist()
    values = TRAVERSAL_VALUES.tolist()
    paths = [
        plots.save_reconstructions(out / "reconstructions.png", x.cpu(), recon.cpu(),
                                   recon_core.cpu()),
        plots.save_traversals(out / "traversals_core.png", _traversal_grid(vae, mu[0], core_dims),
                              core_dims, values, "Core traversals (structure)"),
        plots.save_traversals(out / "traversals_detail.png",
                              _traversal_grid(vae, mu[0], detail_dims), detail_dims, values,
                              "Detail traversals (appearance)"),
        plots.save_cross_reconstruction(out / "cross_reconstruction.png", x[:half].cpu(),
                                        x[half:2 * half].cpu(), cross.cpu()),
    ]
    vae.train()
    if history:
        paths += [
            plots.save_group_balance(out / "group_balance.png", history, GROUPS),
            plots.save_training_history(out / "training_history.png", history),
            plots.save_bottleneck_shares(out / "bottleneck_shares.png", history, GROUPS),
            plots.save_rollback_rate(out / "rollback_rate.png", history, target_rollback_rate),
        ]
    return [Path(p) for p in paths]


def load_checkpoint(path, device):
    """Config, VAE and the whole saved state from a checkpoint written by train.py."""
    state = read_checkpoint(path, device)
    cfg = configs.from_dict(state["config"])
    vae = VAE(cfg).to(device)
    vae.load_state_dict(state["vae"])
    return cfg, vae, state


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--output_dir", help="where to write (default: the checkpoint's folder)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
        cfg, vae, state = load_checkpoint(args.checkpoint, device)
        _, heldout, description = build_datasets(cfg)
        out = Path(args.output_dir or Path(args.checkpoint).parent)
        out.mkdir(parents=True, exist_ok=True)
        metrics = reconstruction_metrics(vae, heldout, cfg, device)
        (out / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"{description}: held-out {metrics['images']} images  MSE {metrics['mse']:.5f}  "
              f"PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}")
        paths = draw_pictures(vae, heldout, state["history"], out, device,
                              cfg.target_rollback_rate)
        print("pictures: " + ", ".join(p.name for p in paths))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
