"""The controls for what the min adds: the same goals and groups, scalarised otherwise.
smooth_max (smooth Tchebycheff) moves from LBO's min to the sum with its temperature; the
multipliers (GECO-style) weigh each group by 1 + a multiplier that grows while it is violated."""
import math

import pytest
import torch

import configs
from configs import GROUPS
from control import GroupMultipliers
from losses import (GoalEvaluation, barrier_loss, group_losses, group_sum_loss,
                    smooth_max_loss, weighted_group_loss)

GOALS = [{"name": n, "group": g} for n, g in (("a", "recon"), ("b", "recon"), ("c", "core"),
                                              ("d", "swap"), ("e", "latent"))]


def hand_made(parameters):
    """An evaluation whose goals' log-scores are made of `parameters`, with its bottleneck."""
    p = parameters
    log_scores = {"a": -(p[0] ** 2) - 0.2, "b": -p[1].abs() - 0.1, "c": -(p[0] * p[1]) ** 2 - 0.9,
                  "d": -torch.exp(p[2]) - 0.3, "e": -(p[2] - p[0]) ** 2 - 0.4}
    sums, sizes = [], []
    for group in GROUPS:
        names = [g["name"] for g in GOALS if g["group"] == group]
        sizes.append(len(names))
        sums.append(sum(log_scores[n].item() for n in names) if names else 0.0)
    scores = [math.exp(s / n) if n else 1.0 for s, n in zip(sums, sizes)]
    bottleneck = min((i for i, n in enumerate(sizes) if n), key=lambda i: scores[i])
    return GoalEvaluation(log_scores, {}, sums, sizes, scores, {}, [], [], bottleneck)


def gradient(loss_of):
    p = torch.tensor([0.7, -0.4, 0.3], requires_grad=True)
    loss_of(hand_made(p)).backward()
    return p.grad


def test_smooth_max_gives_the_min_s_gradient_at_a_small_temperature():
    assert torch.allclose(gradient(lambda e: smooth_max_loss(GOALS, e, 1e-3)),
                          gradient(lambda e: barrier_loss(GOALS, e)), atol=1e-6)


def test_smooth_max_takes_the_sum_s_direction_at_a_large_temperature():
    smooth = gradient(lambda e: smooth_max_loss(GOALS, e, 1e4))
    summed = gradient(lambda e: group_sum_loss(GOALS, e))
    assert torch.nn.functional.cosine_similarity(smooth, summed, 0) > 1 - 1e-6
    # and not the min's: the two differ in direction
    assert torch.nn.functional.cosine_similarity(
        summed, gradient(lambda e: barrier_loss(GOALS, e)), 0) < 0.99


def test_zero_multipliers_are_the_sum_and_a_grown_one_pulls_its_group_harder():
    zero = gradient(lambda e: weighted_group_loss(GOALS, e, [0.0] * len(GROUPS)))
    assert torch.allclose(zero, gradient(lambda e: group_sum_loss(GOALS, e)), atol=1e-7)
    core = GROUPS.index("core")
    heavy = [100.0 if i == core else 0.0 for i in range(len(GROUPS))]
    alone = gradient(lambda e: group_losses(GOALS, e)[1][core])
    weighted = gradient(lambda e: weighted_group_loss(GOALS, e, heavy))
    cos = torch.nn.functional.cosine_similarity
    assert cos(weighted, alone, 0) > cos(zero, alone, 0)


def scores_over_steps(target, steps=50):
    """The multipliers after `steps` accepted steps on which recon scores 0.1, core 0.9, swap
    0.3 and the rest 0.5, under multiplier_target = target (health dropped)."""
    cfg = configs.parse_args(["--objective", "multipliers", "--multiplier_target", str(target),
                              "--drop_groups", "health"])
    multipliers = GroupMultipliers(cfg)
    scores = {"recon": 0.1, "core": 0.9, "swap": 0.3}
    sizes = [0 if g == "health" else 1 for g in GROUPS]
    history = []
    for _ in range(steps):
        multipliers.update([scores.get(g, 0.5) for g in GROUPS], sizes)
        history.append(list(multipliers.values))
    return multipliers, history


def test_a_multiplier_rises_on_a_violated_group_and_stays_at_zero_on_a_satisfied_one():
    multipliers, history = scores_over_steps(0.5)
    recon, core, latent, health = (GROUPS.index(g) for g in ("recon", "core", "latent",
                                                              "health"))
    assert all(b[recon] > a[recon] > 0 for a, b in zip(history, history[1:]))  # rises
    assert all(step[core] == 0.0 for step in history)  # satisfied: the sum's weight alone
    assert history[-1][latent] == pytest.approx(0.0)  # exactly at the target: stays
    assert history[-1][health] == 0.0  # a dropped group has no constraint
    restored = GroupMultipliers(configs.parse_args(["--objective", "multipliers"]))
    restored.load_state_dict(multipliers.state_dict())
    assert restored.values == multipliers.values and restored.average == multipliers.average


def test_a_group_that_was_violated_falls_back_to_zero_once_satisfied():
    cfg = configs.parse_args(["--objective", "multipliers"])
    multipliers, recon = GroupMultipliers(cfg), GROUPS.index("recon")
    sizes = [1] * len(GROUPS)
    for score in [0.1] * 20 + [0.99] * 2000:
        multipliers.update([score] + [0.5] * (len(GROUPS) - 1), sizes)
        if score == 0.1:
            peak = multipliers.values[recon]
    assert peak > 0 and multipliers.values[recon] == 0.0


def test_the_target_decides_which_groups_are_weighed_up():
    """Every group shares the target, so a form in which it is a common factor of every
    multiplier (a normalised loss, or Adam, cancels it) would train alike at any target.
    Here swap (score 0.3) is violated at target 0.5 and satisfied at target 0.2."""
    swap = GROUPS.index("swap")
    strict, _ = scores_over_steps(0.5)
    lenient, _ = scores_over_steps(0.2)
    assert strict.values[swap] > 0 and lenient.values[swap] == 0.0


@pytest.mark.parametrize("objective", ["smooth_max", "multipliers"])
def test_each_control_trains_through_the_guard_and_the_tightener(tmp_path, objective):
    import json
    import train
    out = tmp_path / objective
    assert train.main(["--preset", "tiny", "--epochs", "2", "--objective", objective,
                       "--output_dir", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["objective"] for r in records] == [objective] * 2
    assert records[-1]["accepted"] > 0
    if objective == "multipliers":
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        assert state["multipliers"]["values"] != [0.0] * len(GROUPS)  # they moved
        # metrics.jsonl says, epoch by epoch, each group's multiplier as the epoch ended.
        assert list(records[-1]["multipliers"].values()) == state["multipliers"]["values"]
        assert list(records[-1]["multipliers"]) == list(GROUPS)
    else:
        assert "multipliers" not in records[-1]
