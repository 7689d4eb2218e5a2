"""The networks of BOM VAE v15: the core/detail VAE, the PatchGAN discriminator and
the frozen perceptual feature extractor. Widths come from the config so tests run a tiny model."""
import contextlib
from typing import NamedTuple

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from configs import UserError

MU_LIMIT = 50.0          # numerical safety inside the encoder, not a goal
LOGVAR_LIMITS = (-10.0, 10.0)
LOGVAR_INIT_BIAS = -5.0  # sigma ~ 0.08 at start: a tight, quiet posterior


def _lrelu():
    return nn.LeakyReLU(0.2, inplace=True)


class ResidualBlock(nn.Module):
    """conv3x3-BN-LReLU-conv3x3-BN, added to the input; the last BN starts at zero so the
    block is the identity at initialisation."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            _lrelu(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )
        nn.init.zeros_(self.body[-1].weight)
        self.act = _lrelu()

    def forward(self, x):
        return self.act(x + self.body(x))


class Encoder(nn.Module):
    """Four stride-2 stages, then linear heads for mu and log sigma^2. The mu head starts at
    zero and log sigma^2 at LOGVAR_INIT_BIAS: every image starts at the same quiet posterior."""

    def __init__(self, channels, latent_dim, image_size):
        super().__init__()
        layers, in_ch = [], 3
        for out_ch in channels:
            layers += [nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(out_ch), _lrelu(), ResidualBlock(out_ch)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = in_ch * (image_size // 16) ** 2
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)
        nn.init.zeros_(self.mu.weight)
        nn.init.zeros_(self.mu.bias)
        nn.init.zeros_(self.logvar.weight)
        nn.init.constant_(self.logvar.bias, LOGVAR_INIT_BIAS)

    def forward(self, x):
        h = self.features(x)
        mu = self.mu(h).clamp(-MU_LIMIT, MU_LIMIT)
        logvar = self.logvar(h).clamp(*LOGVAR_LIMITS)
        return mu, logvar


class Decoder(nn.Module):
    def __init__(self, channels, latent_dim, image_size, top_channels):
        super().__init__()
        self.top_channels, self.base = top_channels, image_size // 16
        self.fc = nn.Linear(latent_dim, top_channels * self.base ** 2)
        layers, in_ch = [ResidualBlock(top_channels)], top_channels
        for i, out_ch in enumerate(channels):
            if i:
                layers.append(ResidualBlock(in_ch))
            # Sub-pixel upsampling: conv to 4x channels, then PixelShuffle(2).
            layers += [nn.Conv2d(in_ch, out_ch * 4, 3, padding=1), nn.PixelShuffle(2),
                       nn.BatchNorm2d(out_ch), _lrelu()]
            in_ch = out_ch
        layers += [nn.Conv2d(in_ch, 3, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        h = self.fc(z).view(-1, self.top_channels, self.base, self.base)
        return self.net(h)


class ModulatedDecoder(nn.Module):
    """The asymmetric decoder (decoder = "asymmetric"): core alone is made into the first
    spatial map and upsampled; detail only scales and shifts each upsampling stage's channels
    (FiLM), the same at every position, so it has no path to say where things are: the
    structure/appearance asymmetry of the Swapping Autoencoder (Park et al. 2020)."""

    def __init__(self, channels, core_dim, detail_dim, image_size, top_channels):
        super().__init__()
        self.core_dim, self.top_channels, self.base = core_dim, top_channels, image_size // 16
        self.fc = nn.Linear(core_dim, top_channels * self.base ** 2)
        self.stages, self.films, in_ch = nn.ModuleList(), nn.ModuleList(), top_channels
        for out_ch in channels:
            self.stages.append(nn.Sequential(ResidualBlock(in_ch),
                                             nn.Conv2d(in_ch, out_ch * 4, 3, padding=1),
                                             nn.PixelShuffle(2), nn.BatchNorm2d(out_ch)))
            film = nn.Linear(detail_dim, 2 * out_ch)
            # Zero at the start: the decoder begins as core's alone, detail learns to modulate.
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
            self.films.append(film)
            in_ch = out_ch
        self.act = _lrelu()
        self.out = nn.Sequential(nn.Conv2d(in_ch, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, z):
        core, detail = z[:, :self.core_dim], z[:, self.core_dim:]
        h = self.fc(core).view(-1, self.top_channels, self.base, self.base)
        for stage, film in zip(self.stages, self.films):
            scale, shift = film(detail)[:, :, None, None].chunk(2, 1)
            h = self.act(stage(h) * (1 + scale) + shift)
        return self.out(h)


class Posterior(NamedTuple):
    """q(z | x) over the whole latent (core dims first), in float32."""
    mu: torch.Tensor
    logvar: torch.Tensor


class Codes(NamedTuple):
    """An image's code: the core (structure) and detail (appearance) means."""
    core: torch.Tensor
    detail: torch.Tensor


