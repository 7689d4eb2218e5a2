"""The trainer end to end on the tiny preset: the guarded step, the discriminator's frozen
scoring, the outputs of a whole run and the checkpoint."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import configs
import train
from configs import GROUPS
from conftest import differing, snapshot, violate_evaluations


def test_rollback_restores_every_parameter_buffer_and_optimizer_tensor(calibrated, monkeypatch):
    trainer, lines = calibrated, []
    stats = train.EpochStats()
    x = torch.rand(8, 3, 32, 32)
    violate_evaluations(monkeypatch.setattr, {2})  # the step's look-ahead
    before = snapshot(trainer)
    trainer.lbo_step(x, stats, "epoch 1 batch 5", lines.append)
    after = snapshot(trainer)
    assert differing(before, after) == []
    assert any("running_mean" in k for k in before) and any(k.startswith("opt.") for k in before)
    assert stats.rollbacks == 1 and stats.accepted == 0
    assert lines[0].startswith("[ROLLBACK] epoch 1 batch 5: violated recon; ")
    assert "bottleneck " in lines[0]


def test_an_accepted_step_changes_parameters_and_the_lookahead_leaves_buffers_alone(
        calibrated, monkeypatch):
    trainer = calibrated
    x = torch.rand(8, 3, 32, 32)
    real_forward, buffers_around_lookahead = train.forward_measures, []

    def spying(nets, x, real, draws, amp, update_stats=True):
        if not update_stats:
            buffers_around_lookahead.append({k: v.clone() for k, v in nets[0].named_buffers()})
        result = real_forward(nets, x, real, draws, amp, update_stats)
        if not update_stats:
            buffers_around_lookahead.append({k: v.clone() for k, v in nets[0].named_buffers()})
        return result
    monkeypatch.setattr(train, "forward_measures", spying)
    before = snapshot(trainer)
    stats = train.EpochStats()
    trainer.lbo_step(x, stats, "here", print)
    assert stats.accepted == 1
    changed = differing(before, snapshot(trainer))
    assert any(k.startswith("vae.") and k.endswith("weight") for k in changed)
    assert any(k.endswith("running_mean") for k in changed)  # the step's own forward
    ahead, behind = buffers_around_lookahead
    assert differing(ahead, behind) == []


def test_the_lookahead_reuses_the_step_draws(calibrated, monkeypatch):
    trainer, seen = calibrated, []
    real_forward = train.forward_measures

    def spying(nets, x, real, draws, amp, update_stats=True):
        seen.append((draws, real))
        return real_forward(nets, x, real, draws, amp, update_stats)
    monkeypatch.setattr(train, "forward_measures", spying)
    trainer.lbo_step(torch.rand(8, 3, 32, 32), train.EpochStats(), "here", print)
    (draws_step, real_step), (draws_ahead, real_ahead) = seen
    assert draws_ahead is draws_step and real_ahead is real_step


def test_vae_scoring_leaves_the_discriminator_untouched(calibrated):
    trainer = calibrated
    disc_before = {k: v.clone() for k, v in trainer.disc.state_dict().items()}
    trainer.lbo_step(torch.rand(8, 3, 32, 32), train.EpochStats(), "here", print)
    assert differing(disc_before, trainer.disc.state_dict()) == []
    assert all(p.grad is None for p in trainer.disc.parameters())
    trainer.discriminator_step(torch.rand(8, 3, 32, 32), torch.rand(8, 3, 32, 32),
                               train.EpochStats())
    assert differing(disc_before, trainer.disc.state_dict())  # its own update does change it
    assert not trainer.disc.training


def test_a_rejected_batch_takes_no_step_and_a_long_run_of_them_stops_training(calibrated):
    trainer, lines = calibrated, []
    trainer.cfg.max_consecutive_rejections = 3
    for goal in trainer.goals:  # an unmeetable goal: the recon group is violated at once
        if goal["name"] == "pixel":
            goal["scale"] = 1e-9
    before = snapshot(trainer)
    stats = train.EpochStats()
    for _ in range(2):
        trainer.lbo_step(torch.rand(8, 3, 32, 32), stats, "b", lines.append)
    assert stats.rejected == 2 and differing(before, snapshot(trainer)) == []
    assert lines[0].startswith("[REJECTED] b: violated recon; failing goals: pixel 0.00e+00")
    with pytest.raises(train.TrainingStalled, match="3 batches in a row"):
        trainer.lbo_step(torch.rand(8, 3, 32, 32), stats, "b", lines.append)


def test_a_short_run_writes_every_output_and_a_safe_checkpoint(tiny_cfg, capsys):
    out = tiny_cfg.output_dir
    argv = ["--preset", "tiny", "--epochs", "3", "--output_dir", out]
    assert train.main(argv) == 0
    out = Path(out)
    for name in ("reconstructions.png", "traversals_core.png", "traversals_detail.png",
                 "cross_reconstruction.png", "group_balance.png", "training_history.png",
                 "metrics.jsonl", "checkpoint.pt", "final_metrics.json"):
        assert (out / name).stat().st_size > 0, name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert set(r["groups"]) == set(GROUPS) and set(r["bottleneck"]) == set(GROUPS)
        assert r["rollback_rate"] == pytest.approx(
            (r["rollbacks"] + r["rejected"]) / r["steps"] if r["steps"] else 0.0)
        for key in ("loss", "min_group", "ssim", "kl_core", "kl_detail", "kl_core_dim",
                    "core_active", "detail_active", "core_effective", "decision"):
            assert key in r
    assert records[0]["calibration_batches"] == tiny_cfg.calibration_batches
    assert records[-1]["steps"] > 0 and 0 <= records[-1]["min_group"] <= 1
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["next_epoch"] == 4 and state["calibrated"]
    assert configs.from_dict(state["config"]).epochs == 3
    assert all(g.get("scale") != "auto" for g in state["goals"])
    assert len(state["history"]) == 3
    printed = capsys.readouterr().out
    assert "=== epoch 3/3" in printed and "held-out" in printed
    assert "BOM VAE v15 | device cpu (channels-last)\n" in printed  # no autocast on a CPU


def test_epoch_1_keeps_the_plain_mse_warm_up_apart_from_the_lbo_steps(tiny_cfg, monkeypatch,
                                                                       capsys):
    """Epoch 1 = 4 calibration batches (plain MSE) + 4 LBO steps: SSIM, MSE and KL of the
    epoch are the LBO steps' means; the warm-up has its own line and record."""
    import summary
    seen = {"warmup": [], "lbo": []}
    add_warmup, add_accepted = summary.EpochStats.add_warmup, summary.EpochStats.add_accepted

    def warmup(self, measures):
        seen["warmup"].append(measures)
        add_warmup(self, measures)

    def accepted(self, evaluation, mu_variance):
        seen["lbo"].append(evaluation.measures)
        add_accepted(self, evaluation, mu_variance)
    monkeypatch.setattr(summary.EpochStats, "add_warmup", warmup)
    monkeypatch.setattr(summary.EpochStats, "add_accepted", accepted)
    assert train.main(["--preset", "tiny", "--epochs", "1", "--target_rollback_rate", "0.99",
                       "--output_dir", tiny_cfg.output_dir]) == 0
    record = json.loads((Path(tiny_cfg.output_dir) / "metrics.jsonl").read_text())
    assert len(seen["warmup"]) == 4 and record["accepted"] == len(seen["lbo"]) > 0

    def mean(part, name):
        return sum(m[name] for m in seen[part]) / len(seen[part])
    for name in ("mse", "ssim", "kl_core_dim", "kl_detail_dim"):
        assert record[name] == pytest.approx(mean("lbo", name), rel=1e-9)
        assert record["warmup"][name] == pytest.approx(mean("warmup", name), rel=1e-9)
    assert record["mse"] != pytest.approx(mean("warmup", "mse"), rel=1e-3)  # they differ
    printed = capsys.readouterr().out
    assert f"warm-up (calibration): 4 plain-MSE batches: SSIM {record['warmup']['ssim']:.4f}" \
        in printed


