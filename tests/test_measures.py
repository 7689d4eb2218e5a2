"""The raw measures of SPEC §5 on inputs with a known answer."""
import contextlib

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import structural_similarity
from skimage.transform import resize

import configs
from losses import (augment, color_histogram, draw_step, edges, forward_measures, real_stats,
                    ssim_per_image)
from models import build_models


def test_edges_are_zero_on_flat_images_and_peak_on_a_step():
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert edges(flat).max() < 1e-5
    step = torch.zeros(1, 3, 16, 16)
    step[..., 8:] = 1.0
    e = edges(step)[0, 0]
    assert e[:, 7:9].min() > 1.0 and e[:, :6].max() < 1e-5 and e[:, 10:].max() < 1e-5


def test_color_histogram_is_normalised_and_peaks_at_the_colour():
    img = torch.zeros(1, 3, 8, 8)
    img[:, 0], img[:, 1], img[:, 2] = 0.03, 0.5, 0.97
    h = color_histogram(img)[0]
    assert torch.allclose(h.sum(-1), torch.ones(3))
    assert h.argmax(-1).tolist() == [0, 7, 15] or h.argmax(-1).tolist() == [0, 8, 15]


def skimage_photos():
    for image in (skdata.astronaut(), skdata.coffee(), skdata.chelsea()):
        small = resize(image, (64, 64), anti_aliasing=True).astype(np.float32)
        yield torch.from_numpy(small).permute(2, 0, 1).unsqueeze(0)


def test_ssim_matches_skimage_on_real_photographs():
    torch.manual_seed(0)
    for img in skimage_photos():
        for noisy in (img, (img + 0.1 * torch.randn_like(img)).clamp(0, 1), img.flip(3)):
            ours = ssim_per_image(noisy, img).item()
            theirs = structural_similarity(
                img[0].permute(1, 2, 0).numpy(), noisy[0].permute(1, 2, 0).numpy(),
                channel_axis=2, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, data_range=1.0)
            assert ours == pytest.approx(theirs, abs=1e-3)


def test_augmentation_is_drawn_per_image():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16).repeat(64, 1, 1, 1)
    out = augment(x)
    flipped = [torch.allclose(o.flip(2), x[0], atol=0.3) and not torch.allclose(o, x[0], atol=0.3)
               for o in out]
    assert 10 < sum(flipped) < 54  # about half the images are flipped, not all or none
    means = out.mean((1, 2, 3))
    assert means.std() > 0.01  # brightness/contrast differ from image to image
    assert out.min() >= 0 and out.max() <= 1


@pytest.fixture
def tiny_nets():
    cfg = configs.parse_args(["--preset", "tiny"])
    torch.manual_seed(0)
    vae, disc, perceptual = build_models(cfg, torch.device("cpu"))
    disc.requires_grad_(False).eval()
    with torch.no_grad():  # an expressive encoder, not the collapsed one of the init
        vae.encoder.mu.weight.normal_(0, 0.5)
    return cfg, (vae, disc, perceptual)


def measures_for(cfg, nets, x, **draw_edits):
    torch.manual_seed(1)
    draws = draw_step(x, cfg)
    for name, value in draw_edits.items():
        setattr(draws, name, value(draws))
    real = real_stats(x, nets[2], contextlib.nullcontext)
    return forward_measures(nets, x, real, draws, contextlib.nullcontext).measures


def test_every_goal_has_its_measure_and_all_are_finite(tiny_nets):
    cfg, nets = tiny_nets
    m = measures_for(cfg, nets, torch.rand(8, 3, 32, 32))
    assert {g["name"] for g in configs.default_goals()} <= set(m)
    assert {"mse", "ssim", "traversal_core_structure", "traversal_detail_appearance"} <= set(m)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in m.values())


def test_zero_noise_means_zero_leak_and_identity_swap_means_reconstruction(tiny_nets):
    cfg, nets = tiny_nets
    x = torch.rand(8, 3, 32, 32)
    m = measures_for(cfg, nets, x, core_noise=lambda d: torch.zeros_like(d.core_noise),
                     detail_noise=lambda d: torch.zeros_like(d.detail_noise),
                     perm=lambda d: torch.arange(8))
    assert m["core_color_leak"].item() == pytest.approx(0, abs=1e-12)
    assert m["detail_edge_leak"].item() == pytest.approx(0, abs=1e-12)
    assert m["swap_structure"].item() == pytest.approx(m["edge"].item(), rel=1e-5)
    assert m["realism_swap"].item() == pytest.approx(m["realism_recon"].item(), rel=1e-5)


def test_latent_statistics(tiny_nets):
    cfg, nets = tiny_nets
    x = torch.rand(8, 3, 32, 32)
    m = measures_for(cfg, nets, x)
    vae = nets[0]
    with torch.no_grad():
        mu, logvar = vae.encode(x)
    kl = 0.5 * (logvar.exp() + mu ** 2 - 1 - logvar)
    c = cfg.core_dim
    # encode() in train mode uses batch statistics: the same numbers as in the measures.
    assert m["kl_core"].item() == pytest.approx(kl[:, :c].sum(1).mean().item(), rel=1e-4)
    assert m["kl_detail_dim"].item() == pytest.approx(
        kl[:, c:].sum(1).mean().item() / cfg.detail_dim, rel=1e-4)
    var = mu.var(0)
    assert m["core_var_max"].item() == pytest.approx(var[:c].max().item(), rel=1e-4)
    assert m["detail_var_health"].item() == pytest.approx(var[c:].median().item(), rel=1e-4)
    assert m["weak"].item() == pytest.approx(
        torch.clamp(1 - var[:c] / configs.ACTIVE_VARIANCE, min=0).mean().item(), rel=1e-4)