class ElboForward(NamedTuple):
    """What a beta-VAE step needs (VAE.elbo_forward)."""
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    recon: torch.Tensor


class LBOForward(NamedTuple):
    """What an LBO step needs (VAE.lbo_forward): x's posterior and sampled z, core's mean on
    the consistency goals' images, and the five decodes of z."""
    mu: torch.Tensor
    logvar: torch.Tensor
    mu_augmented: torch.Tensor
    z: torch.Tensor
    recon: torch.Tensor            # D(z)
    core_only: torch.Tensor        # D(z_core, 0)
    swap: torch.Tensor             # D(z_core, z_detail of the permuted batch)
    core_perturbed: torch.Tensor   # D(z_core + noise, z_detail)
    detail_perturbed: torch.Tensor  # D(z_core, z_detail + noise)


class VAE(nn.Module):
    """The core/detail VAE. For use after training (models.load_vae):

        core, detail = vae.encode(x)      # the posterior means, split
        images = vae.decode(core, detail)  # in [0, 1]
        swapped = vae.swap(x_structure, x_appearance)
        samples = vae.sample(16)
    """

    def __init__(self, cfg):
        super().__init__()
        self.core_dim, self.latent_dim = cfg.core_dim, cfg.latent_dim
        self.encoder = Encoder(cfg.enc_channels, cfg.latent_dim, cfg.image_size)
        if cfg.decoder == "asymmetric":
            self.decoder = ModulatedDecoder(cfg.dec_channels, cfg.core_dim, cfg.detail_dim,
                                            cfg.image_size, cfg.enc_channels[-1])
        else:
            self.decoder = Decoder(cfg.dec_channels, cfg.latent_dim, cfg.image_size,
                                   cfg.enc_channels[-1])

    def split(self, z):
        return Codes(z[:, :self.core_dim], z[:, self.core_dim:])

    def posterior(self, x):
        return Posterior(*(t.float() for t in self.encoder(x)))

    def encode(self, x):
        """(core, detail): the posterior means of x's two codes."""
        return self.split(self.posterior(x).mu)

    def decode_latent(self, z):
        """Images in [0, 1] from whole latents (core dims first)."""
        return self.decoder(z).float()

    def decode(self, core, detail):
        return self.decode_latent(torch.cat([core, detail], 1))

    def reconstruct(self, x):
        """decode(mu): the deterministic reconstruction used for evaluation and pictures."""
        return self.decode_latent(self.posterior(x).mu)

    def swap(self, x_structure, x_appearance):
        """The structure (core) of the first images drawn with the appearance (detail) of the
        second."""
        return self.decode(self.encode(x_structure).core, self.encode(x_appearance).detail)

    def sample(self, n, generator=None):
        """n images decoded from the prior N(0, I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self.decode_latent(z)

    @staticmethod
    def reparameterize(mu, logvar, eps):
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, step, *inputs):
        """The unit DistributedDataParallel wraps, which must be the module's forward:
        `step` names the method, "lbo" (lbo_forward) or "elbo" (elbo_forward)."""
        return {"lbo": self.lbo_forward, "elbo": self.elbo_forward}[step](*inputs)

    def elbo_forward(self, x, eps):
        mu, logvar = self.posterior(x)
        z = self.reparameterize(mu, logvar, eps)
        return ElboForward(mu, logvar, z, self.decode_latent(z))

    def lbo_forward(self, x, draws):
        """Everything an LBO step needs from the VAE, in one call. `draws` (losses.StepDraws)
        holds the step's noise eps, swap permutation perm, the perturbations core_noise and
        detail_noise, and the consistency goals' images `augmented`.

        The five latents are decoded in ONE decoder call: in training mode BatchNorm
        normalises with batch statistics, and separate calls would give D(z) and D(z + noise)
        different normalisations, a spurious 'leak' even at zero noise. The pass on
        `augmented` leaves the running statistics alone, so they describe real images."""
        mu, logvar = self.posterior(x)
        with frozen_batchnorm_stats(self):
            mu_augmented = self.posterior(draws.augmented).mu
        z = self.reparameterize(mu, logvar, draws.eps)
        core, detail = self.split(z)
        latents = torch.cat([
            z,
            torch.cat([core, torch.zeros_like(detail)], 1),
            torch.cat([core, detail[draws.perm]], 1),
            torch.cat([core + draws.core_noise, detail], 1),
            torch.cat([core, detail + draws.detail_noise], 1),
        ])
        decodes = self.decode_latent(latents).chunk(5)
        return LBOForward(mu, logvar, mu_augmented, z, *decodes)


@contextlib.contextmanager
def frozen_batchnorm_stats(module):
    """Batch statistics as in training, but running statistics left untouched.

    Used for the encoder's pass on augmented images (so the running statistics describe real
    images) and for the guard's look-ahead, which must never change a buffer."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.track_running_stats for m in norms]
    for m in norms:
        # With track_running_stats off, a training-mode BN normalises with batch statistics
        # and passes no running buffers to the kernel, so nothing is updated.
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, flag in zip(norms, saved):
            m.track_running_stats = flag


