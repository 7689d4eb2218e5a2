"""The raw measures on inputs with a known answer."""
import contextlib

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import structural_similarity
from skimage.transform import resize

import configs
import losses
from losses import (augment, color_histogram, draw_step, edges, forward_measures, mean_color,
                    real_stats, ssim_per_image)
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
        mu, logvar = vae.posterior(x)
    kl = 0.5 * (logvar.exp() + mu ** 2 - 1 - logvar)
    c = cfg.core_dim
    # posterior() in train mode uses batch statistics: the same numbers as in the measures.
    assert m["kl_core"].item() == pytest.approx(kl[:, :c].sum(1).mean().item(), rel=1e-4)
    assert m["kl_detail_dim"].item() == pytest.approx(
        kl[:, c:].sum(1).mean().item() / cfg.detail_dim, rel=1e-4)
    var = mu.var(0)
    assert m["core_var_max"].item() == pytest.approx(var[:c].max().item(), rel=1e-4)
    assert m["detail_var_health"].item() == pytest.approx(var[c:].median().item(), rel=1e-4)
    assert m["weak"].item() == pytest.approx(
        torch.clamp(1 - var[:c] / configs.ACTIVE_VARIANCE, min=0).mean().item(), rel=1e-4)


def test_swap_targets_follow_the_batch_permutation(tiny_nets, monkeypatch):
    """With a non-identity permutation, the swapped decode's appearance is compared with
    x[perm] (whose detail it was given), its structure with x. The decoder is replaced by a
    known one: colour from the first three detail dims, a horizontal ramp scaled by the first
    core dim, so that every pairing of images shows in the numbers."""
    cfg, nets = tiny_nets
    c, size = cfg.core_dim, 32
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size)

    def decode(z):
        colour = torch.sigmoid(z[:, c:c + 3]).view(-1, 3, 1, 1)
        return (0.5 * colour + 0.3 * torch.sigmoid(z[:, :1]).view(-1, 1, 1, 1) * ramp) \
            .expand(-1, 3, size, size)
    monkeypatch.setattr(nets[0], "decode_latent", decode)
    # Smooth images: a colour (dark first half, bright second half, which the permutation
    # exchanges) plus a horizontal ramp whose slope differs from image to image.
    colours = torch.rand(8, 3, 1, 1) * 0.3 + torch.tensor([0.1] * 4 + [0.6] * 4).view(8, 1, 1, 1)
    x = (colours + torch.linspace(0, 0.3, 8).view(8, 1, 1, 1) * ramp).expand(-1, -1, size, -1)
    perm = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    torch.manual_seed(1)
    draws = draw_step(x, cfg)
    draws.perm = perm
    real = real_stats(x, nets[2], contextlib.nullcontext)
    m = forward_measures(nets, x, real, draws, contextlib.nullcontext).measures
    with torch.no_grad():
        mu, logvar = nets[0].posterior(x)  # training-mode BatchNorm: the measures' numbers
        z = mu + torch.exp(0.5 * logvar) * draws.eps
        swapped = decode(torch.cat([z[:, :c], z[:, c:][perm]], 1))

    def mse(a, b):
        return torch.nn.functional.mse_loss(a, b).item()
    expected = {"swap_appearance": mse(mean_color(swapped), mean_color(x[perm])),
                "swap_color_hist": mse(color_histogram(swapped), color_histogram(x[perm])),
                "swap_structure": mse(edges(swapped), edges(x))}
    assert {k: m[k].item() for k in expected} == pytest.approx(expected, rel=1e-4)
    # ...and the test can tell: other pairings give other numbers.
    assert mse(mean_color(swapped), mean_color(x)) != pytest.approx(
        expected["swap_appearance"], rel=0.01)
    assert mse(edges(swapped), edges(x[perm])) != pytest.approx(
        expected["swap_structure"], rel=0.01)


def _feature_realism(disc, recon, swapped, x):
    real = real_stats(x, lambda images: images, contextlib.nullcontext, disc)
    return [v.item() for v in losses.realism_measures(disc, recon, swapped, real)]


def _stages_by_hand(disc, images):
    """The discriminator's stage activations, walked layer by layer here (after each
    LeakyReLU, the last layer left out), in float64."""
    stages, h = [], images
    for layer in list(disc.net)[:-1]:
        h = layer(h)
        if isinstance(layer, torch.nn.LeakyReLU):
            stages.append(h.double())
    return stages


