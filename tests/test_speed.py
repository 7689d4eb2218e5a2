"""The speed switches (channels-last, torch.compile) and the step benchmark: each must leave
what a step computes unchanged."""
import functools
import json
import sys
from pathlib import Path

import pytest
import torch

import train
from conftest import differing, snapshot
from test_train import force_lookahead_violation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import step_speed  # noqa: E402


def calibrated_trainer(cfg, batches):
    torch.manual_seed(0)
    trainer = train.Trainer(cfg, torch.device("cpu"))
    stats = train.EpochStats()
    for x in batches[:cfg.calibration_batches]:
        trainer.calibration_step(x.contiguous(memory_format=trainer.memory_format), stats)
    trainer.finish_calibration()
    return trainer


@pytest.fixture
def batches():
    generator = torch.Generator().manual_seed(3)
    return [torch.rand(8, 3, 32, 32, generator=generator) for _ in range(4)]


def measures_of_one_step(trainer, x):
    torch.manual_seed(5)
    _, _, fwd = trainer._forward(x.contiguous(memory_format=trainer.memory_format))
    return {k: v.item() for k, v in fwd.measures.items()}


def test_channels_last_changes_the_layout_not_the_numbers(tiny_cfg, batches):
    tiny_cfg.channels_last = False
    plain = calibrated_trainer(tiny_cfg, batches)
    tiny_cfg.channels_last = True
    nhwc = calibrated_trainer(tiny_cfg, batches)
    conv = nhwc.vae.encoder.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    a, b = measures_of_one_step(plain, batches[0]), measures_of_one_step(nhwc, batches[0])
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_compiled_networks_roll_back_exactly_without_recompiling(tiny_cfg, batches,
                                                                  monkeypatch):
    # aot_eager runs the same graph capture and autograd tracing as the default inductor
    # backend, without generating C++ (minutes on a 2-core machine).
    monkeypatch.setattr(torch, "compile",
                        functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    tiny_cfg.compile = True
    trainer = calibrated_trainer(tiny_cfg, batches)
    tiny_cfg.compile = False
    eager = calibrated_trainer(tiny_cfg, batches)
    assert trainer.vae.state_dict().keys() == eager.vae.state_dict().keys()  # checkpoints alike
    stats, x = train.EpochStats(), batches[1].contiguous(memory_format=trainer.memory_format)
    for _ in range(2):  # every graph variant (training step, look-ahead) compiled here
        recon, _ = trainer.lbo_step(x, stats, "warm", print)
        trainer.discriminator_step(x, recon, stats)
    assert stats.accepted == 2
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs > 0  # the networks really are compiled
    force_lookahead_violation(monkeypatch)
    before = snapshot(trainer)
    trainer.lbo_step(x, stats, "forced", lambda line: None)
    assert stats.rollbacks == 1 and differing(before, snapshot(trainer)) == []
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    # After the restore the compiled code reads the restored weights.
    eager.vae.load_state_dict(trainer.vae.state_dict())
    trainer.vae.eval(), eager.vae.eval()
    with torch.no_grad():
        assert torch.allclose(trainer.vae.reconstruct(x), eager.vae.reconstruct(x), atol=1e-5)


def test_the_naive_reference_computes_the_same_update_as_our_step(tiny_cfg, batches):
    ours, naive = (calibrated_trainer(tiny_cfg, batches) for _ in range(2))
    x = batches[1].contiguous(memory_format=ours.memory_format)
    results = []
    for trainer, step in ((ours, step_speed.our_step), (naive, step_speed.naive_step)):
        torch.manual_seed(11)
        stats = train.EpochStats()
        step(trainer, x, stats, 1)  # step 1: no discriminator update (disc_every 2)
        assert stats.accepted == 1
        results.append({k: v for k, v in snapshot(trainer).items()
                        if k.startswith("vae.") and "running" not in k
                        and "num_batches" not in k})
    assert differing(*results) == []  # bit for bit: the barrier's gradient is the same


def test_the_benchmark_reports_every_variant_and_phase(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [
        "step_speed.py", "--preset", "tiny", "--batch", "8", "--steps", "2", "--warmup", "1",
        "--variants", "naive,ours,ours+channels_last", "--output", str(tmp_path / "speed")])
    step_speed.main()
    result = json.loads((tmp_path / "speed.json").read_text())
    naive, ours = result["variants"]["naive"], result["variants"]["ours"]
    for row in (naive, ours):
        assert row["steps"] == 2 and row["images_per_second"] > 0
        assert {"snapshot", "forward", "look-ahead", "discriminator"} <= set(row["phase_share"])
        assert 0 < sum(row["phase_share"].values()) <= 1.0001
    # Same state, batch and seed for every variant: the same decisions and bottlenecks.
    for key in ("accepted", "rollbacks", "rejected", "bottlenecks"):
        assert naive[key] == ours[key], key
    assert "discriminator VAE re-forward" in naive["phase_share"]
    assert "discriminator VAE re-forward" not in ours["phase_share"]
    # The naive step recomputes the real batch's features and backpropagates every group.
    assert naive["flops_per_step"] > ours["flops_per_step"] > 0
    table = (tmp_path / "speed.md").read_text()
    assert "| naive |" in table and "| ours+channels_last |" in table and "vs naive" in table
