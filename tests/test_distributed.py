"""DistributedDataParallel on 2 CPU processes (gloo): global decisions keep ranks identical."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import violate_evaluations

ROOT = Path(__file__).resolve().parent.parent


def images(cfg):
    """A batch of 8 random images at the config's size."""
    return torch.rand(8, 3, cfg.image_size, cfg.image_size)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flat_parameters(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def worker(rank, world, port, out_dir, mode):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import configs
    import distributed
    import train
    context = distributed.init("cpu")
    cfg = configs.parse_args(["--preset", "demo", "--batch_size", "8", "--calibration_batches",
                              "3", "--guard_check", mode, "--output_dir", out_dir])
    torch.manual_seed(0)
    trainer = train.Trainer(cfg, torch.device("cpu"), context)
    torch.manual_seed(100 + rank)  # each rank its own data and draws
    stats = train.EpochStats()
    for _ in range(cfg.calibration_batches):
        trainer.calibration_step(images(cfg), stats)
    trainer.finish_calibration()
    start = flat_parameters(trainer.vae)
    # Evaluation 2 checks step 1's update (look-ahead: its own batch; next-batch: step 2's);
    # rank 1 finds it violated, rank 0 does not. Evaluation 3 is step 2's forward (next-batch:
    # after the rollback); rank 0 finds it violated: no step anywhere. Step 3 is clean.
    violate_evaluations(setattr, {2} if rank == 1 else {3})
    trainer.lbo_step(images(cfg), stats, "step 1", lambda line: None)
    after_step_1 = flat_parameters(trainer.vae)
    trainer.lbo_step(images(cfg), stats, "step 2", lambda line: None)
    after_rejection = flat_parameters(trainer.vae)
    trainer.lbo_step(images(cfg), stats, "step 3", lambda line: None)
    trainer.settle_pending(stats, lambda line: None)
    after_step = flat_parameters(trainer.vae)
    decision = trainer.tightener.end_epoch(1, stats.rollback_rate, trainer.goals)
    # An epoch in which one rank's second batch has a NaN pixel: every rank skips it.
    batches = [images(cfg) * (0.5 + rank) for _ in range(3)]  # ranks differ
    batches[1][0, 0, 0, 0] = float("nan") if rank == 1 else 0.0
    local, real_sum = {}, distributed.sum_over_ranks

    def recording(context, stats, device):  # this rank's own epoch means, before the sum
        local.update({k: stats.measure_sums[k] / stats.measured for k in ("mse", "ssim")})
        real_sum(context, stats, device)
    distributed.sum_over_ranks = recording
    record = trainer.train_epoch(batches, 1, train.EpochStats(), 0, train.InterruptRequest())
    torch.save({"start": start, "after_step_1": after_step_1,
                "after_rejection": after_rejection, "after_step": after_step,
                "rollbacks": stats.rollbacks, "rejected": stats.rejected,
                "accepted": stats.accepted, "decision": list(decision),
                "goals": json.dumps(trainer.goals), "bad_batches": record["bad_batches"],
                "steps": record["steps"], "after_epoch": flat_parameters(trainer.vae),
                "local": local, "record": {k: record[k] for k in ("mse", "ssim")}},
               Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown()


def local_bottleneck_worker(rank, world, port, out_dir):
    """Each rank's own scores put another group at the minimum (rank 0: recon, rank 1:
    latent); their average puts latent there. Both ranks must back-propagate latent."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import dataclasses
    import math
    import configs
    import distributed
    import train
    from configs import GROUPS
    context = distributed.init("cpu")
    cfg = configs.parse_args(["--preset", "tiny", "--output_dir", out_dir])
    torch.manual_seed(0)
    trainer = train.Trainer(cfg, torch.device("cpu"), context)
    torch.manual_seed(100 + rank)
    stats = train.EpochStats()
    for _ in range(cfg.calibration_batches):
        trainer.calibration_step(torch.rand(8, 3, 32, 32), stats)
    trainer.finish_calibration()
    means = {"recon": -3.0 if rank == 0 else -1.0, "latent": -2.5}  # others -0.5
    real_evaluate, real_loss, chosen = train.evaluate_goals, train.barrier_loss, {}

    def skewed(goals, measures):
        evaluation = real_evaluate(goals, measures)
        mean = [means.get(g, -0.5) for g in GROUPS]
        scores = [math.exp(m) for m in mean]
        return dataclasses.replace(
            evaluation, violated=[], nonfinite=[], group_scores=scores,
            group_log_sums=[m * n for m, n in zip(mean, evaluation.group_sizes)],
            bottleneck=scores.index(min(scores)))

    def spying(goals, evaluation):
        chosen["group"] = GROUPS[evaluation.bottleneck]
        return real_loss(goals, evaluation)
    train.evaluate_goals, train.barrier_loss = skewed, spying
    chosen["local"] = GROUPS[skewed(trainer.goals, trainer._forward(
        torch.rand(8, 3, 32, 32))[2].measures).bottleneck]
    trainer.lbo_step(torch.rand(8, 3, 32, 32), stats, "step", lambda line: None)
    torch.save(chosen, Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown()


def calibration_resume_worker(rank, world, port, out_dir):
    """Calibrate on 6 batches per rank: straight, and interrupted after 3 (the checkpoint
    rank 0 writes, read back by every rank, as --resume does) then continued."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import configs
    import distributed
    import train
    context = distributed.init("cpu")
    cfg = configs.parse_args(["--preset", "tiny", "--calibration_batches", "6",
                              "--output_dir", out_dir])
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    batches = [torch.rand(8, 3, 32, 32, generator=generator) for _ in range(6)]

    def trainer_at_start():
        torch.manual_seed(0)
        return train.Trainer(cfg, torch.device("cpu"), context)

    def calibrate(trainer, numbers):
        for i in numbers:
            torch.manual_seed(1000 + 10 * rank + i)  # the same draws in both runs
            trainer.calibration_step(batches[i], train.EpochStats())

    straight = trainer_at_start()
    calibrate(straight, range(6))
    straight.finish_calibration()
    interrupted = trainer_at_start()
    calibrate(interrupted, range(3))
    stop = train.InterruptRequest()
    stop.signum = 2
    assert interrupted.train_epoch(batches[3:], 1, train.EpochStats(), 3, stop) is None
    path = Path(out_dir) / "checkpoint.pt"
    if context.main:
        train.save_checkpoint(interrupted.state_dict(1, 3), path)
    distributed.barrier(context)
    resumed = trainer_at_start()
    resumed.load_state_dict(train.read_checkpoint(path))
    calibrate(resumed, range(3, 6))
    resumed.finish_calibration()
    torch.save({"straight": straight.goals, "resumed": resumed.goals},
               Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown()


class InterruptAfter:
    """An interrupt request that arrives before batch `batches` + 1 of the epoch."""

    def __init__(self, batches):
        self.checks, self.batches, self.signum = 0, batches, 2

    @property
    def requested(self):
        self.checks += 1
        return self.checks > self.batches


def epoch_resume_worker(rank, world, port, out_dir):
    """One epoch of 4 LBO batches per rank: straight, and interrupted after 2 (rank 0 writes
    the checkpoint, every rank reads it back as --resume does) then continued with each
    rank's own random state, so that both runs take the same steps."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import configs
    import distributed
    import train
    context = distributed.init("cpu")
    cfg = configs.parse_args(["--preset", "tiny", "--output_dir", out_dir])
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    batches = [torch.rand(8, 3, 32, 32, generator=generator) for _ in range(8)]

    def calibrated_trainer():
        torch.manual_seed(0)
        trainer = train.Trainer(cfg, torch.device("cpu"), context)
        for i, x in enumerate(batches[:cfg.calibration_batches]):
            torch.manual_seed(1000 + 10 * rank + i)
            trainer.calibration_step(x, train.EpochStats())
        trainer.finish_calibration()
        torch.manual_seed(2000 + rank)
        return trainer

    epoch = batches[cfg.calibration_batches:]
    never = train.InterruptRequest()
    straight = calibrated_trainer().train_epoch(epoch, 2, train.EpochStats(), 0, never)
    interrupted = calibrated_trainer()
    stats = train.EpochStats()
    assert interrupted.train_epoch(epoch, 2, stats, 0, InterruptAfter(2)) is None
    own_random_state = torch.get_rng_state()
    path = Path(out_dir) / "checkpoint.pt"
    if context.main:
        train.save_checkpoint(interrupted.state_dict(2, interrupted.position, stats), path)
    distributed.barrier(context)
    state = train.read_checkpoint(path)
    resumed = calibrated_trainer()
    resumed.load_state_dict(state)
    torch.set_rng_state(own_random_state)  # DDP re-seeds each rank; here, as it was
    stats = train.EpochStats()
    stats.load_state_dict(resumed.own_epoch_stats(state))
    record = resumed.train_epoch(epoch[2:], 2, stats, 2, never)
    keys = ("mse", "ssim", "kl_core", "groups", "goal_scores", "accepted", "core_active")
    torch.save({"straight": {k: straight[k] for k in keys},
                "resumed": {k: record[k] for k in keys}}, Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown()


def spawn(world, *args, timeout=240, target=worker):
    """Run target on `world` processes; fail (rather than hang) if they wait on each other."""
    processes = mp.spawn(target, args=(world, free_port(), *args), nprocs=world, join=False)
    deadline = time.monotonic() + timeout
    while not processes.join(timeout=max(deadline - time.monotonic(), 0)):
        if time.monotonic() > deadline:
            for p in processes.processes:
                p.kill()
            raise AssertionError(f"the {world} processes did not finish in {timeout} s")


@pytest.mark.parametrize("mode", ["look-ahead", "next-batch"])
def test_a_violation_on_one_rank_refuses_the_step_on_every_rank(tmp_path, mode):
    spawn(2, str(tmp_path), mode)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for r in (r0, r1):
        assert (r["rollbacks"], r["rejected"], r["accepted"]) == (1, 1, 1)
        # next-batch: step 1's update is live until step 2's forward checks it
        assert torch.equal(r["after_step_1"], r["start"]) == (mode == "look-ahead")
        assert torch.equal(r["after_rejection"], r["start"])
        assert not torch.equal(r["after_step"], r["start"])
        assert (r["bad_batches"], r["steps"]) == (1, 2)
    assert torch.equal(r0["after_step"], r1["after_step"])  # the ranks never diverge
    assert torch.equal(r0["after_epoch"], r1["after_epoch"])
    assert r0["decision"] == r1["decision"]
    assert r0["goals"] == r1["goals"]  # calibration used both ranks' measures
    # The epoch's measures are means over both ranks' shards, not rank 0's alone.
    for key in ("mse", "ssim"):
        assert r0["local"][key] != pytest.approx(r1["local"][key], rel=1e-3)
        assert r0["record"][key] == r1["record"][key] == pytest.approx(
            (r0["local"][key] + r1["local"][key]) / 2, rel=1e-6)


@pytest.mark.parametrize("switches", [(), ("--objective", "sum", "--decoder", "asymmetric",
                                          "--consistency", "split")])
def test_torchrun_trains_with_two_processes_and_rank0_writes(tmp_path, switches):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port", str(free_port()), str(ROOT / "train.py"), "--preset", "tiny",
         "--epochs", "2", "--output_dir", str(out), *switches],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("=== epoch 2/2") == 1  # one summary: rank 0's
    assert "x 2 processes (DDP)" in result.stdout
    records = (out / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 2
    assert (out / "reconstructions.png").exists()


def test_every_rank_back_propagates_the_global_bottleneck_not_its_own(tmp_path):
    spawn(2, str(tmp_path), target=local_bottleneck_worker)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert (r0["local"], r1["local"]) == ("recon", "latent")  # the ranks disagree locally
    assert r0["group"] == r1["group"] == "latent"  # the minimum of the averaged scores


FAILING_RANK0 = """
import os, sys
sys.path.insert(0, {root!r})
import train
from configs import UserError


def refuse(payload, path):
    raise UserError(f"could not write checkpoint {{path}}: No space left on device")
if os.environ["RANK"] == "0":
    train.save_checkpoint = refuse
sys.exit(train.main(sys.argv[1:]))
"""


def test_when_rank_0_cannot_write_the_other_ranks_stop_with_the_reason(tmp_path):
    """Launched as plain processes (no torchrun agent to kill the rest): rank 1 must not
    wait in the next collective for a rank 0 that has stopped."""
    script = tmp_path / "launch.py"
    script.write_text(FAILING_RANK0.format(root=str(ROOT)))
    port = free_port()
    processes = [subprocess.Popen(
        [sys.executable, str(script), "--preset", "tiny", "--epochs", "2", "--output_dir",
         str(tmp_path / "run")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                            OMP_NUM_THREADS="1")) for rank in (0, 1)]
    try:
        results = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            p.kill()
    (_, err0), (_, err1) = results
    assert processes[0].returncode == 2 and "No space left on device" in err0
    # Both stop with the error's status, not SIGABRT from gloo's teardown: the process group
    # is destroyed on the error path too, after what held it (the two tests below).
    assert "rank 0 could not write the run's outputs" in err1
    assert processes[1].returncode == 2


class Held:
    """Stands in for what a caller holds (the trainer, its DDP wrapper)."""


def test_rank_0_s_write_error_leaves_nothing_for_the_garbage_collector():
    """The error re-raised on rank 0 must not sit in a reference cycle with the frames it
    passes: they would keep the trainer alive into the interpreter's teardown."""
    import gc
    import types
    import weakref
    import train
    from configs import UserError

    def refuse():
        raise UserError("No space left on device")

    def caller():
        held = Held()
        caller.held = weakref.ref(held)
        train.on_rank_zero(types.SimpleNamespace(active=False, main=True), "cpu", refuse)

    gc.disable()
    try:
        with pytest.raises(UserError, match="No space"):
            caller()
        assert caller.held() is None  # freed when the error was dropped, with no collection
    finally:
        gc.enable()


def test_shutdown_frees_what_only_cycles_hold_before_destroying_the_group():
    import gc
    import weakref
    import torch.distributed as dist
    import distributed

    store = dist.TCPStore("127.0.0.1", free_port(), 1, is_master=True)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    gc.disable()
    try:
        held = Held()
        held.itself = held  # a cycle: freed only by a collection
        alive = weakref.ref(held)
        del held
        distributed.shutdown()
        assert alive() is None and not dist.is_initialized()
    finally:
        gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_run_resumed_during_calibration_calibrates_as_an_uninterrupted_one(tmp_path):
    spawn(2, str(tmp_path), target=calibration_resume_worker)
    for rank in (0, 1):
        goals = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        scales = {name: [g.get("scale") for g in goals[name]] for name in goals}
        assert all(isinstance(x, float) for x in scales["straight"] if x is not None)
        assert scales["resumed"] == scales["straight"], rank


def test_a_checkpoint_stopped_in_ddp_calibration_resumes_only_with_its_process_count(
        calibrated):
    from configs import UserError
    state = calibrated.state_dict(1)
    state["calibration_rows_by_rank"] = [[{"mse": 0.1}], [{"mse": 0.2}]]
    with pytest.raises(UserError, match="interrupted during calibration with 2 processes; "
                                        "resume it with 2"):
        calibrated.load_state_dict(state)


def test_a_run_resumed_mid_epoch_under_ddp_counts_every_rank_s_shard_once(tmp_path):
    """Each rank keeps its own statistics of the interrupted epoch: with rank 0's alone on
    every rank, the resumed epoch's means counted rank 0's shard twice."""
    spawn(2, str(tmp_path), target=epoch_resume_worker)
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["straight"]["accepted"] == 4
        for key, value in result["straight"].items():
            resumed = result["resumed"][key]
            for name in (value if isinstance(value, dict) else [None]):
                want, got = (value, resumed) if name is None else (value[name], resumed[name])
                assert got == pytest.approx(want, rel=1e-6), (rank, key, name)
