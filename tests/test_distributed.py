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
        trainer.calibration_step(torch.rand(8, 3, 64, 64), stats)
    trainer.finish_calibration()
    start = flat_parameters(trainer.vae)
    # Evaluation 2 checks step 1's update (look-ahead: its own batch; next-batch: step 2's);
    # rank 1 finds it violated, rank 0 does not. Evaluation 3 is step 2's forward (next-batch:
    # after the rollback); rank 0 finds it violated: no step anywhere. Step 3 is clean.
    violate_evaluations(setattr, {2} if rank == 1 else {3})
    trainer.lbo_step(torch.rand(8, 3, 64, 64), stats, "step 1", lambda line: None)
    after_step_1 = flat_parameters(trainer.vae)
    trainer.lbo_step(torch.rand(8, 3, 64, 64), stats, "step 2", lambda line: None)
    after_rejection = flat_parameters(trainer.vae)
    trainer.lbo_step(torch.rand(8, 3, 64, 64), stats, "step 3", lambda line: None)
    trainer.settle_pending(stats, lambda line: None)
    after_step = flat_parameters(trainer.vae)
    decision = trainer.tightener.end_epoch(1, stats.rollback_rate, trainer.goals)
    # An epoch in which one rank's second batch has a NaN pixel: every rank skips it.
    batches = [torch.rand(8, 3, 64, 64) for _ in range(3)]
    batches[1][0, 0, 0, 0] = float("nan") if rank == 1 else 0.0
    record = trainer.train_epoch(batches, 1, train.EpochStats(), 0, train.InterruptRequest())
    torch.save({"start": start, "after_step_1": after_step_1,
                "after_rejection": after_rejection, "after_step": after_step,
                "rollbacks": stats.rollbacks, "rejected": stats.rejected,
                "accepted": stats.accepted, "decision": list(decision),
                "goals": json.dumps(trainer.goals), "bad_batches": record["bad_batches"],
                "steps": record["steps"], "after_epoch": flat_parameters(trainer.vae)},
               Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown(context)


def spawn(world, *args, timeout=240):
    """Run worker on `world` processes; fail (rather than hang) if they wait on each other."""
    processes = mp.spawn(worker, args=(world, free_port(), *args), nprocs=world, join=False)
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


def test_torchrun_trains_with_two_processes_and_rank0_writes(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port", str(free_port()), str(ROOT / "train.py"), "--preset", "tiny",
         "--epochs", "2", "--output_dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("=== epoch 2/2") == 1  # one summary: rank 0's
    assert "x 2 processes (DDP)" in result.stdout
    records = (out / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 2
    assert (out / "reconstructions.png").exists()
