"""Goal types, the barrier, violation detection and calibration."""
import math

import pytest
import torch

from configs import BOX_STEEPNESS, BOX_WALL_SCORE, GROUPS, LOG_SCORE_FLOOR, default_goals
from losses import Calibrator, barrier_loss, evaluate_goals, log_score, tighten


def score(goal, x):
    return math.exp(log_score(goal, torch.tensor(float(x))).item())


def goal(kind, **params):
    return dict(name="g", group="recon", type=kind, **params)


def test_minimize_soft_and_hard_at_chosen_points():
    soft, hard = goal("MINIMIZE_SOFT", scale=2.0), goal("MINIMIZE_HARD", scale=2.0)
    assert score(soft, 0) == 1.0
    assert score(soft, 2.0) == pytest.approx(math.exp(-1))
    assert score(soft, -3.0) == 1.0  # max(x, 0)
    assert score(hard, 2.0) == pytest.approx(0.5)
    assert score(hard, 4.0) == pytest.approx(1 / 5)


def test_minimize_soft_log_score_is_exact_far_beyond_float32_underflow():
    # exp(-200) underflows in float32, the log-score does not: -x/s exactly.
    assert log_score(goal("MINIMIZE_SOFT", scale=0.5), torch.tensor(100.0)).item() == -200.0


def test_lower_and_upper_at_the_margin():
    lower, upper = goal("LOWER", margin=1.0), goal("UPPER", margin=1.0)
    assert score(lower, 1.0) == 0.0          # at the margin: 0
    assert score(lower, 1.5) == pytest.approx(0.5)
    assert score(lower, 2.0) == 1.0 and score(lower, 50.0) == 1.0
    assert score(upper, 1.0) == 0.0
    assert score(upper, 0.5) == pytest.approx(0.5)
    assert score(upper, 0.0) == 1.0


@pytest.mark.parametrize("kind,params,peak", [
    ("BOX", dict(lower=-15.0, upper=10.0), -2.5),
    ("BOX_ASYMMETRIC", dict(lower=0.0, upper=10.0, healthy=2.0), 2.0),
])
def test_box_is_continuous_at_both_walls_and_monotone(kind, params, peak):
    g = goal(kind, **params)
    assert score(g, peak) == 1.0
    for wall in (params["lower"], params["upper"]):
        inside = wall + (1e-4 if wall < peak else -1e-4)
        outside = wall - (1e-4 if wall < peak else -1e-4)
        assert score(g, wall) == pytest.approx(BOX_WALL_SCORE)
        assert abs(score(g, inside) - score(g, outside)) < 1e-2  # no jump at the wall
        # Monotone: falls with distance from the peak on each side, inside and outside.
        xs = torch.linspace(peak, wall + 3 * (wall - peak), 400)
        values = [score(g, x) for x in xs]
        assert all(a >= b for a, b in zip(values, values[1:]))
        assert values[-1] < 1e-20  # the exponential tail


def test_box_tail_has_the_documented_steepness():
    g = goal("BOX", lower=0.0, upper=2.0)  # half-width 1
    # One half-width beyond the wall: wall score times exp(-steepness).
    assert log_score(g, torch.tensor(3.0)).item() == pytest.approx(
        math.log(BOX_WALL_SCORE) - BOX_STEEPNESS)


def two_group_goals():
    return [dict(name="a", group="recon", type="MINIMIZE_SOFT", scale=1.0),
            dict(name="b", group="recon", type="MINIMIZE_SOFT", scale=1.0)] + [
        dict(name=f"m_{g}", group=g, type="MINIMIZE_SOFT", scale=1.0) for g in GROUPS[1:]]


def measures(values):
    return {k: torch.tensor(float(v), requires_grad=True) for k, v in values.items()}


def test_barrier_is_minus_log_of_min_group_and_only_the_bottleneck_gets_gradient():
    goals = two_group_goals()
    values = {"a": 0.2, "b": 0.4, **{f"m_{g}": 0.1 * i for i, g in enumerate(GROUPS[1:])}}
    m = measures(values)
    ev = evaluate_goals(goals, m)
    group_scores = [math.exp(-(0.2 + 0.4) / 2)] + [math.exp(-0.1 * i) for i in range(6)]
    assert ev.group_scores == pytest.approx(group_scores)
    assert GROUPS[ev.bottleneck] == "health"  # exp(-0.5) < exp(-0.3)
    loss = barrier_loss(goals, ev)
    assert loss.item() == pytest.approx(-math.log(min(group_scores)))
    assert ev.barrier == pytest.approx(loss.item())
    loss.backward()
    assert m["m_health"].grad.item() == pytest.approx(1.0)
    assert all(m[k].grad is None for k in m if k != "m_health")


