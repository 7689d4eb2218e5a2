"""The networks: shapes, initialisation, the VAE's named methods and load_vae, frozen perceptual
features, VGG loading."""
import urllib.error

import pytest
import torch
import torchvision

import configs
import models
from configs import UserError


def test_full_size_shapes_and_quiet_posterior_at_init():
    cfg = configs.Config()
    vae, disc = models.VAE(cfg), models.Discriminator(cfg.disc_channels)
    x = torch.rand(2, 3, 64, 64)
    mu, logvar = vae.posterior(x)
    assert mu.shape == logvar.shape == (2, 128)
    assert torch.equal(mu, torch.zeros_like(mu))            # mu head all zeros
    assert torch.allclose(logvar, torch.full_like(logvar, -5.0))  # sigma ~ 0.08
    core, detail = vae.encode(x)
    assert core.shape == (2, 16) and detail.shape == (2, 112)
    assert vae.decode(torch.randn(5, 16), torch.randn(5, 112)).shape == (5, 3, 64, 64)
    assert disc(x).shape == (2, 1, 4, 4)                    # a 4x4 map of logits


def test_load_vae_gives_the_trained_vae_ready_to_use(trained_checkpoint):
    trained, path = trained_checkpoint
    vae = models.load_vae(path)
    assert not vae.training and next(vae.parameters()).device.type == "cpu"
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        core, detail = vae.encode(x)
        assert torch.equal(core, trained.posterior(x).mu[:, :4])
        assert torch.equal(detail, trained.posterior(x).mu[:, 4:])
        assert torch.equal(vae.decode(core, detail), trained.reconstruct(x))
        images = vae.decode(core, detail)
        assert images.shape == x.shape and 0 <= images.min() and images.max() <= 1
        # A swap is one image's core drawn with the other's detail, in either order.
        swapped = vae.swap(x[:2], x[2:])
        assert torch.allclose(swapped, vae.decode(core[:2], detail[2:]), atol=1e-6)
        assert not torch.allclose(swapped, vae.swap(x[2:], x[:2]))
        assert not torch.allclose(swapped, images[:2])
        # Samples come from the prior: reproducible with a generator, different without.
        samples = vae.sample(6, generator=torch.Generator().manual_seed(1))
        assert samples.shape == (6, 3, 32, 32)
        assert torch.equal(samples, vae.sample(6, generator=torch.Generator().manual_seed(1)))
        assert not torch.equal(samples, vae.sample(6))


def test_load_vae_names_a_file_that_is_no_checkpoint(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=f"checkpoint {bad} cannot be read"):
        models.load_vae(bad)


def test_decoder_accepts_any_latent_and_outputs_images_in_unit_range():
    cfg = configs.parse_args(["--preset", "tiny"])
    vae = models.VAE(cfg).eval()
    z = torch.cat([torch.randn(3, cfg.core_dim) * 40, torch.zeros(3, cfg.detail_dim)], 1)
    out = vae.decode(*vae.split(z))
    assert out.shape == (3, 3, 32, 32) and out.min() >= 0 and out.max() <= 1


def test_residual_block_is_the_identity_at_init_for_nonnegative_input():
    block = models.ResidualBlock(4).eval()
    x = torch.rand(2, 4, 8, 8)  # LeakyReLU leaves non-negative values unchanged
    assert torch.allclose(block(x), x)


def test_encoder_limits_mu_and_logvar():
    cfg = configs.parse_args(["--preset", "tiny"])
    vae = models.VAE(cfg)
    with torch.no_grad():
        vae.encoder.mu.bias.fill_(1e3)
        vae.encoder.logvar.bias.fill_(-1e3)
    mu, logvar = vae.posterior(torch.rand(2, 3, 32, 32))
    assert mu.max() == models.MU_LIMIT and logvar.min() == models.LOGVAR_LIMITS[0]


def test_perceptual_features_are_frozen_and_clamp_their_input():
    p = models.PerceptualFeatures(pretrained=False)
    p.train()
    assert not p.training and not any(q.requires_grad for q in p.parameters())
    x = torch.rand(1, 3, 32, 32)
    x[x > 0.8] = 1.0
    assert torch.equal(p(x), p(x + 5 * (x == 1.0)))  # values above 1 are clamped
    assert "UNTRAINED" in p.description


def test_random_features_are_the_same_in_every_run_and_leave_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    a = models.PerceptualFeatures(pretrained=False)
    assert torch.rand(1) == expected
    b = models.PerceptualFeatures(pretrained=False)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_vgg16_weights_from_a_local_file(tmp_path):
    state = torchvision.models.vgg16(weights=None).state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    p = models.PerceptualFeatures(pretrained=True, weights_path=str(path))
    assert torch.equal(p.net[14].weight, state["features.14.weight"])  # conv3_3
    assert p(torch.rand(1, 3, 64, 64)).shape == (1, 256, 16, 16)
    assert "ImageNet" in p.description


def test_unreadable_or_foreign_weights_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="vgg_weights = .*bad.pth.*vgg16-397923af.pth"):
        models.PerceptualFeatures(pretrained=True, weights_path=str(bad))
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    with pytest.raises(UserError, match="holds no VGG16 'features.\\*' weights"):
        models.PerceptualFeatures(pretrained=True, weights_path=str(foreign))


def test_no_internet_gives_the_way_out(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__,
                        "get_state_dict", offline, raising=False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError) as err:
        models.PerceptualFeatures(pretrained=True)
    message = str(err.value)
    assert "--vgg_weights PATH" in message and "--perceptual random" in message
    assert "vgg16-397923af.pth" in message  # the file to fetch by hand
