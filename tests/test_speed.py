"""The speed switches (channels-last, torch.compile) and the step benchmark: each may change
rounding, never what a step computes."""
import functools
import json
import sys
from pathlib import Path

import pytest
import torch

import configs
import train
from conftest import differing, snapshot, violate_evaluations

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


def test_channels_last_changes_the_layout_and_the_numbers_by_rounding_only(tiny_cfg, batches):
    tiny_cfg.channels_last = False
    plain = calibrated_trainer(tiny_cfg, batches)
    tiny_cfg.channels_last = True
    nhwc = calibrated_trainer(tiny_cfg, batches)
    conv = nhwc.vae.encoder.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    a, b = measures_of_one_step(plain, batches[0]), measures_of_one_step(nhwc, batches[0])
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("switches", [{}, {"decoder": "asymmetric", "consistency": "split"}])
def test_compiled_networks_roll_back_exactly_without_recompiling(tiny_cfg, batches,
                                                                  monkeypatch, switches):
    # aot_eager runs the same graph capture and autograd tracing as the default inductor
    # backend, without generating C++ (minutes on a 2-core machine).
    monkeypatch.setattr(torch, "compile",
                        functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    for name, value in switches.items():  # the split's decoder and its re-encoding too
        setattr(tiny_cfg, name, value)
    tiny_cfg.compile = True
    trainer = calibrated_trainer(tiny_cfg, batches)
    tiny_cfg.compile = False
    eager = calibrated_trainer(tiny_cfg, batches)
    assert trainer.vae.state_dict().keys() == eager.vae.state_dict().keys()  # checkpoints alike
    stats, x = train.EpochStats(), batches[1].contiguous(memory_format=trainer.memory_format)
    for _ in range(2):  # every graph variant (training step, look-ahead, the
        trainer.lbo_step(x, stats, "warm", print)  # discriminator's update) compiled here
    assert stats.accepted == 2 and stats.disc_steps == 1
    assert trainer.vae.encoder._compiled_call_impl is not None  # really compiled
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with monkeypatch.context() as patch:
        violate_evaluations(patch.setattr, {2})  # the step's look-ahead
        before = snapshot(trainer)
        trainer.lbo_step(x, stats, "forced", lambda line: None)
    assert stats.rollbacks == 1 and differing(before, snapshot(trainer)) == []
    trainer.lbo_step(x, stats, "after the rollback", print)  # runs the restored weights
    assert stats.accepted == 3
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # no recompile
    # The compiled code reads the live (restored, then updated) weights.
    eager.vae.load_state_dict(trainer.vae.state_dict())
    trainer.vae.eval(), eager.vae.eval()
    with torch.no_grad():
        assert torch.allclose(trainer.vae.reconstruct(x), eager.vae.reconstruct(x), atol=1e-5)


def test_training_feeds_channels_last_batches(tiny_cfg, monkeypatch):
    seen = []
    real_forward = train.forward_measures

    def spying(nets, x, real, draws, amp, update_stats=True):
        seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return real_forward(nets, x, real, draws, amp, update_stats)
    monkeypatch.setattr(train, "forward_measures", spying)
    assert train.main(["--preset", "tiny", "--epochs", "1", "--output_dir",
                       tiny_cfg.output_dir]) == 0
    assert seen and all(seen)


def test_a_resume_keeps_the_memory_format_and_may_switch_compile(tiny_cfg):
    other = configs.from_dict(configs.to_dict(tiny_cfg))
    other.channels_last, other.compile = not tiny_cfg.channels_last, not tiny_cfg.compile
    assert configs.differing_fields(tiny_cfg, other) == ["channels_last"]


def test_loaded_optimizer_state_takes_the_parameters_memory_format(tiny_cfg, batches):
    tiny_cfg.channels_last = False
    state = calibrated_trainer(tiny_cfg, batches).state_dict(2)  # Adam moments in NCHW
    tiny_cfg.channels_last = True
    trainer = train.Trainer(tiny_cfg, torch.device("cpu"))
    trainer.load_state_dict(state)
    saved, params = state["opt_vae"]["state"], trainer.opt.param_groups[0]["params"]
    for i, param in enumerate(params):
        for key in ("exp_avg", "exp_avg_sq"):
            moment = trainer.opt.state[param][key]
            assert moment.stride() == param.stride() and torch.equal(moment, saved[i][key])
    first_conv = params[0]  # NCHW when saved, channels-last now: converted, not shared
    assert first_conv.dim() == 4 and saved[0]["exp_avg"].is_contiguous()
    assert trainer.opt.state[first_conv]["exp_avg"] is not saved[0]["exp_avg"]


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
        "--variants", "naive,ours,ours+channels_last,ours+next_batch",
        "--output", str(tmp_path / "speed")])
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
    # next-batch: no look-ahead; the next step's forward is the check
    fast = result["variants"]["ours+next_batch"]
    assert "look-ahead" not in fast["phase_share"] and "forward" in fast["phase_share"]
    assert 0 < fast["flops_per_step"] < ours["flops_per_step"]
    table = (tmp_path / "speed.md").read_text()
    assert "| naive |" in table and "| ours+channels_last |" in table and "vs naive" in table
    predicted = naive["flops_per_step"] / ours["flops_per_step"]  # same batch: per image too
    assert f"| ours | 8 | {ours['images_per_second']:.2f} | " in table
    assert f"x | {predicted:.2f}x | " in table.split("| ours |")[1].splitlines()[0]


