"""How well a trained VAE reconstructs held-out images: MSE, PSNR, SSIM, the share of the
images' pixel variance the reconstructions explain, and LPIPS and FID (through torchmetrics,
when it is installed).

Eval-mode reconstructions, decode(mu), on the first held-out images in loader order.
"""
import contextlib
import math

import torch

from data import make_loader
from losses import ssim_per_image

GPU_FID_IMAGES, CPU_FID_IMAGES = 10000, 1000  # LPIPS/FID images when fid_images = 0 (auto)


@torch.no_grad()
def reconstruction_metrics(vae, dataset, cfg, device, amp=contextlib.nullcontext):
    """MSE, PSNR and SSIM of eval-mode reconstructions (decode(mu)) on up to cfg.eval_images,
    and the share of the images' pixel variance (around their mean image) that the
    reconstructions explain: 1 - MSE / that variance (0 for a decoder drawing the mean image,
    below 0 for one drawing worse)."""
    squared, ssims, variance = [], [], PixelVariance()
    for x in evaluated_batches(dataset, cfg):
        x = x.to(device)
        with amp():
            recon = vae.reconstruct(x)
        squared.append((recon - x).pow(2).flatten(1).mean(1).cpu())
        ssims.append(ssim_per_image(recon, x).cpu())
        variance.add(x)
    mse = torch.cat(squared)
    psnr = (10 * torch.log10(1 / mse.clamp(min=1e-10))).mean().item()
    return {"images": variance.count, "mse": mse.mean().item(), "psnr": psnr,
            "ssim": torch.cat(ssims).mean().item(), "pixel_variance": variance.value,
            "variance_explained": explained_share(mse.mean().item(), variance.value)}


def evaluated_batches(dataset, cfg):
    """The held-out batches reconstruction_metrics measures: the first cfg.eval_images."""
    seen = 0
    for x in make_loader(dataset, cfg, train=False):
        x = x[: cfg.eval_images - seen]
        yield x
        seen += len(x)
        if seen >= cfg.eval_images:
            return


class PixelVariance:
    """The images' pixel variance around their mean image, gathered batch by batch (float64)."""

    def __init__(self):
        self.count, self.pixel_sum, self.square_sum = 0, 0.0, 0.0

    def add(self, x):
        x = x.detach().double()
        self.count += len(x)
        self.pixel_sum = self.pixel_sum + x.sum(0).cpu()
        self.square_sum += x.pow(2).sum().item()

    @property
    def value(self):
        squares = self.pixel_sum.pow(2).sum().item() / self.count
        return (self.square_sum - squares) / (self.count * self.pixel_sum.numel())


def heldout_pixel_variance(dataset, cfg):
    """The pixel variance of the held-out images reconstruction_metrics measures."""
    variance = PixelVariance()
    for x in evaluated_batches(dataset, cfg):
        variance.add(x)
    return variance.value


def explained_share(mse, pixel_variance):
    """1 - MSE / the originals' pixel variance around their mean image; NaN without variance."""
    return 1 - mse / pixel_variance if pixel_variance > 0 else math.nan


def perceptual_image_count(cfg, device, available):
    """How many held-out images LPIPS and FID use: fid_images, or by default 10,000 on a GPU
    (FID from a few hundred samples is strongly biased upward) and 1,000 on a CPU (Inception
    on 10,000 images takes most of an hour there); never more than there are."""
    wanted = cfg.fid_images or (GPU_FID_IMAGES if device.type == "cuda" else CPU_FID_IMAGES)
    return min(wanted, available)


def perceptual_metrics(vae, dataset, cfg, device, amp=contextlib.nullcontext):
    """LPIPS and FID through torchmetrics on perceptual_image_count images, batch by batch,
    when it is installed and its weights load; else a reason. Both need weights from the
    internet on first use."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    except ImportError as err:
        return {"skipped": f"torchmetrics (with torch-fidelity) is not installed ({err.name}); "
                           "pip install torchmetrics torch-fidelity"}
    wanted, seen = perceptual_image_count(cfg, device, len(dataset)), 0
    try:
        lpips = LearnedPerceptualImagePatchSimilarity(net_type="vgg", normalize=True).to(device)
        fid = FrechetInceptionDistance(normalize=True).to(device)
        with torch.no_grad():
            for x in make_loader(dataset, cfg, train=False):
                x = x[:wanted - seen].to(device)
                with amp():
                    recon = vae.reconstruct(x).clamp(0, 1)
                lpips.update(recon, x)
                fid.update(x, real=True)
                fid.update(recon, real=False)
                seen += len(x)
                if seen >= wanted:
                    break
            return {"lpips": lpips.compute().item(), "fid": fid.compute().item(),
                    "images": seen}
    except Exception as err:  # a download refused offline, most often
        return {"skipped": f"LPIPS/FID weights could not be loaded ({type(err).__name__}: "
                           f"{str(err)[:120]})"}


def perceptual_line(perceptual):
    """LPIPS and FID with the number of images they were computed on, or why they were not."""
    if "skipped" in perceptual:
        return f"LPIPS/FID skipped: {perceptual['skipped']}"
    return (f"LPIPS {perceptual['lpips']:.4f}, FID {perceptual['fid']:.2f} "
            f"(on {perceptual['images']} held-out images)")