class Discriminator(nn.Module):
    """PatchGAN: a 4x4 map of real/fake logits per 64x64 image."""

    def __init__(self, channels):
        super().__init__()
        layers, in_ch = [], 3
        for i, out_ch in enumerate(channels):
            layers.append(spectral_norm(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1)))
            if i:
                layers.append(nn.InstanceNorm2d(out_ch, affine=True))
            layers.append(_lrelu())
            in_ch = out_ch
        layers.append(spectral_norm(nn.Conv2d(in_ch, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)

    def features(self, x):
        """The activations of its four downsampling stages (after each LeakyReLU): what the
        discriminator sees of an image before it decides real or reconstructed."""
        stages = []
        for layer in self.net[:-1]:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                stages.append(x)
        return stages


# VGG16 `features` indices: relu3_3 is the output of layer 15 (inclusive).
VGG16_RELU3_3 = 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_trunk(width_divisor=1):
    """VGG16's layers up to relu3_3 (widths optionally divided, for the untrained option)."""
    layers, in_ch = [], 3
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256):
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            out_ch = item // width_divisor
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = out_ch
    return nn.Sequential(*layers)


class PerceptualFeatures(nn.Module):
    """Frozen VGG16 up to relu3_3 on clamped, ImageNet-normalised input.

    `pretrained=False` builds the same layout at a quarter of the width with fixed random
    weights: no download, cheap on a CPU, but NOT ImageNet features — runs using it say so."""

    def __init__(self, pretrained=True, weights_path=""):
        super().__init__()
        self.pretrained = pretrained
        if pretrained:
            self.net = vgg16_trunk()
            self.net.load_state_dict(_load_vgg16_trunk_weights(weights_path))
        else:
            # The same random features in every run, without touching the global RNG; He
            # initialisation keeps feature magnitudes (and so the perceptual measure) at the
            # scale of real VGG features instead of shrinking layer by layer.
            with torch.random.fork_rng(devices=[]):
                self.net = vgg16_trunk(width_divisor=4)
            generator = torch.Generator().manual_seed(1234)
            for layer in self.net:
                if isinstance(layer, nn.Conv2d):
                    fan_in = layer.in_channels * 9
                    with torch.no_grad():
                        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator)
                                           * (2 / fan_in) ** 0.5)
                        layer.bias.zero_()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        return super().train(False)  # frozen: always in eval mode

    def forward(self, x):
        return self.net((x.clamp(0, 1) - self.mean) / self.std)

    @property
    def description(self):
        return "VGG16 relu3_3 (ImageNet)" if self.pretrained else \
            "UNTRAINED random VGG-style features (no ImageNet weights): perceptual goal is a proxy"


