"""guard_check = next-batch: the next batch's forward checks an update instead of a look-ahead."""
import copy
import dataclasses
import json
import signal
import weakref

import pytest
import torch

import train
from configs import GROUPS
from conftest import differing, snapshot, violate_evaluations

BATCHES = [torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(i))
           for i in range(4)]


def twin(trainer, mode):
    """A trainer in `mode` with `trainer`'s state."""
    other = train.Trainer(dataclasses.replace(trainer.cfg, guard_check=mode), trainer.device)
    other.load_state_dict(copy.deepcopy(trainer.state_dict(2)))
    other.goals = copy.deepcopy(trainer.goals)
    return other


def take_steps(trainer, batches, first_seed=1, log=lambda line: None):
    stats = train.EpochStats()
    for i, x in enumerate(batches, first_seed):
        torch.manual_seed(i)
        trainer.lbo_step(x, stats, f"step {i}", log)
    return stats


def count_forwards(monkeypatch):
    real, calls = train.forward_measures, [0]

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)
    monkeypatch.setattr(train, "forward_measures", counted)
    return calls


def test_when_every_check_passes_both_modes_make_the_same_updates_and_next_batch_saves_the_forwards(
        calibrated, monkeypatch):
    violate_evaluations(monkeypatch.setattr, (), others_pass=True)
    forwards = count_forwards(monkeypatch)
    fast = twin(calibrated, "next-batch")
    lookahead_stats = take_steps(calibrated, BATCHES)
    lookahead_forwards, forwards[0] = forwards[0], 0
    fast_stats = take_steps(fast, BATCHES)
    assert fast.pending is not None and fast_stats.accepted == 3  # the last is unchecked
    fast.settle_pending(fast_stats, lambda line: None)
    assert fast.pending is None
    assert differing(snapshot(calibrated), snapshot(fast)) == []
    assert (lookahead_stats.accepted, fast_stats.accepted) == (4, 4)
    # One forward per batch plus a look-ahead per step, against one per batch plus the one
    # look-ahead of settle_pending.
    assert (lookahead_forwards, forwards[0]) == (8, 5)


def test_a_failed_check_rolls_the_update_back_and_retakes_the_checking_batch(
        calibrated, monkeypatch):
    """Step 1's update fails its check on batch 2: the state is then as if batch 1 had been
    refused and batch 2 taken from the start (look-ahead mode from the same state)."""
    fast = twin(calibrated, "next-batch")
    violate_evaluations(monkeypatch.setattr, (), others_pass=True)
    take_steps(calibrated, BATCHES[1:2], first_seed=2)
    # Batch 2's forward, the check of step 1's update:
    violate_evaluations(monkeypatch.setattr, {2}, others_pass=True)
    lines = []
    stats = take_steps(fast, BATCHES[:2], log=lines.append)
    # Step 2's update is pending: counted once its check decides it.
    assert (stats.rollbacks, stats.rejected, stats.evaluated) == (1, 0, 1)
    assert len(lines) == 1
    assert lines[0].startswith("[ROLLBACK] step 1 (checked on step 2): violated recon")
    assert fast.pending.where == "step 2"
    assert differing(snapshot(calibrated), snapshot(fast)) == []


def test_the_checking_batch_is_rejected_when_it_fails_again_after_the_rollback(
        calibrated, monkeypatch):
    start = snapshot(calibrated)
    fast = twin(calibrated, "next-batch")
    # The check, then the re-forward:
    violate_evaluations(monkeypatch.setattr, {2, 3}, others_pass=True)
    stats = take_steps(fast, BATCHES[:2])
    assert (stats.accepted, stats.rollbacks, stats.rejected) == (0, 1, 1)
    assert fast.pending is None
    assert differing(start, snapshot(fast)) == []


