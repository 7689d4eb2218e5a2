"""SIGKILL at random moments, checkpoint writes included, never loses the run."""
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parent.parent
KILLS = 20
PROGRESS_DEADLINE_S = 180  # generous: a loaded machine starts and trains slowly, never this slowly
MAX_DELAY_S = 5.0  # bounds the test's time where an epoch is slow; kills then land mid-epoch


def mtime(path):
    return path.stat().st_mtime_ns if path.exists() else None


def wait_for(condition, process, what):
    """Poll until condition() holds; False when the process exited first (a finished run)."""
    deadline = time.monotonic() + PROGRESS_DEADLINE_S
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"no {what} within {PROGRESS_DEADLINE_S} s"
        time.sleep(0.02)
    return True


def test_sigkill_twenty_times_always_leaves_a_loadable_checkpoint_that_resumes(tmp_path):
    """The kills are timed by the run's progress, not the wall clock, so that a slow or loaded
    machine tests the same thing: the first kill comes after the first checkpoint exists, each
    later one after the process has loaded the checkpoint (it rewrites metrics.jsonl then), at
    a random delay of up to 1.5 epochs (the first epoch's duration, measured; at most
    MAX_DELAY_S): mid-epoch, during a checkpoint write, or during the final evaluation."""
    out = tmp_path / "run"
    checkpoint, metrics = out / "checkpoint.pt", out / "metrics.jsonl"
    command = [sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--epochs", "12",
               "--output_dir", str(out)]
    rng, epoch_s = random.Random(0), None
    for _ in range(KILLS):
        resume = ["--resume"] if checkpoint.exists() else []
        before = mtime(metrics)
        process = subprocess.Popen(command + resume, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        running = wait_for(lambda then=before: mtime(metrics) != then, process, "start")
        if epoch_s is None:  # the first process: from its start of training to its checkpoint
            started = time.monotonic()
            running = wait_for(checkpoint.exists, process, "first checkpoint")
            epoch_s = time.monotonic() - started
        if running:
            time.sleep(rng.uniform(0, min(1.5 * epoch_s, MAX_DELAY_S)))
            process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode in (0, -signal.SIGKILL), process.returncode
        # Every kill, whenever it came, leaves a checkpoint that loads (raises otherwise).
        state = read_checkpoint(checkpoint)
        assert len(state["history"]) == state["next_epoch"] - 1 or state["next_batch"] > 0 \
            or state["history"][-1]["stop"]
    finished = subprocess.run(command + ["--resume"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    state = torch.load(checkpoint, weights_only=True)
    lines = metrics.read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in lines]
    assert epochs == list(range(1, len(state["history"]) + 1))
    assert epochs[-1] == 12 or state["history"][-1]["stop"]
    assert (out / "final_metrics.json").exists() and (out / "reconstructions.png").exists()