_VGG16_FILE = "vgg16-397923af.pth"


def _load_vgg16_trunk_weights(weights_path):
    """The first layers of torchvision's VGG16 ImageNet weights, from a local file or the
    torchvision download (cached in ~/.cache/torch/hub)."""
    if weights_path:
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as err:  # missing file, not a torch file, unsafe pickle...
            raise UserError(f"vgg_weights = {weights_path!r}: cannot read it as a VGG16 "
                            f"state dict ({type(err).__name__}); pass the file "
                            f"{_VGG16_FILE} from torchvision") from None
    else:
        from torchvision.models import VGG16_Weights
        try:
            state = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as err:  # URLError, HTTPError, socket errors: all mean "no weights"
            raise UserError(
                "cannot download the VGG16 ImageNet weights for the perceptual goal "
                f"({type(err).__name__}: {err}). Either download "
                f"{VGG16_Weights.IMAGENET1K_V1.url} on a machine with internet and pass "
                "--vgg_weights PATH, or run with --perceptual random (untrained features, "
                "stated in the log)") from None
    prefix = "features."
    trunk = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)
             and int(k.split(".")[1]) < VGG16_RELU3_3}
    if len(trunk) != 2 * 7:  # weight and bias of the seven convolutions up to relu3_3
        raise UserError(f"vgg_weights = {weights_path!r} holds no VGG16 'features.*' weights; "
                        f"pass the file {_VGG16_FILE} from torchvision")
    return trunk


def compile_networks(vae, disc, perceptual):
    """torch.compile the networks in place. nn.Module.compile keeps parameter names, so
    checkpoints do not change. The encoder and decoder are compiled rather than VAE.forward,
    whose frozen-statistics pass flips module flags mid-call. The rollback guard restores
    parameters and buffers in place, so compiled code keeps reading the same tensors and a
    rollback causes no recompilation. A new batch size (evaluation's last batch) does."""
    for net in (vae.encoder, vae.decoder, disc, perceptual):
        net.compile()


def vae_from_checkpoint(state):
    """The VAE a checkpoint's contents (checkpoint.read_checkpoint) hold, on the CPU."""
    from configs import from_dict
    vae = VAE(from_dict(state["config"]))
    vae.load_state_dict(state["vae"])
    return vae


def load_vae(path, device="cpu"):
    """The trained VAE of a train.py checkpoint (OUTPUT_DIR/checkpoint.pt), in eval mode on
    `device`: its settings come from the checkpoint, so no config is needed."""
    import checkpoint  # only loading needs it
    return vae_from_checkpoint(checkpoint.read_checkpoint(path)).to(device).eval()


def build_models(cfg, device):
    vae = VAE(cfg).to(device)
    disc = Discriminator(cfg.disc_channels).to(device)
    perceptual = PerceptualFeatures(cfg.perceptual == "vgg16", cfg.vgg_weights).to(device)
    return vae, disc, perceptual
