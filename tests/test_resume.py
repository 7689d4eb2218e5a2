"""Nothing lost: exact resume, interrupts, refused checkpoints."""
import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

import configs
import train


def run(out, *extra, guard_check="look-ahead"):
    return train.main(["--preset", "tiny", "--epochs", "3", "--guard_check", guard_check,
                       "--output_dir", str(out), *extra])


def final_state(out):
    state = torch.load(Path(out) / "checkpoint.pt", weights_only=True)
    records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("seconds")
    return state, records


def assert_same_tensors(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b or (a != a and b != b), where  # NaN == NaN here


def interrupt_after(monkeypatch, lbo_steps):
    """Deliver SIGINT to ourselves during the given LBO step (as Ctrl-C would)."""
    real, count = train.Trainer.lbo_step, [0]

    def step(self, *args, **kwargs):
        count[0] += 1
        if count[0] == lbo_steps:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(train.Trainer, "lbo_step", step)


# Epoch 1 has 4 LBO steps: its end, and mid-epoch 2. With the next-batch check, the update
# pending at the interrupt is checked by the look-ahead before the checkpoint, where the
# straight run checks it on the next batch; here both checks accept it, so the runs must agree.
# The last cases: every split switch on (configs.py), the sum objective among them; and the
# multipliers objective, whose multipliers the checkpoint holds.
SPLIT_SWITCHES = ("--objective", "sum", "--decoder", "asymmetric", "--consistency", "split")


@pytest.mark.parametrize("lbo_steps, guard_check, switches",
                         [(4, "look-ahead", ()), (9, "look-ahead", ()), (9, "next-batch", ()),
                          (9, "look-ahead", SPLIT_SWITCHES),
                          (9, "look-ahead", ("--objective", "multipliers"))])
def test_an_interrupted_run_resumes_to_the_same_parameters_and_metrics(
        tmp_path, monkeypatch, capsys, lbo_steps, guard_check, switches):
    torch.use_deterministic_algorithms(True)

    def run_(out, *extra):
        return run(out, *switches, *extra, guard_check=guard_check)
    try:
        assert run_(tmp_path / "straight") == 0
        interrupt_after(monkeypatch, lbo_steps)
        assert run_(tmp_path / "resumed") == 128 + signal.SIGINT
        err = capsys.readouterr().err
        assert "checkpoint saved" in err and "--resume" in err
        monkeypatch.undo()
        saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
        assert (saved["next_epoch"], saved["next_batch"]) == \
            ((2, 0) if lbo_steps == 4 else (2, 5))
        assert run_(tmp_path / "resumed", "--resume") == 0
        assert "resuming from" in capsys.readouterr().out
    finally:
        torch.use_deterministic_algorithms(False)
    straight, straight_records = final_state(tmp_path / "straight")
    resumed, resumed_records = final_state(tmp_path / "resumed")
    assert_same_tensors(straight_records, resumed_records)
    for key in ("vae", "disc", "opt_vae", "opt_disc", "goals", "tightener", "schedulers",
                "calibration_rows", "lbo_batches", "multipliers"):
        assert_same_tensors(straight[key], resumed[key], key)


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, capsys):
    assert run(tmp_path) == 0
    code = train.main(["--preset", "tiny", "--epochs", "3", "--batch_size", "4",
                       "--output_dir", str(tmp_path), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "other settings: batch_size (checkpoint 8, now 4)" in err
    assert err.count("\n") == 0


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys):
    assert run(tmp_path, "--resume") == 2
    assert "--resume: no checkpoint at" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"hello"])