def test_every_epoch_measures_held_out_images_and_says_whether_it_converged(tiny_cfg, capsys):
    """With epoch_eval_images = eval_images, the last epoch's held-out numbers are the final
    evaluation's (same images, same weights, eval mode); from the second epoch on, the summary
    says how much the last fifth of the epochs improved the held-out MSE."""
    out = Path(tiny_cfg.output_dir)
    assert train.main(["--preset", "tiny", "--epochs", "3", "--epoch_eval_images", "32",
                       "--target_rollback_rate", "0.99", "--output_dir", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = json.loads((out / "final_metrics.json").read_text())["reconstruction"]
    assert [r["heldout_images"] for r in records] == [32, 32, 32]
    assert records[-1]["heldout_mse"] == pytest.approx(final["mse"], rel=1e-6)
    assert records[-1]["heldout_ssim"] == pytest.approx(final["ssim"], rel=1e-6)
    assert records[0]["heldout_recent_gain"] is None
    mses = [r["heldout_mse"] for r in records]
    assert records[-1]["heldout_recent_gain"] == pytest.approx(
        (min(mses[:2]) - mses[2]) / min(mses[:2]))
    printed = capsys.readouterr().out
    assert f"held-out (32 images): MSE {records[-1]['heldout_mse']:.5f}" in printed
    assert "MSE gain over the last 1 epoch: " in printed


def test_the_recent_gain_compares_the_last_fifth_with_the_best_before_it():
    from summary import recent_gain
    assert recent_gain([0.5]) == (None, 1)
    gain, window = recent_gain([1.0, 0.5, 0.40, 0.30, 0.2, 0.45, 0.3, 0.25, 0.198, 0.21])
    assert window == 2 and gain == pytest.approx((0.2 - 0.198) / 0.2)
    assert recent_gain([0.1, 0.2])[0] == pytest.approx(-1.0)  # got worse


@pytest.mark.parametrize("gain, verdict", [(0.03, "still improving"), (0.01, "converged"),
                                           (-0.01, "converged"),
                                           (-0.14, "worse than its best epoch before them")])
def test_the_summary_calls_a_run_converged_only_within_2_percent_of_its_best(gain, verdict):
    from summary import _heldout_line
    record = dict(heldout_images=256, heldout_mse=1e-3, heldout_ssim=0.9,
                  heldout_recent_gain=gain, heldout_recent_epochs=16)
    assert f"MSE gain over the last 16 epochs: {gain:.1%} ({verdict}: within ±2% counts as " \
        "converged)" in _heldout_line(record)


def test_tensorboard_gets_step_and_epoch_scalars_and_images(tiny_cfg):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tiny_cfg.output_dir
    assert train.main(["--preset", "tiny", "--epochs", "2", "--log_every", "1",
                       "--output_dir", out]) == 0
    events = EventAccumulator(str(Path(out) / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"step/loss", "step/min_group", "step_group/recon", "epoch/ssim",
            "epoch/rollback_rate", "epoch_bottleneck/latent"} <= set(scalars)
    # 8 batches an epoch: 4 calibration + 4 LBO steps in epoch 1, then 8 LBO steps.
    assert [e.step for e in events.Scalars("step/loss")] == list(range(1, 13))
    assert [e.step for e in events.Scalars("epoch/ssim")] == [1, 2]
    assert events.Tags()["images"] == ["originals_reconstructions_swaps"]


def test_the_elbo_control_is_a_plain_beta_vae_whose_statistics_see_reconstructions_only(
        tiny_cfg):
    """Three control steps against a beta-VAE written out here: encode, reparameterise with
    the step's eps, decode z alone, summed squared error / (2 sigma^2) + beta * KL, AdamW.
    Every parameter and BatchNorm statistic agrees: logging LBO's measures (on every second
    step here) changed nothing."""
    import copy

    from losses import draw_step
    cfg = dataclasses.replace(tiny_cfg, objective="elbo", beta=2.0, elbo_sigma=0.3,
                              control_measure_every=2)
    torch.manual_seed(0)
    trainer = train.Trainer(cfg, torch.device("cpu"))
    plain = copy.deepcopy(trainer.vae)
    opt = torch.optim.AdamW(plain.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    stats = train.EpochStats()
    for i in range(3):
        x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(i))
        torch.manual_seed(i)
        trainer.elbo_step(x, stats)
        torch.manual_seed(i)
        eps = draw_step(x, cfg).eps
        mu, logvar = plain.posterior(x)
        recon = plain.decode_latent(mu + torch.exp(0.5 * logvar) * eps)
        kl = 0.5 * (logvar.exp() + mu ** 2 - 1 - logvar)
        loss = ((recon - x) ** 2).sum((1, 2, 3)).mean() / (2 * 0.3 ** 2) \
            + cfg.beta * kl.sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ours, theirs = trainer.vae.state_dict(), plain.state_dict()
    for name in ours:
        assert torch.allclose(ours[name].float(), theirs[name].float(), rtol=1e-4, atol=1e-6), \
            name
    # Measured on steps 0 and 2 of the three (every second step, counted from the first).
    assert stats.accepted == 3 and stats.measured == 2


def test_the_elbo_controls_training_numbers_describe_the_model_evaluation_sees(tiny_cfg):
    """32x32 images: the last epoch's training MSE (logged in eval mode) and the held-out MSE
    agree within a factor of 1.5 (same distribution, a model that generalises)."""
    out = Path(tiny_cfg.output_dir)
    assert train.main(["--preset", "tiny", "--epochs", "3", "--objective", "elbo",
                       "--output_dir", str(out)]) == 0
    trained = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["mse"]
    heldout = json.loads((out / "final_metrics.json").read_text())["reconstruction"]["mse"]
    assert 1 / 1.5 < trained / heldout < 1.5


def test_the_elbo_control_trains_the_same_networks_without_the_lbo_machinery(tiny_cfg, capsys):
    out = tiny_cfg.output_dir
    assert train.main(["--preset", "tiny", "--epochs", "2", "--objective", "elbo",
                       "--output_dir", out]) == 0
    records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        assert r["objective"] == "elbo" and r["decision"] == "none (elbo control)"
        assert r["steps"] == 0 and r["calibration_batches"] == 0 and r["accepted"] == 8
        assert r["loss"] > 0 and 0 < r["ssim"] < 1
    state = torch.load(Path(out) / "checkpoint.pt", weights_only=True)
    assert not state["calibrated"] and state["config"]["objective"] == "elbo"
    assert (Path(out) / "reconstructions.png").exists()
    printed = capsys.readouterr().out
    assert "-ELBO " in printed and "nan" not in printed  # no empty goal table
    assert "min group" not in printed and "rollbacks" not in printed


def test_every_epoch_writes_a_picture_of_originals_reconstructions_and_swaps(tmp_path):
    """epochs/epoch_NNN.png after each epoch: a long run can be watched learning without
    TensorBoard. Three rows (originals, reconstructions, swaps) of 8 held-out images."""
    from PIL import Image
    out = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--epochs", "2", "--tensorboard", "false",
                       "--output_dir", str(out)]) == 0
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch_001.png",
                                                                   "epoch_002.png"]
    with Image.open(out / "epochs" / "epoch_002.png") as picture:
        assert picture.size == (8 * 34 + 2, 3 * 34 + 2)  # 32-pixel images, 2-pixel gaps
        pixels = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255
    rows = [pixels[2 + 34 * r:34 + 34 * r, 2:34] for r in range(3)]  # the first image's
    first = train.build_datasets(configs.parse_args(["--preset", "tiny"]))[1][0]
    assert np.abs(rows[0] - first.numpy().transpose(1, 2, 0)).max() < 1 / 255 + 1e-6
    assert np.abs(rows[1] - rows[0]).max() > 0  # a reconstruction, not the original again