def test_variants_of_two_presets_run_side_by_side_each_on_its_own_model_and_batch(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [
        "step_speed.py", "--steps", "1", "--warmup", "1", "--variants", "tiny:ours,demo:ours",
        "--output", str(tmp_path / "speed")])
    step_speed.main()
    rows = json.loads((tmp_path / "speed.json").read_text())["variants"]
    tiny, demo = rows["tiny:ours"], rows["demo:ours"]
    demo_cfg, tiny_cfg = (configs.parse_args(["--preset", p]) for p in ("demo", "tiny"))
    assert (tiny["batch"], demo["batch"]) == (tiny_cfg.batch_size, demo_cfg.batch_size)
    assert (tiny["image_size"], demo["image_size"]) == (tiny_cfg.image_size, demo_cfg.image_size)
    assert demo["vae_params"] > tiny["vae_params"]
    # An image through the demo's wider nets costs more than one through the tiny nets.
    tiny_per_image, demo_per_image = (r["flops_per_step"] / r["batch"] for r in (tiny, demo))
    assert demo_per_image > tiny_per_image
    table = (tmp_path / "speed.md").read_text()
    assert "| vs tiny:ours |" in table
    assert f"| demo:ours | {demo['batch']} | {demo['images_per_second']:.2f} | " \
        f"{demo['images_per_second'] / tiny['images_per_second']:.2f}x | " \
        f"{tiny_per_image / demo_per_image:.2f}x |" in table


def test_an_unknown_preset_in_a_variant_is_named(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["step_speed.py", "--variants", "tiny:ours,dmeo:ours"])
    with pytest.raises(SystemExit, match="unknown preset 'dmeo' in 'dmeo:ours'"):
        step_speed.main()


def test_the_gpu_check_script_refuses_a_machine_without_cuda(monkeypatch):
    """bench/gpu_check.sh is for a GPU machine: without CUDA it says so and runs nothing."""
    import subprocess
    script = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0  # it parses
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("PYTHON", sys.executable)
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no CUDA device visible" in done.stderr and "== 1/" not in done.stdout


def test_the_gpu_paths_check_runs_its_cpu_parts_and_says_which_need_cuda(tmp_path):
    """bench/gpu_paths.py, which gpu_check.sh runs first on a GPU, kept working on a CPU: a run
    interrupted mid-epoch resumes to the straight run's weights, the loader reads the cache
    faster than it decodes JPEGs, the measures are taken; memory and syncs need CUDA."""
    import gpu_paths
    assert gpu_paths.main(["--device", "cpu", "--preset", "tiny", "--batch", "8", "--images",
                           "64", "--steps", "3", "--output", str(tmp_path),
                           "--parts", "resume,memory,syncs,loader,measures"]) == 0
    result = json.loads((tmp_path / "gpu_paths_cpu.json").read_text())
    parts = result["parts"]
    assert parts["resume"]["weights_bit_equal"] and parts["resume"]["resumed"]
    assert parts["memory"]["skipped"] == "peak device memory needs CUDA"
    assert parts["syncs"]["skipped"].endswith("needs CUDA")
    loader = parts["loader"]
    assert loader["jpeg"]["images"] == loader["cache"]["images"] > 0
    assert loader["cache"]["images_per_second"] > loader["jpeg"]["images_per_second"]
    assert parts["measures"]["values"]["cpu float32"]["precision"] == "float32 (cpu)"
    assert "## resume" in (tmp_path / "gpu_paths_cpu.md").read_text()


def test_the_control_step_benchmark_times_each_logging_rate_on_the_same_training(tmp_path):
    import control_step
    out = tmp_path / "control.md"
    control_step.main(["--preset", "tiny", "--every", "1,4", "--epochs", "1",
                       "--output", str(out)])
    report = out.read_text()
    assert "1 epochs of 64 images per variant" in report
    assert "| 1 |" in report and "| 4 |" in report
    # Logging on every step or every fourth leaves the training identical.
    assert "weights agree at the end: yes" in report
