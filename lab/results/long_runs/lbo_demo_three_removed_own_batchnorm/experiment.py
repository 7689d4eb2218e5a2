"""Experiment: LBO with the reconstructions decoded in their own decoder call (their own
BatchNorm batch statistics, and the only ones the running statistics see); the core-only,
swapped and perturbed latents decoded together in a second call that leaves the running
statistics alone. Otherwise models.VAE.forward unchanged. Run from the repository root:
PYTHONPATH=. python experiment.py ARGS (train.py's arguments)."""
import sys

import torch

import models
import train


def forward(self, x, augmented, eps, perm, core_noise, detail_noise):
    mu, logvar = (t.float() for t in self.encode(x))
    if augmented is None:
        z = self.reparameterize(mu, logvar, eps)
        return mu, logvar, z, self.decode(z).float()
    with models.frozen_batchnorm_stats(self):
        mu_aug = self.encode(augmented)[0].float()
    z = self.reparameterize(mu, logvar, eps)
    z_core, z_detail = self.split(z)
    others = torch.cat([
        torch.cat([z_core, torch.zeros_like(z_detail)], 1),
        torch.cat([z_core, z_detail[perm]], 1),
        torch.cat([z_core + core_noise, z_detail], 1),
        torch.cat([z_core, z_detail + detail_noise], 1),
    ])
    recon = self.decode(z).float()
    with models.frozen_batchnorm_stats(self.decoder):
        decoded_others = self.decode(others).float()
    return mu, logvar, mu_aug, z, torch.cat([recon, decoded_others]), None


models.VAE.forward = forward
train.main(sys.argv[1:])