def test_a_zero_score_is_a_violation_and_no_loss_is_formed():
    goals = two_group_goals() + [dict(name="kl", group="latent", type="LOWER", margin=1.0)]
    m = measures({"a": 0, "b": 0, "kl": 0.5, **{f"m_{g}": 0 for g in GROUPS[1:]}})
    ev = evaluate_goals(goals, m)
    assert not ev.ok and ev.violated == ["latent"]
    assert ev.goal_scores["kl"] == 0.0 and ev.barrier == math.inf
    with pytest.raises(AssertionError):
        barrier_loss(goals, ev)


def test_nan_measure_is_a_violation():
    goals = two_group_goals()
    m = measures({"a": float("nan"), "b": 0, **{f"m_{g}": 0 for g in GROUPS[1:]}})
    ev = evaluate_goals(goals, m)
    assert not ev.ok and "a" in ev.nonfinite and "recon" in ev.violated


def test_violation_threshold_is_the_float32_floor_either_side():
    # A single-goal group with log-score just above / just below log(float32 tiny).
    goals = two_group_goals()
    for offset, expect_ok in ((-0.01, True), (0.01, False)):
        values = {"a": 0, "b": 0, **{f"m_{g}": 0 for g in GROUPS[1:]}}
        values["m_core"] = -LOG_SCORE_FLOOR + offset  # scale 1: log-score = -x
        ev = evaluate_goals(goals, measures(values))
        assert ev.ok is expect_ok, offset
    # ...and the meaning matches float32: the product underflows exactly there.
    assert torch.tensor(math.exp(LOG_SCORE_FLOOR) * 0.99, dtype=torch.float32).item() < 2.0 ** -126


def test_bf16_inputs_do_not_change_which_steps_are_rejected():
    goals = two_group_goals()
    values = {"a": 0, "b": 0, **{f"m_{g}": 0 for g in GROUPS[1:]}}
    values["m_core"] = 88.0  # float32 exp(-88) is subnormal: 'zero' for the barrier
    ev32 = evaluate_goals(goals, {k: torch.tensor(v) for k, v in values.items()})
    ev16 = evaluate_goals(goals, {k: torch.tensor(v, dtype=torch.bfloat16)
                                  for k, v in values.items()})
    assert ev32.violated == ev16.violated == ["core"]


def test_calibration_sets_auto_scales_to_the_median_with_max_and_floor_rules():
    goals = [dict(name="med", group="recon", type="MINIMIZE_SOFT", scale="auto"),
             dict(name="tiny", group="recon", type="MINIMIZE_SOFT", scale="auto"),
             dict(name="floor", group="recon", type="MINIMIZE_SOFT", scale="auto"),
             dict(name="fixed", group="recon", type="MINIMIZE_SOFT", scale=0.3),
             dict(name="box", group="latent", type="BOX", lower=0.0, upper=1.0),
             dict(name="inbox", group="latent", type="BOX", lower=0.0, upper=1.0)]
    cal = Calibrator()
    for med, tiny, floor, box in ((1.0, 1e-6, 1e-7, 0.5), (3.0, 5e-5, 2e-7, 1.5),
                                  (2.0, 2e-6, 1e-7, 0.2), (10.0, 1e-6, 1e-7, 0.3)):
        cal.record({"med": med, "tiny": tiny, "floor": floor, "fixed": 9.0, "box": box,
                    "inbox": 0.5})
    report = cal.calibrate(goals)
    scales = {g["name"]: g.get("scale") for g in goals}
    assert scales["med"] == pytest.approx(2.5)      # median of 1, 2, 3, 10
    assert scales["tiny"] == pytest.approx(1e-3)    # median < 1e-4 -> max (5e-5) -> floor
    assert scales["floor"] == pytest.approx(1e-3)
    assert scales["fixed"] == 0.3                   # fixed scales stay
    assert len(report) == 1 and "'box'" in report[0] and "1.5" in report[0]


def test_calibration_uses_the_maximum_when_the_median_is_tiny():
    goals = [dict(name="t", group="recon", type="MINIMIZE_SOFT", scale="auto")]
    cal = Calibrator()
    for v in (1e-6, 2e-6, 0.02):
        cal.record({"t": v})
    cal.calibrate(goals)
    assert goals[0]["scale"] == pytest.approx(0.02)


