"""Experiment (a screen, not a switch): LBO on the larger built-in shapes, with the decoder's
weights trained by the reconstruction rows of the joint decode alone. The other four decodes
(core only, swap, core perturbed, detail perturbed) come from the same decoder with its
weights detached, so their goals train the encoder through the latents but never the decoder.
The forward values are the same as the ordinary joint decode (the same weights and the same
batch statistics); only where their gradients go changes.
Hypothesis: goals on decodes whose target the decoder cannot know exactly reward a blur, and
the blur erases the shape's kind. Run from the repository root:
    PYTHONPATH=. python bench/results/long_runs/<this folder>/experiment.py ARGS  (train.py's)
With --weights_fixed core_only,swap only the named decodes reach the decoder detached (the
names: core_only, swap, core_perturbed, detail_perturbed; default: all four)."""
import sys

import torch

import models
import train
from imagesets import SyntheticShapes

SyntheticShapes.RADIUS, SyntheticShapes.CENTRE = (0.15, 0.10), (0.39, 0.22)
DECODES = ["reconstruction", "core_only", "swap", "core_perturbed", "detail_perturbed"]
JOINT_DECODES = len(DECODES)
args = sys.argv[1:]
FIXED = DECODES[1:]
if "--weights_fixed" in args:
    at = args.index("--weights_fixed")
    FIXED = args[at + 1].split(",")
    del args[at:at + 2]
    assert set(FIXED) <= set(DECODES[1:]), f"--weights_fixed: choose from {DECODES[1:]}"


def decode(self, z):
    if not (self.training and torch.is_grad_enabled() and len(z) % JOINT_DECODES == 0
            and getattr(self, "_in_joint_decode", False)):
        return self.decoder(z)
    full = self.decoder(z)
    detached = {name: p.detach() for name, p in self.decoder.named_parameters()}
    with models.frozen_batchnorm_stats(self.decoder):
        weights_fixed = torch.func.functional_call(self.decoder, detached, (z,))
    parts = zip(DECODES, full.chunk(JOINT_DECODES), weights_fixed.chunk(JOINT_DECODES))
    return torch.cat([fixed if name in FIXED else trained for name, trained, fixed in parts])


forward = models.VAE.forward


def joint_forward(self, x, augmented, *args):
    self._in_joint_decode = augmented is not None
    try:
        return forward(self, x, augmented, *args)
    finally:
        self._in_joint_decode = False


models.VAE.decode, models.VAE.forward = decode, joint_forward
train.main(args)