def _feature_realism_by_hand(disc, recon, swapped, x):
    """realism = "features" written out from its definition, not with losses: per stage, the
    reconstruction's mean squared difference from its own image's activations over the mean
    square of the image's, and the swap batch's mean activation against the real batch's
    mean, over the mean square of the latter; each averaged over the stages."""
    with torch.no_grad():
        real, rec, swp = (_stages_by_hand(disc, images) for images in (x, recon, swapped))
    recon_terms = [((r - t) ** 2).mean() / (t ** 2).mean() for r, t in zip(rec, real)]
    swap_terms = [((s.mean(0) - t.mean(0)) ** 2).mean() / (t.mean(0) ** 2).mean()
                  for s, t in zip(swp, real)]
    return sum(recon_terms).item() / len(real), sum(swap_terms).item() / len(real)


def test_feature_realism_is_its_definition_computed_by_hand(tiny_nets):
    _, (_, disc, _) = tiny_nets
    torch.manual_seed(3)
    x, recon, swapped = (torch.rand(6, 3, 32, 32) for _ in range(3))
    recon = 0.7 * x + 0.3 * recon          # near its image, but not equal
    got = _feature_realism(disc, recon, swapped, x)
    expected = _feature_realism_by_hand(disc, recon, swapped, x)
    assert len(_stages_by_hand(disc, x)) == 4
    assert got == pytest.approx(list(expected), rel=1e-4)
    assert min(expected) > 0


def test_feature_realism_is_zero_exactly_where_the_discriminator_sees_no_difference(tiny_nets):
    """realism = "features": a reconstruction is compared with its own image in the
    discriminator's stages, a swap by the batch means of its stages. A faithful reconstruction
    scores 0, a constant image (the mean image, for every input) does not; a swap batch that is
    the real batch in another order has the real batch's means and scores 0."""
    _, (_, disc, _) = tiny_nets
    torch.manual_seed(2)
    x = torch.rand(8, 3, 32, 32)
    mean_image = x.mean(0, keepdim=True).expand_as(x)
    shuffled = x[torch.tensor([3, 0, 6, 1, 7, 2, 5, 4])]
    faithful_recon, shuffled_swap = _feature_realism(disc, x, shuffled, x)
    assert faithful_recon == pytest.approx(0, abs=1e-6)
    assert shuffled_swap == pytest.approx(0, abs=1e-6)
    constant_recon, constant_swap = _feature_realism(disc, mean_image, mean_image, x)
    assert constant_recon > 0.01 and constant_swap > 0
    # A shuffled reconstruction has the right batch statistics but the wrong pairs: penalised.
    assert _feature_realism(disc, shuffled, x, x)[0] > 0.01
    # The original design's score does not tell these apart at all: it never looks at x.
    score = [v.item() for v in losses.realism_measures(disc, mean_image, mean_image,
                                               real_stats(x, lambda i: i,
                                                          contextlib.nullcontext))]
    assert score[0] == pytest.approx(score[1], abs=1e-6)


def test_feature_realism_is_what_the_step_measures(tiny_nets):
    """forward_measures takes realism from the discriminator's features when the real batch's
    stats carry them (train.py passes the discriminator when realism = "features")."""
    cfg, nets = tiny_nets
    x = torch.rand(8, 3, 32, 32)
    torch.manual_seed(1)
    draws = draw_step(x, cfg)
    real = real_stats(x, nets[2], contextlib.nullcontext, nets[1])
    fwd = forward_measures(nets, x, real, draws, contextlib.nullcontext)
    expected = _feature_realism_by_hand(nets[1], fwd.recon.detach(), fwd.recon.detach(), x)[0]
    assert fwd.measures["realism_recon"].item() == pytest.approx(expected, rel=1e-4)
    spec = measures_for(cfg, nets, x)["realism_recon"].item()
    assert spec != pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("realism", ["features", "score"])
def test_the_trainer_measures_realism_as_configured(realism):
    import train
    cfg = configs.parse_args(["--preset", "tiny", "--realism", realism])
    trainer = train.Trainer(cfg, torch.device("cpu"))
    _, real, fwd = trainer._forward(torch.rand(8, 3, 32, 32))
    assert (real.disc_features is not None) == (realism == "features")
    if realism == "features":
        assert len(real.disc_features) == 4  # the discriminator's four stages
    else:  # the original design's 1 - mean sigmoid: inside (0, 1)
        assert 0 < fwd.measures["realism_recon"].item() < 1
