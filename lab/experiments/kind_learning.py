"""When do the demo's networks learn to draw the shape's kind? Screens of a plain autoencoder.

The demo preset's encoder and decoder as an autoencoder (z = mu, no KL, no goals) on the
built-in shapes, under screens that each change one thing: the images seen, the steps, the
loss, the decoder, the resolution.

    python lab/experiments/kind_learning.py [--screens baseline,edge_3] [--out FILE]

Each screen reports the held-out MSE and the kind its reconstructions draw (evaluate.py's
drawn-shapes measure: the nearest rendering of the image's factors as each kind; balanced
accuracy, chance 1/3), every few epochs. Writes lab/results/kind_learning_cpu.md (or --out),
its .json, and a .png of one row of reconstructions per screen.
"""
import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import configs  # noqa: E402
import disentanglement  # noqa: E402
import evaluate  # noqa: E402
from data import HELDOUT_SEED_OFFSET  # noqa: E402
from machine import cpu_machine, short_commit  # noqa: E402
from imagesets import SyntheticShapes  # noqa: E402
from losses import PIXEL_SSIM_WEIGHT, edge_strength, edges, ssim_per_image  # noqa: E402
from models import Decoder, Encoder, ModulatedDecoder, PerceptualFeatures  # noqa: E402

DEMO = configs.parse_args(["--preset", "demo"])
BASE = dict(epochs=DEMO.epochs, batch=DEMO.batch_size, lr=DEMO.lr, loss="mse", ssim=0.0,
            edge=0.0, near_edge=0.0, noise=0.0, recon_group=False, mu_init="live",
            joint_decode=False, edge_channels="mean", decoder="spec",
            image_size=DEMO.image_size, seed=0)
