"""Experiment (a screen, not a switch): LBO on the larger built-in shapes, with the decoder's
weights trained by the reconstruction rows of the joint decode alone. The other four decodes
(core only, swap, core perturbed, detail perturbed) come from the same decoder with its
weights detached, so their goals train the encoder through the latents but never the decoder.
The forward values are the same as the ordinary joint decode (the same weights and the same
batch statistics); only where their gradients go changes.
Hypothesis: goals on decodes whose target the decoder cannot know exactly reward a blur, and
the blur erases the shape's kind. Run from the repository root:
    PYTHONPATH=. python bench/results/long_runs/<this folder>/experiment.py ARGS  (train.py's)"""
import sys

import torch

import models
import train
from imagesets import SyntheticShapes

SyntheticShapes.RADIUS, SyntheticShapes.CENTRE = (0.15, 0.10), (0.39, 0.22)
JOINT_DECODES = 5


def decode(self, z):
    if not (self.training and torch.is_grad_enabled() and len(z) % JOINT_DECODES == 0
            and getattr(self, "_in_joint_decode", False)):
        return self.decoder(z)
    full = self.decoder(z)
    detached = {name: p.detach() for name, p in self.decoder.named_parameters()}
    with models.frozen_batchnorm_stats(self.decoder):
        weights_fixed = torch.func.functional_call(self.decoder, detached, (z,))
    rows = len(z) // JOINT_DECODES
    return torch.cat([full[:rows], weights_fixed[rows:]])


forward = models.VAE.forward


def joint_forward(self, x, augmented, *args):
    self._in_joint_decode = augmented is not None
    try:
        return forward(self, x, augmented, *args)
    finally:
        self._in_joint_decode = False


models.VAE.decode, models.VAE.forward = decode, joint_forward
train.main(sys.argv[1:])