def test_the_two_snapshot_slots_are_allocated_once(calibrated, monkeypatch):
    fast = twin(calibrated, "next-batch")
    violate_evaluations(monkeypatch.setattr, (), others_pass=True)
    take_steps(fast, BATCHES[:2])
    buffers = [list(guard._saved) for guard in fast.guards]
    # The check on step 4 fails, and so does step 4's re-forward (a rollback, then a
    # rejection); the check on step 8 fails (a rollback).
    violate_evaluations(monkeypatch.setattr, {2, 3, 7}, others_pass=True)
    stats = take_steps(fast, BATCHES * 2, first_seed=3)
    assert (stats.rollbacks, stats.rejected) == (2, 1)
    for guard, before in zip(fast.guards, buffers):
        assert all(now is then for now, then in zip(guard._saved, before, strict=True))
    take_steps(calibrated, BATCHES)
    assert calibrated.guards[1]._saved is None  # look-ahead mode needs one slot only


def test_the_failed_forward_is_freed_before_the_batch_is_retaken(calibrated, monkeypatch):
    """Its autograd graph beside the re-forward's would double a rollback step's memory."""
    fast = twin(calibrated, "next-batch")
    violate_evaluations(monkeypatch.setattr, {2}, others_pass=True)
    real, recons, alive = train.forward_measures, [], []

    def tracked(*args, **kwargs):
        alive.append([ref() is not None for ref in recons])
        result = real(*args, **kwargs)
        recons.append(weakref.ref(result.recon))
        return result
    monkeypatch.setattr(train, "forward_measures", tracked)
    take_steps(fast, BATCHES[:2])
    assert len(alive) == 3  # step 1, step 2 (the failed check), step 2 again
    assert alive[2] == [False, False]


@pytest.mark.parametrize("interrupt_at", [None, 6])  # the end of training; mid-epoch 2
def test_every_step_is_decided_before_an_epoch_ends_or_a_checkpoint_is_written(
        tmp_path, monkeypatch, capsys, interrupt_at):
    out = tmp_path / "run"
    if interrupt_at:
        real, count = train.Trainer.lbo_step, [0]

        def step(self, *args, **kwargs):
            count[0] += 1
            if count[0] == interrupt_at:
                signal.raise_signal(signal.SIGINT)
            return real(self, *args, **kwargs)
        monkeypatch.setattr(train.Trainer, "lbo_step", step)
    code = train.main(["--preset", "tiny", "--epochs", "2", "--guard_check", "next-batch",
                       "--output_dir", str(out)])
    assert code == (128 + signal.SIGINT if interrupt_at else 0)
    assert "(channels-last, guard checks on the next batch)" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    if interrupt_at:
        saved = torch.load(out / "checkpoint.pt", weights_only=True)
        records = [saved["epoch_stats"]]
        assert saved["next_batch"] > 0  # mid-epoch
    for r in records:
        decided = r["accepted"] + r["rollbacks"] + r["rejected"]
        assert decided == r.get("steps", r.get("evaluated")) > 0


def recorded_realism(monkeypatch):
    """The realism measures of every goal evaluation, in order."""
    real, seen = train.evaluate_goals, []

    def recording(goals, measures):
        seen.append((measures["realism_recon"].item(), measures["realism_swap"].item()))
        return real(goals, measures)
    monkeypatch.setattr(train, "evaluate_goals", recording)
    return seen


def test_the_end_of_epoch_check_measures_realism_through_one_discriminator(calibrated,
                                                                           monkeypatch):
    """The discriminator learns on step 2's acceptance (disc_every 2). In next-batch mode that
    happens after step 3's forward took the real batch's features, and step 3 is checked at
    the epoch's end: that check must take them anew, and then measures exactly what the
    look-ahead's check of step 3 measures (same weights, same discriminator, same draws)."""
    assert calibrated.cfg.disc_every == 2
    violate_evaluations(monkeypatch.setattr, (), others_pass=True)
    seen = recorded_realism(monkeypatch)
    fast = twin(calibrated, "next-batch")
    take_steps(calibrated, BATCHES[:3])
    lookahead_check = seen[-1]
    stats = take_steps(fast, BATCHES[:3])
    fast.settle_pending(stats, lambda line: None)
    assert differing(snapshot(calibrated), snapshot(fast)) == []
    assert seen[-1] == pytest.approx(lookahead_check, rel=1e-5)


