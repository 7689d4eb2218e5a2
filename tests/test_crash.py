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


def test_sigkill_twenty_times_always_leaves_a_loadable_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--epochs", "12",
               "--output_dir", str(out)]
    rng, loadable = random.Random(0), 0
    for _ in range(20):
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        process = subprocess.Popen(command + resume, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))  # start-up (imports) takes ~3 s of this
        process.send_signal(signal.SIGKILL)
        process.wait()
        if (out / "checkpoint.pt").exists():
            state = read_checkpoint(out / "checkpoint.pt")  # raises if unreadable
            assert len(state["history"]) == state["next_epoch"] - 1 or state["next_batch"] > 0 \
                or state["history"][-1]["stop"]
            loadable += 1
    assert loadable >= 15  # most kills came after the first epoch's checkpoint
    finished = subprocess.run(command + ["--resume"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in lines]
    assert epochs == list(range(1, len(state["history"]) + 1))
    assert epochs[-1] == 12 or state["history"][-1]["stop"]
    assert (out / "final_metrics.json").exists() and (out / "reconstructions.png").exists()
