"""The rollback guard (bit-exact restore) and the adaptive tightener, in isolation."""
import copy

import pytest
import torch

import configs
from control import RollbackGuard, Tightener
from models import VAE


def state_of(model, optimizer):
    tensors = {f"p.{k}": v.detach().clone() for k, v in model.named_parameters()}
    tensors.update({f"b.{k}": v.detach().clone() for k, v in model.named_buffers()})
    for i, state in enumerate(optimizer.state.values()):
        tensors.update({f"o.{i}.{k}": v.clone() for k, v in state.items() if torch.is_tensor(v)})
    return tensors


def train_step(model, optimizer, x):
    """A forward in training mode (moves BatchNorm running stats) and an AdamW step."""
    mu, logvar, _, recon = model.elbo_forward(x, torch.randn(len(x), model.latent_dim))
    optimizer.zero_grad(set_to_none=True)
    ((recon - x) ** 2).mean().add(mu.pow(2).mean()).backward()
    optimizer.step()


@pytest.fixture
def model_and_optimizer(tiny_cfg):
    torch.manual_seed(0)
    model = VAE(tiny_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-2, weight_decay=1e-5)
    return model, optimizer


def test_restore_after_a_rejected_step_is_bit_identical(model_and_optimizer):
    model, optimizer = model_and_optimizer
    guard = RollbackGuard(model, optimizer)
    x = torch.rand(8, 3, 32, 32)
    train_step(model, optimizer, x)  # optimizer state exists
    before = state_of(model, optimizer)
    guard.snapshot()
    train_step(model, optimizer, torch.rand(8, 3, 32, 32))
    changed = state_of(model, optimizer)
    assert any(not torch.equal(before[k], changed[k]) for k in before)
    guard.restore()
    after = state_of(model, optimizer)
    assert before.keys() == after.keys()
    bn = [k for k in before if "running_mean" in k or "num_batches_tracked" in k]
    assert bn and any(k.startswith("o.") for k in before)
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_restore_of_the_very_first_step_clears_the_optimizer_state(model_and_optimizer):
    model, optimizer = model_and_optimizer
    guard = RollbackGuard(model, optimizer)
    before = state_of(model, optimizer)
    guard.snapshot()
    train_step(model, optimizer, torch.rand(8, 3, 32, 32))
    guard.restore()
    assert len(optimizer.state) == 0
    after = state_of(model, optimizer)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_an_accepted_step_keeps_its_changes(model_and_optimizer):
    model, optimizer = model_and_optimizer
    guard = RollbackGuard(model, optimizer)
    before = state_of(model, optimizer)
    guard.snapshot()
    train_step(model, optimizer, torch.rand(8, 3, 32, 32))
    after = state_of(model, optimizer)
    differing = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("p.") for k in differing)
    assert any("running_var" in k for k in differing)


def test_the_guard_reuses_its_snapshot_buffers(model_and_optimizer):
    model, optimizer = model_and_optimizer
    guard = RollbackGuard(model, optimizer)
    x = torch.rand(8, 3, 32, 32)
    guard.snapshot()
    train_step(model, optimizer, x)
    guard.snapshot()  # optimizer state now exists: allocated here, once
    pointers = [t.data_ptr() for t in guard._saved]
    for _ in range(3):
        train_step(model, optimizer, x)
        guard.snapshot()
        guard.restore()
    assert [t.data_ptr() for t in guard._saved] == pointers


def tightener(**overrides):
    cfg = configs.parse_args([f"--{k}={v}" for k, v in overrides.items()])
    return Tightener(cfg)


def soft_and_box():
    return [dict(name="s", group="recon", type="MINIMIZE_SOFT", scale=1.0),
            dict(name="b", group="latent", type="BOX", lower=0.0, upper=2.0)]


def run_script(t, rates, goals):
    return [t.end_epoch(epoch, rate, goals) for epoch, rate in enumerate(rates, 1)]


def test_no_change_before_the_start_epoch():
    goals = soft_and_box()
    decisions = run_script(tightener(tighten_start_epoch=5), [0.0] * 4, goals)
    assert goals == soft_and_box()
    assert all(text.startswith("warm-up") and not stop for text, stop in decisions)


def test_tightens_by_rate_while_below_target():
    goals = soft_and_box()
    run_script(tightener(tighten_start_epoch=5), [0.0] * 6, goals)  # epochs 5 and 6 tighten
    assert goals[0]["scale"] == pytest.approx(0.95 ** 2)
    half_width = (goals[1]["upper"] - goals[1]["lower"]) / 2
    assert half_width == pytest.approx(0.975 ** 2)
    assert (goals[1]["lower"] + goals[1]["upper"]) / 2 == pytest.approx(1.0)


def test_stops_exactly_one_epoch_after_the_rate_first_reaches_target():
    goals = soft_and_box()
    t = tightener(tighten_start_epoch=1)
    decisions = run_script(t, [0.01, 0.02, 0.05, 0.0, 0.0], goals)
    stops = [stop for _, stop in decisions]
    assert stops == [False, False, False, True, True]
    assert decisions[2][0].startswith("hold") and t.hit_epoch == 3
    assert goals[0]["scale"] == pytest.approx(0.95 ** 2)  # no tightening at or after the hit


def test_backoff_restores_the_previous_table_and_uses_a_gentler_rate():
    goals = soft_and_box()
    t = tightener(tighten_start_epoch=1)
    t.end_epoch(1, 0.0, goals)                  # tighten: scale 0.95
    table_after_first = copy.deepcopy(goals)
    t.end_epoch(2, 0.0, goals)                  # tighten: scale 0.9025
    decision, stop = t.end_epoch(3, 0.6, goals)  # > 50 %: undo epoch 2's tightening
    assert decision.startswith("backoff") and not stop
    assert goals == table_after_first
    assert t.rate == pytest.approx(0.025)
    t.end_epoch(4, 0.0, goals)                  # gentler tightening
    assert goals[0]["scale"] == pytest.approx(0.95 * 0.975)
    assert t.hit_epoch is None


def test_tightener_state_round_trips():
    goals = soft_and_box()
    t = tightener(tighten_start_epoch=1)
    run_script(t, [0.0, 0.6, 0.07], goals)
    clone = tightener(tighten_start_epoch=1)
    clone.load_state_dict(t.state_dict())
    assert clone.state_dict() == t.state_dict()
    assert clone.end_epoch(4, 0.0, copy.deepcopy(goals)) == t.end_epoch(4, 0.0, goals)
