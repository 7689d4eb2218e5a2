"""Nothing lost: exact resume, interrupts, refused checkpoints."""
import functools
import json
import os
import signal
from pathlib import Path

import pytest
import torch

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
        for i, (x, y) in enumerate(zip(a, b)):
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
@pytest.mark.parametrize("lbo_steps, guard_check",
                         [(4, "look-ahead"), (9, "look-ahead"), (9, "next-batch")])
def test_an_interrupted_run_resumes_to_the_same_parameters_and_metrics(
        tmp_path, monkeypatch, capsys, lbo_steps, guard_check):
    torch.use_deterministic_algorithms(True)
    run_ = functools.partial(run, guard_check=guard_check)
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
                "calibration_rows", "lbo_batches"):
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
