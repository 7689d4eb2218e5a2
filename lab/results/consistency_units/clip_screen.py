"""Screen: the LBO steps' VAE gradient clipped to norm CLIP (5: above every recon step's norm
in grad_probe.py's first 64 steps, 0.4-4.3, below the health step's 169), on the larger
shapes. A screen, not a switch: train.zero_fill_missing_grads, which every LBO step calls
between backward and the optimizer, is wrapped. Run from the repository root:
    PYTHONPATH=. python bench/results/consistency_units/clip_screen.py ARGS   (train.py's)"""
import sys

import torch

import train
from imagesets import SyntheticShapes

SyntheticShapes.RADIUS, SyntheticShapes.CENTRE = (0.15, 0.10), (0.39, 0.22)
CLIP = 5.0
plain_fill = train.zero_fill_missing_grads


def fill_and_clip(module):
    plain_fill(module)
    torch.nn.utils.clip_grad_norm_(module.parameters(), CLIP)


train.zero_fill_missing_grads = fill_and_clip
train.main(sys.argv[1:])