def test_tighten_shrinks_scales_and_half_of_that_on_box_half_widths():
    goals = [dict(name="s", group="recon", type="MINIMIZE_SOFT", scale=2.0),
             dict(name="b", group="latent", type="BOX", lower=0.0, upper=10.0),
             dict(name="a", group="latent", type="BOX_ASYMMETRIC", lower=0.0, upper=10.0,
                  healthy=2.0),
             dict(name="l", group="latent", type="LOWER", margin=1.0),
             dict(name="c", group="latent", type="AT_MOST", upper=10.0)]
    tighten(goals, 0.05)
    assert goals[0]["scale"] == pytest.approx(1.9)
    assert (goals[1]["lower"], goals[1]["upper"]) == pytest.approx((0.125, 9.875))
    assert (goals[2]["lower"], goals[2]["upper"]) == pytest.approx((2 - 2 * 0.975, 2 + 8 * 0.975))
    assert goals[3]["margin"] == 1.0
    assert goals[4]["upper"] == 10.0  # a ceiling, not a target: left as set


def test_at_most_scores_one_up_to_the_ceiling_then_falls_continuously():
    g = goal("AT_MOST", upper=10.0)
    assert [score(g, x) for x in (0.0, 2.13, 5.0, 10.0)] == [1.0] * 4  # no pull to a middle
    assert score(g, 10.0 + 1e-4) == pytest.approx(1.0, abs=1e-3)  # continuous at the wall
    beyond = [score(g, x) for x in (10.5, 11.0, 15.0, 20.0)]
    assert beyond == sorted(beyond, reverse=True) and beyond[0] < 1.0
    # The BOX tail's steepness, overshoot in units of the ceiling.
    assert log_score(g, torch.tensor(20.0)).item() == pytest.approx(-BOX_STEEPNESS)


def test_the_barrier_is_minus_log_of_the_geometric_mean_of_a_bottleneck_of_several_goals():
    """The bottleneck group has three goals of different scores and scales: the loss is
    minus the mean of their log-scores (not the sum, nor the minimum goal's)."""
    goals = [dict(name="a", group="recon", type="MINIMIZE_SOFT", scale=1.0),
             dict(name="b", group="recon", type="MINIMIZE_SOFT", scale=2.0),
             dict(name="c", group="recon", type="MINIMIZE_SOFT", scale=4.0)] + [
        dict(name=f"m_{g}", group=g, type="MINIMIZE_SOFT", scale=1.0) for g in GROUPS[1:]]
    m = measures({"a": 0.5, "b": 3.0, "c": 2.0, **{f"m_{g}": 0.1 for g in GROUPS[1:]}})
    ev = evaluate_goals(goals, m)
    logs = [-0.5, -1.5, -0.5]
    assert GROUPS[ev.bottleneck] == "recon"
    assert ev.group_scores[0] == pytest.approx(math.exp(sum(logs) / 3))
    loss = barrier_loss(goals, ev)
    assert loss.item() == pytest.approx(-sum(logs) / 3) == pytest.approx(ev.barrier)
    loss.backward()
    assert [m[k].grad.item() for k in "abc"] == pytest.approx([1 / 3, 1 / 6, 1 / 12])


def test_violation_is_decided_on_the_sum_of_a_group_s_log_scores():
    """Each goal of the group alone is far above the floor; their product underflows."""
    goals = two_group_goals()
    each = -LOG_SCORE_FLOOR * 0.6  # log-score 0.6 * floor per goal, 1.2 * floor together
    ev = evaluate_goals(goals, measures({"a": each, "b": each,
                                         **{f"m_{g}": 0 for g in GROUPS[1:]}}))
    assert ev.violated == ["recon"] and not ev.ok
    ev = evaluate_goals(goals, measures({"a": each, "b": each * 0.6,
                                         **{f"m_{g}": 0 for g in GROUPS[1:]}}))
    assert ev.ok  # 0.96 * floor together: a score of ~1e-37, tiny but a float32 number


def test_default_goal_table_covers_every_group_and_validates():
    from configs import validate_goals
    goals = default_goals()
    validate_goals(goals)
    assert [g for g in GROUPS if not any(x["group"] == g for x in goals)] == []


def test_a_dropped_group_scores_one_and_is_never_the_bottleneck():
    goals = [g for g in two_group_goals() if g["group"] != "realism"]
    m = measures({"a": 0, "b": 0, **{f"m_{g}": 3.0 for g in GROUPS[1:]}})
    ev = evaluate_goals(goals, m)  # every remaining group scores exp(-3), below realism's 1
    assert ev.group_scores[GROUPS.index("realism")] == 1.0
    assert GROUPS[ev.bottleneck] == "core" and ev.ok


def test_drop_groups_is_checked_at_start_up():
    from configs import ConfigError, parse_args
    assert parse_args(["--drop_groups", "realism,swap"]).drop_groups == "realism,swap"
    with pytest.raises(ConfigError, match="unknown group realsim"):
        parse_args(["--drop_groups", "realsim"])
    with pytest.raises(ConfigError, match="at least one group must stay"):
        parse_args(["--drop_groups", ",".join(GROUPS)])
