"""The LBO step is exactly the specified one: the update of autograd on the full
-log(min over groups), the discriminator taught by accepted batches only, the look-ahead a
repeat of the step's own computation, and epoch numbers that count what the optimizer did."""
import contextlib
import copy
import dataclasses
import math

import pytest
import torch

import train
from configs import GROUPS
from conftest import differing, snapshot, violate_evaluations
from losses import draw_step, evaluate_goals, forward_measures, real_stats

X = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(7))
SEED = 11


def group_means(goals, evaluation):
    return [torch.stack([evaluation.log_scores[g["name"]] for g in goals
                         if g["group"] == group]).mean() for group in GROUPS]


def force_bottleneck(trainer, group):
    """Shrink the MINIMIZE_SOFT scales of `group` until it is the minimum group by a margin
    of 1 in mean log-score, its goals' product still far from the float32 floor."""
    torch.manual_seed(SEED)
    draws = draw_step(X, trainer.cfg)
    real = real_stats(X, trainer.perceptual, contextlib.nullcontext)
    with torch.no_grad():
        measures = forward_measures(trainer.nets, X, real, draws, contextlib.nullcontext,
                                    update_stats=False).measures
        means = [m.item() for m in group_means(trainer.goals,
                                               evaluate_goals(trainer.goals, measures))]
    index = GROUPS.index(group)
    members = [g for g in trainer.goals if g["group"] == group]
    soft = [g for g in members if g["type"] == "MINIMIZE_SOFT"]
    soft_sum = sum(-measures[g["name"]].item() / g["scale"] for g in soft)
    assert soft_sum < 0, f"{group}: no soft goal with a positive measure to tighten"
    target = min(m for i, m in enumerate(means) if i != index) - 1.0
    assert len(members) * target > -80  # stays clear of the violation floor
    factor = soft_sum / (len(members) * target - (len(members) * means[index] - soft_sum))
    for goal in soft:
        goal["scale"] *= factor


def full_loss_step(trainer):
    """The reference: autograd on -log(min_g S_g) over every group, then AdamW."""
    torch.manual_seed(SEED)
    _, _, fwd = trainer._forward(X)
    evaluation = evaluate_goals(trainer.goals, fwd.measures)
    assert evaluation.ok
    loss = -torch.stack(group_means(trainer.goals, evaluation)).min()
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    trainer.opt.step()
    return evaluation


def twin(trainer):
    other = train.Trainer(trainer.cfg, trainer.device)
    other.load_state_dict(copy.deepcopy(trainer.state_dict(2)))
    other.goals = copy.deepcopy(trainer.goals)
    return other


@pytest.mark.parametrize("group", GROUPS)
def test_our_step_makes_the_update_of_autograd_on_the_full_loss(calibrated, monkeypatch,
                                                                 group):
    calibrated.lbo_batches = 2  # the next step is odd: no discriminator update in either
    force_bottleneck(calibrated, group)
    reference = twin(calibrated)
    expected = full_loss_step(reference)
    assert GROUPS[expected.bottleneck] == group
    violate_evaluations(monkeypatch.setattr, (), others_pass=True)  # the look-ahead accepts
    torch.manual_seed(SEED)
    stats = train.EpochStats()
    ours = calibrated.lbo_step(X, stats, "here", print)
    assert stats.accepted == 1 and GROUPS[ours.bottleneck] == group
    # Parameters, BatchNorm buffers, the discriminator and every AdamW tensor, bit for bit:
    # a parameter outside the bottleneck's graph still takes AdamW's step on a zero gradient.
    assert differing(snapshot(calibrated), snapshot(reference)) == []
    steps = {s["step"].item() for s in calibrated.opt.state.values()}
    assert len(steps) == 1  # every parameter stepped alike


@pytest.mark.parametrize("clip", [0.0, 1e-3])
def test_lbo_grad_clip_caps_the_gradient_norm_the_optimizer_steps_on(calibrated, monkeypatch,
                                                                     clip):
    calibrated.cfg = dataclasses.replace(calibrated.cfg, lbo_grad_clip=clip)
    calibrated.lbo_batches = 2
    norms, plain_step = [], calibrated.opt.step

    def step(*args, **kwargs):
        norms.append(torch.norm(torch.stack(
            [p.grad.norm() for p in calibrated.vae.parameters()])).item())
        return plain_step(*args, **kwargs)
    monkeypatch.setattr(calibrated.opt, "step", step)
    violate_evaluations(monkeypatch.setattr, (), others_pass=True)
    calibrated.lbo_step(X, train.EpochStats(), "here", print)
    if clip:
        assert norms == [pytest.approx(clip, rel=1e-3)]
    else:
        assert len(norms) == 1 and norms[0] > 100 * 1e-3  # the clip above does cut it