@pytest.mark.parametrize("group, counted", [("realism", 1), ("recon", 0)])
def test_realism_refusals_right_after_a_discriminator_update_are_counted_apart(
        calibrated, monkeypatch, group, counted):
    """Evaluations: step 1 (1, 2), step 2 (3, 4: accepted, the discriminator learns), step 3
    (5: the first since that update), step 4 (6). `group` is made to fail at 5 and 6: both
    are refusals; only 5, and only for realism, is counted apart."""
    violate_evaluations(monkeypatch.setattr, {5, 6}, others_pass=True, group=group)
    stats = take_steps(calibrated, BATCHES)
    assert (stats.accepted, stats.rejected) == (2, 2)
    assert stats.refused_after_disc_update == counted
    record = dict(stats.record(1, calibrated.cfg.core_dim), seconds=0, lr=1e-3,
                  decision="hold", objective="lbo")
    assert record["refused_after_disc_update"] == counted
    line = "of them 1 for realism alone, right after a discriminator update"
    assert (line in train.format_summary(record, 1)) == bool(counted)


@pytest.mark.parametrize("objective, warned", [("lbo", True), ("sum", False),
                                                ("smooth_max", False), ("multipliers", False)])
def test_only_under_the_min_is_a_group_never_the_bottleneck_a_group_without_gradient(
        calibrated, objective, warned):
    """An epoch whose accepted steps all had latent as the bottleneck: under LBO recon, core
    and swap got no gradient, and the summary says so; under a control every group got some,
    and it must not."""
    stats = take_steps(calibrated, BATCHES[:2])
    record = dict(stats.record(1, calibrated.cfg.core_dim), seconds=0, lr=1e-3,
                  decision="hold", objective=objective)
    record["bottleneck"] = {g: float(g == "latent") for g in GROUPS}
    assert record["accepted"] and record["steps"]
    summary = train.format_summary(record, 1)
    assert ("reconstruction got no gradient this epoch" in summary) == warned
    assert ("<- never bottleneck" in summary) == warned


def graph_tensors(evaluation):
    return [name for name, value in vars(evaluation).items() if torch.is_tensor(value)
            and value.grad_fn is not None] + \
        [name for name, value in evaluation.log_scores.items() if value.grad_fn is not None]


@pytest.mark.parametrize("mode", ["look-ahead", "next-batch"])
def test_no_graph_outlives_its_step_refused_or_taken(calibrated, monkeypatch, mode):
    """What lbo_step hands back for the logs (and what a pending update keeps) holds no
    autograd graph: a refused step's whole graph, kept until the next step had built its own,
    doubled the activation memory on every step after a [REJECTED]."""
    trainer = twin(calibrated, mode)
    violate_evaluations(monkeypatch.setattr, {1}, others_pass=True)  # step 1 rejected
    real, recons = train.forward_measures, []

    def tracked(*args, **kwargs):
        result = real(*args, **kwargs)
        recons.append(weakref.ref(result.recon))
        return result
    monkeypatch.setattr(train, "forward_measures", tracked)
    stats = train.EpochStats()
    rejected = trainer.lbo_step(BATCHES[0], stats, "step 1", lambda line: None)
    assert stats.rejected == 1 and graph_tensors(rejected) == []
    assert recons[0]() is None  # its graph (which held the reconstruction) is gone
    taken = trainer.lbo_step(BATCHES[1], stats, "step 2", lambda line: None)
    assert graph_tensors(taken) == []
    if mode == "next-batch":
        assert graph_tensors(trainer.pending.evaluation) == []