def test_corrupt_checkpoints_are_refused_in_one_line(tmp_path, capsys, content):
    (tmp_path / "checkpoint.pt").write_bytes(content)
    assert run(tmp_path, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be read" in err and "corrupt" in err and "\n" not in err


def test_a_foreign_checkpoint_is_refused(tmp_path, capsys):
    torch.save({"model": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    assert run(tmp_path, "--resume") == 2
    assert "not written by this project's train.py" in capsys.readouterr().err


@pytest.mark.parametrize("damage, said", [("truncated", "cannot be read"),
                                          ("missing", "does not exist")])
def test_a_checkpoint_damaged_after_it_was_written_falls_back_to_the_previous_one(
        tmp_path, monkeypatch, capsys, damage, said):
    """Interrupted in epoch 3 (after its first step): checkpoint.pt is that mid-epoch state,
    checkpoint.prev.pt the end of epoch 2. With checkpoint.pt truncated (or gone), --resume
    trains epoch 3 again from the end of epoch 2 and lands where an uninterrupted run does."""
    assert run(tmp_path / "straight") == 0
    out = tmp_path / "damaged"
    interrupt_after(monkeypatch, 13)  # 4 LBO steps in epoch 1, 8 in epoch 2
    assert run(out) == 128 + signal.SIGINT
    monkeypatch.undo()
    previous = torch.load(out / "checkpoint.prev.pt", weights_only=True)
    assert (previous["next_epoch"], previous["next_batch"]) == (3, 0)
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[:len(data) // 2])
    if damage == "missing":
        (out / "checkpoint.pt").unlink()  # a crash between save_checkpoint's two renames
    capsys.readouterr()
    assert run(out, "--resume") == 0
    printed = capsys.readouterr().out
    assert f"checkpoint {out / 'checkpoint.pt'} {said}" in printed
    assert f"using the checkpoint saved before it, {out / 'checkpoint.prev.pt'}" in printed
    assert f"resuming from {out / 'checkpoint.prev.pt'}: epoch 3, batch 1" in printed
    straight, straight_records = final_state(tmp_path / "straight")
    resumed, resumed_records = final_state(out)
    assert [r["epoch"] for r in resumed_records] == [1, 2, 3]
    assert_same_tensors(straight_records, resumed_records)
    for key in ("vae", "disc", "opt_vae", "goals", "lbo_batches"):
        assert_same_tensors(straight[key], resumed[key], key)


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from checkpoint import save_checkpoint
    from configs import UserError
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"a": torch.ones(3)}, path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="the disk is full; the previous checkpoint .* intact"):
        save_checkpoint({"a": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(3))
    assert not (tmp_path / "checkpoint.pt.tmp").exists()


# --- a run resumed with another --epochs: extended (or cut short), its schedule re-planned ---

def lrs(out):
    return [r["lr"] for r in final_state(out)[1]]


def test_a_run_extended_mid_schedule_continues_its_cosine_to_min_lr(tmp_path, monkeypatch,
                                                                    capsys):
    out, keep = tmp_path / "run", ["--target_rollback_rate", "0.99"]  # no early stop here
    interrupt_after(monkeypatch, 12)  # the last LBO step of epoch 2 of 4
    assert run(out, "--epochs", "4", *keep) == 128 + signal.SIGINT
    monkeypatch.undo()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (saved["next_epoch"], saved["next_batch"]) == (3, 0)
    lr_k = saved["schedulers"][0]["_last_lr"][0]  # epoch 3's lr, as planned for 4 epochs
    assert run(out, "--epochs", "2", *keep, "--resume") == 0  # cut short: evaluated as it is
    assert "--epochs 2 (was 4): all 2 epochs are trained; nothing more to train" in \
        capsys.readouterr().out
    interrupt_after(monkeypatch, 1)  # stopped again straight after the re-planning ...
    assert run(out, "--epochs", "6", *keep, "--resume") == 128 + signal.SIGINT
    monkeypatch.undo()
    assert "--epochs 6 (was 4): learning-rate schedule re-planned at epoch 3: the lr goes on " \
        f"from {lr_k:.3g} along a cosine to min_lr 1e-05 at epoch 6" in capsys.readouterr().out
    assert run(out, "--epochs", "2", *keep, "--resume") == 2
    assert "trained 2 epochs and is in epoch 3; resume with --epochs 3 or more (it was " \
        "planned for 6)" in capsys.readouterr().err
    assert run(out, "--epochs", "6", *keep, "--resume") == 0  # ... which the checkpoint kept
    state, records = final_state(out)
    assert [r.get("schedule_replanned_at_epoch") for r in records] == [None, None, 3, 3, 3, 3]
    cfg = configs.parse_args(["--preset", "tiny"])
    straight = [cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t / 4)) / 2
                for t in range(3)]
    replanned = [cfg.min_lr + (lr_k - cfg.min_lr) * (1 + math.cos(math.pi * t / 6))
                 / (1 + math.cos(math.pi * 2 / 6)) for t in range(3, 6)]
    assert lrs(out) == pytest.approx(straight + replanned, rel=1e-9)  # continuous at epoch 3
    assert lrs(out)[2] == lr_k
    for scheduler in state["schedulers"]:  # the VAE's and the discriminator's
        assert scheduler["T_max"] == 6 and scheduler["_last_lr"] == [cfg.min_lr]  # exactly


def test_a_finished_run_is_extended_at_min_lr_and_never_cut_below_its_epochs(tmp_path, capsys):
    assert run(tmp_path, "--epochs", "2") == 0
    capsys.readouterr()
    assert run(tmp_path, "--epochs", "1", "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --epochs 1: checkpoint {tmp_path / 'checkpoint.pt'} has already "
                   "trained 2 epochs; resume with --epochs 2 or more (it was planned for 2)")
    assert run(tmp_path, "--epochs", "3", "--resume") == 0
    assert "re-planned at epoch 3: the lr stays at min_lr 1e-05 to epoch 3" in \
        capsys.readouterr().out
    state, records = final_state(tmp_path)
    assert [r.get("schedule_replanned_at_epoch") for r in records] == [None, None, 3]
    assert records[-1]["lr"] == 1e-5 and len(state["history"]) == 3


def test_a_constant_schedule_holds_both_rates_and_an_extension_keeps_them(tmp_path, capsys):
    keep = ["--lr_schedule", "constant", "--target_rollback_rate", "0.99"]  # no early stop
    assert run(tmp_path, "--epochs", "2", *keep) == 0
    assert run(tmp_path, "--epochs", "3", *keep, "--resume") == 0
    assert "--epochs 3 (was 2): the lr stays at 0.001 (constant schedule)" in \
        capsys.readouterr().out
    state, records = final_state(tmp_path)
    cfg = configs.parse_args(["--preset", "tiny"])
    assert [r["lr"] for r in records] == [cfg.lr] * 3
    assert [group["lr"] for group in state["opt_disc"]["param_groups"]] == [cfg.disc_lr]
    assert [r.get("schedule_replanned_at_epoch") for r in records] == [None] * 3


def test_a_stopped_run_is_not_extended_and_says_so(tmp_path, capsys):
    from checkpoint import save_checkpoint
    assert run(tmp_path, "--epochs", "2") == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["history"][-1].update(stop=True, decision="stop: one more epoch done")  # the tightener
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    capsys.readouterr()
    assert run(tmp_path, "--epochs", "5", "--resume") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "--epochs 5" in line]
    assert lines == ["--epochs 5 (was 2): the run already stopped after epoch 2 (stop: one more "
                     "epoch done); epochs is a maximum, so nothing more is trained: the stopped "
                     "run is evaluated as it is"]
    after = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert after["next_epoch"] == 3 and len(final_state(tmp_path)[1]) == 2


