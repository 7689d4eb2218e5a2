"""Faults inside training and bad input: each ends with one clear line and a non-zero code."""
import os

import pytest
import torch

import evaluate
import train
from conftest import differing, snapshot


def run(out, *extra):
    return train.main(["--preset", "tiny", "--epochs", "2", "--output_dir", str(out), *extra])


def test_a_batch_with_nan_pixels_is_skipped_and_counted(calibrated):
    trainer = calibrated
    batch = torch.rand(8, 3, 32, 32)
    batch[3, 1, 5, 5] = float("nan")
    before = snapshot(trainer)
    record = trainer.train_epoch([batch, torch.rand(8, 3, 32, 32)], 2, train.EpochStats(), 0,
                                 train.InterruptRequest())
    assert record["bad_batches"] == 1 and record["steps"] == 1
    assert not any(torch.isnan(v).any() for v in trainer.vae.state_dict().values()
                   if v.is_floating_point())
    assert differing(before, snapshot(trainer))  # the good batch did train


def test_non_finite_gradients_are_rolled_back_by_the_guard(calibrated):
    trainer, lines = calibrated, []
    param = next(trainer.vae.decoder.parameters())
    hook = param.register_hook(lambda grad: torch.full_like(grad, float("nan")))
    before = snapshot(trainer)
    stats = train.EpochStats()
    trainer.lbo_step(torch.rand(8, 3, 32, 32), stats, "b", lines.append)
    hook.remove()
    assert stats.rollbacks == 1 and differing(before, snapshot(trainer)) == []
    assert lines[0].startswith("[ROLLBACK] b: non-finite ")


def test_a_failure_while_drawing_keeps_the_model_and_says_how_to_redraw(tmp_path, monkeypatch,
                                                                         capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("matplotlib exploded")
    monkeypatch.setattr(evaluate, "draw_pictures", broken)
    assert run(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "evaluation or pictures failed (RuntimeError: matplotlib exploded)" in err
    assert f"python evaluate.py {tmp_path / 'checkpoint.pt'}" in err
    monkeypatch.undo()
    assert evaluate.main([str(tmp_path / "checkpoint.pt")]) == 0  # ...and it does redraw
    assert (tmp_path / "reconstructions.png").exists()


def test_out_of_memory_names_the_batch_size_and_the_setting(tmp_path, monkeypatch, capsys):
    def oom(*args, **kwargs):  # the class every torch in requirements.txt's range raises
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(train.Trainer, "lbo_step", oom)
    assert run(tmp_path) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: out of GPU memory at batch_size 8; lower it, e.g. "
                          "--batch_size 4")



def test_on_a_torch_without_torch_out_of_memory_error_other_errors_pass_through(
        tmp_path, monkeypatch):
    """torch 2.3, which requirements.txt allows, has torch.cuda.OutOfMemoryError and no
    torch.OutOfMemoryError: an except clause naming the latter turned every other error
    reaching it into an AttributeError."""
    monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug of ours")
    monkeypatch.setattr(train.Trainer, "lbo_step", broken)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        run(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_output_folder_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert run(locked / "out") == 2
    assert "is not writable" in capsys.readouterr().err


def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert run(tmp_path / "file") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: output_dir = '{tmp_path / 'file'}' is not writable")
    assert "--output_dir PATH" in err


def test_evaluate_refuses_a_missing_checkpoint(tmp_path, capsys):
    assert evaluate.main([str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