# name: what it changes from the baseline (the demo's images, batches, lr and cosine schedule)
SCREENS = {
    "baseline": {},
    "seed_1": dict(seed=1),
    "epochs_24": dict(epochs=2 * DEMO.epochs),
    "epochs_48": dict(epochs=4 * DEMO.epochs),
    "batch_16": dict(batch=DEMO.batch_size // 4),
    "l1": dict(loss="l1"),
    "broadcast": dict(decoder="broadcast"),
    "edge_1": dict(edge=1.0),
    "edge_3": dict(edge=3.0),
    "edge_3_seed_1": dict(edge=3.0, seed=1),
    "edge_3_epochs_24": dict(edge=3.0, epochs=2 * DEMO.epochs),
    "size_64": dict(image_size=64),
    "color_edge_3": dict(edge=3.0, edge_channels="each"),
    "color_edge_3_epochs_24": dict(edge=3.0, edge_channels="each", epochs=2 * DEMO.epochs),
    "ssim_0.1": dict(ssim=0.1),
    "ssim_1_epochs_24": dict(ssim=1.0, epochs=2 * DEMO.epochs),
    "edge_0.3_epochs_24": dict(edge=0.3, epochs=2 * DEMO.epochs),
    "lr_3x": dict(lr=3 * DEMO.lr),
    "near_edge_3": dict(near_edge=3.0),
    "near_edge_10": dict(near_edge=10.0),
    "near_edge_3_epochs_24": dict(near_edge=3.0, epochs=2 * DEMO.epochs),
    "near_edge_10_epochs_24": dict(near_edge=10.0, epochs=2 * DEMO.epochs),
    "asymmetric_near_edge_3_epochs_24": dict(decoder="asymmetric", near_edge=3.0,
                                             epochs=2 * DEMO.epochs),
    "asymmetric_epochs_24": dict(decoder="asymmetric", epochs=2 * DEMO.epochs),
    "noise_0.1_near_edge_3_epochs_24": dict(noise=0.1, near_edge=3.0, epochs=2 * DEMO.epochs),
    "noise_0.3_near_edge_3_epochs_24": dict(noise=0.3, near_edge=3.0, epochs=2 * DEMO.epochs),
    "ssim_0.1_near_edge_3_epochs_24": dict(ssim=0.1, near_edge=3.0, epochs=2 * DEMO.epochs),
    "recon_group_near_edge_3_epochs_24": dict(recon_group=True, near_edge=3.0,
                                              epochs=2 * DEMO.epochs),
    "mu_zero_near_edge_3_epochs_24": dict(mu_init="zero", near_edge=3.0, epochs=2 * DEMO.epochs),
    "joint_decode_near_edge_3_epochs_24": dict(joint_decode=True, near_edge=3.0,
                                               epochs=2 * DEMO.epochs),
    "near_edge_3_epochs_24_seed_1": dict(near_edge=3.0, epochs=2 * DEMO.epochs, seed=1),
    "mu_zero_near_edge_3_epochs_24_seed_1": dict(mu_init="zero", near_edge=3.0,
                                                 epochs=2 * DEMO.epochs, seed=1),
}
LABELS = {
    "baseline": "the demo's images (12 epochs of 4,096), batch 64, MSE",
    "seed_1": "the same, seed 1",
    "epochs_24": "2x the images (24 epochs)",
    "epochs_48": "4x the images (48 epochs)",
    "batch_16": "batch 16: 4x the steps on the same images",
    "l1": "L1 loss instead of MSE",
    "broadcast": "spatial broadcast decoder (z tiled over the image with x, y channels, "
                 "4 convs of 32 at full size; Watters et al. 2019)",
    "edge_1": "MSE + 1 x the MSE of Sobel edge maps (losses.edges)",
    "edge_3": "MSE + 3 x edge MSE",
    "edge_3_seed_1": "MSE + 3 x edge MSE, seed 1",
    "edge_3_epochs_24": "MSE + 3 x edge MSE, 2x the images (24 epochs)",
    "size_64": "64x64 images (the shapes have 4x the pixels)",
    "color_edge_3": "MSE + 3 x edge MSE of each colour channel (edges of R, G, B, averaged)",
    "color_edge_3_epochs_24": "the same, 2x the images (24 epochs)",
    "ssim_0.1": "MSE + 0.1 x (1 - SSIM): the pipeline's pixel goal",
    "ssim_1_epochs_24": "MSE + 1 x (1 - SSIM), 2x the images (24 epochs)",
    "edge_0.3_epochs_24": "MSE + 0.3 x edge MSE, 2x the images (24 epochs)",
    "lr_3x": "3x the learning rate (3e-3 at the cosine's start)",
    "near_edge_3": "MSE with each pixel weighted 1 + 3 x the original's edge strength there "
                   "(losses.edge_strength; the pipeline's --pixel_emphasis 3)",
    "near_edge_10": "the same, 1 + 10 x edge strength",
    "near_edge_3_epochs_24": "1 + 3 x edge strength, 2x the images (24 epochs)",
    "near_edge_10_epochs_24": "1 + 10 x edge strength, 2x the images (24 epochs)",
    "asymmetric_near_edge_3_epochs_24": "the demo's asymmetric decoder (core's 8 dims make the "
                                        "map, detail's 24 only FiLM), 1 + 3 x edge strength, 2x "
                                        "the images",
    "asymmetric_epochs_24": "the asymmetric decoder, MSE, 2x the images",
    "noise_0.1_near_edge_3_epochs_24": "a VAE's sampling noise: z = mu + 0.1 x each dim's batch "
                                       "std of mu x N(0, 1) in training; 1 + 3 x edge strength, "
                                       "2x the images",
    "noise_0.3_near_edge_3_epochs_24": "the same at 0.3 x the std of mu",
    "ssim_0.1_near_edge_3_epochs_24": "the pixel goal with --pixel_emphasis 3: 1 + 3 x edge "
                                      "strength, + 0.1 x (1 - SSIM), 2x the images",
    "recon_group_near_edge_3_epochs_24": "LBO's recon group as the loss: the mean of the pixel "
                                         "goal (--pixel_emphasis 3), edge MSE and the random "
                                         "perceptual features' MSE, each over its median on "
                                         "the first 24 batches; 2x the images",
    "mu_zero_near_edge_3_epochs_24": "the VAE's mu layer, zero at the start; 1 + 3 x edge "
                                     "strength, 2x the images",
    "joint_decode_near_edge_3_epochs_24": "LBO's joint decode: the reconstructions decoded in "
                                          "one call with the core-only, swapped and perturbed "
                                          "latents (their BatchNorm statistics mixed), trained "
                                          "on the reconstructions alone; 1 + 3 x edge strength, "
                                          "2x the images",
    "near_edge_3_epochs_24_seed_1": "1 + 3 x edge strength, 2x the images, seed 1",
    "mu_zero_near_edge_3_epochs_24_seed_1": "the VAE's zero mu head, 1 + 3 x edge strength, 2x "
                                            "the images, seed 1",
}
TRAIN_IMAGES, HELDOUT_IMAGES, PICTURE_IMAGES = DEMO.synthetic_size, 256, 8


class BroadcastDecoder(nn.Module):
    """The code tiled over the image with two coordinate channels, then convolutions at full
    size: every pixel sees where it is, so a shape can be drawn the same way anywhere."""

    def __init__(self, latent_dim, image_size, width=32):
        super().__init__()
        axis = torch.linspace(-1, 1, image_size)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None])
        layers, channels = [], latent_dim + 2
        for _ in range(4):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width),
                       nn.LeakyReLU(0.2)]
            channels = width
        self.net = nn.Sequential(*layers, nn.Conv2d(channels, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, z):
        size = self.coords.shape[-1]
        tiled = z[:, :, None, None].expand(-1, -1, size, size)
        return self.net(torch.cat([tiled, self.coords.expand(len(z), -1, -1, -1)], 1))


def images_and_factors(n, size, seed):
    shapes = SyntheticShapes(n, size, seed=seed)
    factors = np.stack([shapes.factors(i) for i in range(n)])
    return SyntheticShapes.render_all(factors, size), factors


def kind_drawn(recon, factors, size):
    distances = evaluate._kind_distances(SyntheticShapes, recon, factors, size)
    return disentanglement.balanced_accuracy(distances.argmin(1),
                                             SyntheticShapes.kind_index(factors[:, 0]))


def edge_error(recon, x, channels):
    """MSE of the Sobel edge maps: of the channel mean (losses.edges, what the goals use), or
    of each colour channel apart, so that an edge between two colours of one grey counts."""
    if channels == "mean":
        return (edges(recon) - edges(x)).pow(2).mean()
    return sum((edges(recon[:, c:c + 1]) - edges(x[:, c:c + 1])).pow(2).mean()
               for c in range(x.shape[1])) / x.shape[1]


def joint_latents(z):
    """LBO's five latents of one decoder call (models.VAE.forward): z, core only, detail
    swapped, core and detail perturbed, so that BatchNorm normalises the reconstructions
    with the statistics of them all; the noise is the demo's noise_std."""
    core, detail = z[:, :DEMO.core_dim], z[:, DEMO.core_dim:]
    noise = DEMO.noise_std
    return torch.cat([z, torch.cat([core, torch.zeros_like(detail)], 1),
                      torch.cat([core, detail[torch.randperm(len(z))]], 1),
                      torch.cat([core + noise * torch.randn_like(core), detail], 1),
                      torch.cat([core, detail + noise * torch.randn_like(detail)], 1)])


def recon_group_terms(recon, x, x_edges, weight, perceptual):
    """LBO's recon group's measures (losses.forward_measures): the pixel goal with the pixel
    weights `weight` (pixel_emphasis), the edge MSE, the perceptual features' MSE."""
    pixel = ((recon - x).pow(2) * weight).mean() \
        + PIXEL_SSIM_WEIGHT * (1 - ssim_per_image(recon, x).mean())
    return torch.stack([pixel, (edges(recon) - x_edges).pow(2).mean(),
                        (perceptual(recon) - perceptual(x)).pow(2).mean()])


def run_screen(s, train, heldout):
    torch.manual_seed(s["seed"])
    encoder = Encoder(DEMO.enc_channels, DEMO.latent_dim, s["image_size"])
    if s["mu_init"] == "live":
        # The encoder's mu head starts at zero (the SPEC's quiet start); an autoencoder is
        # given a live one, unless the screen asks for the VAE's.
        nn.init.normal_(encoder.mu.weight, std=0.01)
    if s["decoder"] == "broadcast":
        decoder = BroadcastDecoder(DEMO.latent_dim, s["image_size"])
    elif s["decoder"] == "asymmetric":
        decoder = ModulatedDecoder(DEMO.dec_channels, DEMO.core_dim, DEMO.detail_dim,
                                   s["image_size"], DEMO.enc_channels[-1])
    else:
        decoder = Decoder(DEMO.dec_channels, DEMO.latent_dim, s["image_size"],
                          DEMO.enc_channels[-1])
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.AdamW(params, s["lr"], weight_decay=DEMO.weight_decay)
    steps = s["epochs"] * (TRAIN_IMAGES // s["batch"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, DEMO.min_lr)
    x_train, (x_held, f_held) = train, heldout
    trace, started = [], time.monotonic()
    perceptual = PerceptualFeatures(pretrained=False) if s["recon_group"] else None
    warm_up, scales = [], None
    for epoch in range(1, s["epochs"] + 1):
        encoder.train(), decoder.train()
        order = torch.randperm(len(x_train))
        for first in range(0, len(x_train) - s["batch"] + 1, s["batch"]):
            x = x_train[order[first:first + s["batch"]]]
            z = encoder(x)[0]
            if s["noise"]:
                z = z + s["noise"] * z.detach().std(0) * torch.randn_like(z)
            recon = decoder(joint_latents(z) if s["joint_decode"] else z)[:len(z)]
            x_edges = edges(x)
            weight = 1 + s["near_edge"] * edge_strength(x_edges) if s["near_edge"] else 1.0
            if s["recon_group"]:  # each term in units of its warm-up level, as LBO calibrates
                terms = recon_group_terms(recon, x, x_edges, weight, perceptual)
                if scales is None:
                    warm_up.append(terms.detach())
                    if len(warm_up) == DEMO.calibration_batches:
                        scales = torch.stack(warm_up).median(0).values
                loss = (terms / (terms.detach() if scales is None else scales)).mean()
            else:
                error = recon - x
                if s["near_edge"]:
                    error = error * weight.sqrt()
                loss = error.pow(2).mean() if s["loss"] == "mse" else error.abs().mean()
            if s["ssim"]:
                loss = loss + s["ssim"] * (1 - ssim_per_image(recon, x).mean())
            if s["edge"]:
                loss = loss + s["edge"] * edge_error(recon, x, s["edge_channels"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch % max(1, s["epochs"] // 6) == 0 or epoch == s["epochs"]:
            encoder.eval(), decoder.eval()
            with torch.no_grad():
                recon = decoder(encoder(x_held)[0])
            trace.append({"epoch": epoch, "images": epoch * len(x_train),
                          "seconds": time.monotonic() - started,
                          "mse": (recon - x_held).pow(2).mean().item(),
                          "kind_drawn": kind_drawn(recon, f_held, s["image_size"])})
            print(f"  epoch {epoch}: MSE {trace[-1]['mse']:.5f}, kind drawn "
                  f"{trace[-1]['kind_drawn']:.3f} ({trace[-1]['seconds']:.0f} s)", flush=True)
    return trace, recon[:PICTURE_IMAGES]


def picture(path, names, originals, recons):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [("original", originals)] + [(n, recons[n]) for n in names]
    fig, axes = plt.subplots(len(rows), PICTURE_IMAGES,
                             figsize=(PICTURE_IMAGES * 1.1, len(rows) * 1.1 + 0.4))
    for axes_row, (name, images) in zip(axes, rows):
        for ax, image in zip(axes_row, images):
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([]), ax.set_yticks([])
        axes_row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Held-out reconstructions of a plain autoencoder, one row per screen")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(results):
    lines = ["| screen | what it changes | images seen | wall | held-out MSE | kind drawn "
             "(chance 0.333) |", "|---|---|---|---|---|---|"]
    for name, trace in results.items():
        last = trace[-1]
        lines.append(f"| {name} | {LABELS[name]} | {last['images']:,} | {last['seconds']:.0f} s "
                     f"| {last['mse']:.5f} | {last['kind_drawn']:.3f} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", default=",".join(SCREENS),
                        help="comma-separated, of: " + ", ".join(SCREENS))
    parser.add_argument("--out", default=str(ROOT / "lab" / "results" / "kind_learning_cpu.md"))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.screens.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCREENS]
    if unknown:
        parser.error(f"unknown screen(s) {', '.join(unknown)}; choose from {', '.join(SCREENS)}")
    data, results, recons = {}, {}, {}
    for name in names:
        s = dict(BASE, **SCREENS[name])
        size = s["image_size"]
        if size not in data:
            data[size] = (images_and_factors(TRAIN_IMAGES, size, 0)[0],
                          images_and_factors(HELDOUT_IMAGES, size, HELDOUT_SEED_OFFSET))
        print(f"{name}: {LABELS[name]}", flush=True)
        results[name], recons[name] = run_screen(s, *data[size])
    out = Path(args.out)
    shown = [n for n in names if dict(BASE, **SCREENS[n])["image_size"] == DEMO.image_size]
    picture(out.with_suffix(".png"), shown, data[DEMO.image_size][1][0][:PICTURE_IMAGES],
            recons)
    out.with_suffix(".json").write_text(json.dumps(
        {"screens": {n: dict(BASE, **SCREENS[n]) for n in names}, "results": results}, indent=1))
    command = "python lab/experiments/kind_learning.py " + shlex.join(argv)
    text = [f"# {__doc__.splitlines()[0]}", "",
            f"Measured by `{command.strip()}` on {cpu_machine()}, commit {short_commit()}, "
            f"{datetime.date.today()}; one run a screen unless a seed is named. Held-out: "
            f"{HELDOUT_IMAGES} images; kind drawn: the balanced accuracy of the kind each "
            "reconstruction draws (the nearest, in MSE, of the image's factors rendered as "
            "each kind).", ""] + table(results) + [
            "", f"![reconstructions]({out.with_suffix('.png').name})", ""]
    out.write_text("\n".join(text))
    print("\n".join(table(results)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