@pytest.mark.filterwarnings("ignore:.*to a meta parameter")
def test_a_checkpoint_resumes_on_another_device_with_each_piece_where_torch_expects_it(
        tmp_path, monkeypatch):
    """A GPU run resumes: the `meta` device stands in for CUDA. Parameters and AdamW's moments
    go to the training device, AdamW's step counters stay on the CPU (where torch keeps them:
    on the GPU each step would wait to read them), the RNG state reaches torch.set_rng_state
    as the CPU byte tensor it requires, and the epoch's running sums join the device."""
    out = tmp_path / "run"
    interrupt_after(monkeypatch, 6)  # mid-epoch 2: the checkpoint holds epoch statistics
    assert run(out) == 128 + signal.SIGINT
    cfg = configs.parse_args(["--preset", "tiny", "--epochs", "3", "--output_dir", str(out),
                              "--resume"])
    _, state = train.read_resume_checkpoint(cfg, out, print)
    meta = torch.device("meta")
    trainer = train.Trainer(cfg, meta)
    handed = []
    monkeypatch.setattr(torch, "set_rng_state", handed.append)
    trainer.load_state_dict(state)
    [rng] = handed
    assert (rng.device.type, rng.dtype) == ("cpu", torch.uint8)
    assert {p.device for p in trainer.vae.parameters()} == {meta}
    for optimizer in (trainer.opt, trainer.opt_disc):
        assert optimizer.state
        for param, saved in optimizer.state.items():
            assert saved["step"].device.type == "cpu"
            assert saved["exp_avg"].device == saved["exp_avg_sq"].device == meta
    stats = train.EpochStats()
    stats.load_state_dict(state["epoch_stats"], meta)
    assert stats.mu_variance_sum.device == meta and stats.disc_loss_sum.device == meta