def nan_reconstruction_on(monkeypatch, calls):
    """forward_measures calls numbered in `calls` return a NaN reconstruction (and MSE)."""
    real, count = train.forward_measures, [0]

    def patched(*args, **kwargs):
        count[0] += 1
        fwd = real(*args, **kwargs)
        if count[0] in calls:
            fwd.recon = torch.full_like(fwd.recon, math.nan)
            fwd.measures["mse"] = fwd.measures["mse"] * math.nan
        return fwd
    monkeypatch.setattr(train, "forward_measures", patched)


def test_the_discriminator_learns_from_accepted_batches_only(calibrated, monkeypatch):
    """Batch 2 (a discriminator batch) has a NaN reconstruction and is rejected; batch 4 is
    rolled back by its look-ahead. Neither may reach the discriminator: its only update is
    on batch 6, and it stays finite."""
    trainer, disc_before = calibrated, snapshot(calibrated)
    nan_reconstruction_on(monkeypatch, {3})  # forwards: 1, 2 (look-ahead), 3 = batch 2
    # Evaluations: 1-2 batch 1 (step, look-ahead), 3 batch 2, 4-5 batch 3, 6-7 batch 4.
    violate_evaluations(monkeypatch.setattr, {7})
    trainer.log = lambda line: None
    batches = [torch.rand(8, 3, 32, 32) for _ in range(6)]
    record = trainer.train_epoch(batches, 2, train.EpochStats(), 0, train.InterruptRequest())
    assert (record["accepted"], record["rejected"], record["rollbacks"]) == (4, 1, 1)
    disc_after = snapshot(trainer)
    assert all(torch.isfinite(v).all() for k, v in disc_after.items() if k.startswith("disc."))
    assert [k for k in differing(disc_before, disc_after) if k.startswith("disc.")]
    # One update (batch 6), not three (2, 4, 6): Adam's step count says how many.
    assert [s["step"].item() for s in trainer.opt_disc.state.values()][0] == 1


def test_epoch_numbers_count_accepted_steps_and_refusals_apart(calibrated, monkeypatch):
    """A NaN measure on a refused batch must not make the epoch's SSIM or MSE NaN, nor may a
    refused batch's bottleneck count as a group that got gradient."""
    trainer = calibrated
    trainer.log = lambda line: None
    nan_reconstruction_on(monkeypatch, {1})  # batch 1: rejected, its bottleneck recon (NaN)
    batches = [torch.rand(8, 3, 32, 32) for _ in range(3)]
    record = trainer.train_epoch(batches, 2, train.EpochStats(), 0, train.InterruptRequest())
    assert (record["steps"], record["accepted"], record["rejected"]) == (3, 2, 1)
    assert math.isfinite(record["mse"]) and math.isfinite(record["ssim"])
    assert sum(record["refused_bottleneck"].values()) == 1
    assert sum(record["bottleneck"].values()) == pytest.approx(1.0)  # shares of 2 steps
    assert record["goal_scores"] and all(0 <= v <= 1 for v in record["goal_scores"].values())
    assert record["min_group"] == pytest.approx(min(record["groups"].values()), abs=0.5)


def test_at_lr_zero_the_lookahead_evaluation_equals_the_step_evaluation(calibrated,
                                                                       monkeypatch):
    """The look-ahead is the step's own computation again (training-mode forward, the same
    draws, BatchNorm statistics untouched): with no change to the weights, bit for bit."""
    trainer = calibrated
    for group in trainer.opt.param_groups:
        group["lr"], group["weight_decay"] = 0.0, 0.0
    real, seen = train.evaluate_goals, []

    def recording(goals, measures):
        seen.append({k: v.detach().clone() for k, v in measures.items()})
        return real(goals, measures)
    monkeypatch.setattr(train, "evaluate_goals", recording)
    stats = train.EpochStats()
    trainer.lbo_step(X, stats, "here", print)
    assert stats.accepted == 1
    step, ahead = seen
    assert [k for k in step if not torch.equal(step[k], ahead[k])] == []
