"""Probe: the VAE's gradient norm on each LBO step, the group whose barrier gave it, and
Adam's second moment after the step (root mean of exp_avg_sq), on the larger shapes. Stops
after PROBE_STEPS LBO steps and prints one line a step. Run from the repository root:
    PYTHONPATH=. python bench/results/consistency_units/grad_probe.py ARGS   (train.py's)"""
import os
import sys

import torch

import losses
import train
from imagesets import SyntheticShapes

SyntheticShapes.RADIUS, SyntheticShapes.CENTRE = (0.15, 0.10), (0.39, 0.22)
STEPS = int(os.environ.get("PROBE_STEPS", "64"))
steps = []  # one dict an LBO step: group, then grad and adam_v once the VAE's step ran
plain_barrier, plain_step = train.barrier_loss, torch.optim.AdamW.step


def barrier(goals, evaluation):
    steps.append({"group": losses.GROUPS[evaluation.bottleneck]})
    return plain_barrier(goals, evaluation)


def step(self, *args, **kwargs):
    params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
    pending = steps and "grad" not in steps[-1]  # the first step after a barrier: the VAE's
    grad = torch.norm(torch.stack([p.grad.norm() for p in params])).item() if pending else 0
    result = plain_step(self, *args, **kwargs)
    if pending:
        v = torch.cat([self.state[p]["exp_avg_sq"].flatten() for p in params])
        steps[-1].update(grad=grad, adam_v=v.mean().sqrt().item())
        print(f"step {len(steps):3d}  {steps[-1]['group']:<12} grad {grad:10.4f}  "
              f"sqrt(mean v) {steps[-1]['adam_v']:.5f}", flush=True)
        if len(steps) >= STEPS:
            sys.exit(0)
    return result


train.barrier_loss, torch.optim.AdamW.step = barrier, step
train.main(sys.argv[1:])
