import dataclasses
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(2)

import configs  # noqa: E402
import train  # noqa: E402


@pytest.fixture
def tiny_cfg(tmp_path):
    """The smallest full configuration (see configs.PRESETS['tiny']), writing under tmp_path."""
    return configs.parse_args(["--preset", "tiny", "--output_dir", str(tmp_path / "out")])


def violate_evaluations(set_attribute, numbers, others_pass=False, group="recon"):
    """Count train's goal evaluations from now on: those numbered in `numbers` (1-based)
    report `group` violated; with others_pass, every other one passes whatever its scores.
    set_attribute: monkeypatch.setattr in a test, setattr in a spawned worker."""
    real, calls = train.evaluate_goals, [0]

    def patched(goals, measures):
        calls[0] += 1
        evaluation = real(goals, measures)
        if others_pass:
            evaluation = dataclasses.replace(evaluation, violated=[], nonfinite=[])
        return dataclasses.replace(evaluation, violated=[group]) if calls[0] in numbers \
            else evaluation
    set_attribute(train, "evaluate_goals", patched)


def snapshot(trainer):
    state = {f"vae.{k}": v.clone() for k, v in trainer.vae.state_dict().items()}
    state.update({f"disc.{k}": v.clone() for k, v in trainer.disc.state_dict().items()})
    for i, s in enumerate(trainer.opt.state.values()):
        state.update({f"opt.{i}.{k}": v.clone() for k, v in s.items()})
    return state


def differing(a, b):
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture
def calibrated(tiny_cfg):
    """A trainer past calibration, with its optimizer state in place."""
    return calibrated_trainer(tiny_cfg)


def calibrated_trainer(cfg):
    torch.manual_seed(0)
    trainer = train.Trainer(cfg, torch.device("cpu"))
    stats = train.EpochStats()
    for _ in range(cfg.calibration_batches):
        trainer.calibration_step(torch.rand(8, 3, 32, 32), stats)
    trainer.finish_calibration()
    return trainer


@pytest.fixture
def trained_checkpoint(tmp_path):
    """A train.py checkpoint of a tiny VAE whose weights differ from a fresh one's (the mu head
    drawn, not zero): the trained VAE, and the checkpoint's path."""
    import checkpoint
    cfg = configs.parse_args(["--preset", "tiny", "--decoder", "asymmetric",
                              "--output_dir", str(tmp_path)])
    trainer = train.Trainer(cfg, torch.device("cpu"))
    with torch.no_grad():
        trainer.vae.encoder.mu.weight.normal_(0, 0.5)
        for film in trainer.vae.decoder.films:
            film.weight.normal_(0, 0.5)
    checkpoint.save_checkpoint(trainer.state_dict(2), tmp_path / "checkpoint.pt")
    return trainer.vae.eval(), tmp_path / "checkpoint.pt"
