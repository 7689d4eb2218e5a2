"""Where and at which commit a result was measured: the two lines every results file states.

study.py and the scripts in bench/ and lab/experiments/ import these, so that a report names
its machine and commit the same way wherever it is written.
"""
import os
import platform
import subprocess
from pathlib import Path


def short_commit():
    """The repository's HEAD commit, abbreviated, for a results file."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                          capture_output=True, text=True).stdout.strip()


def cpu_machine():
    """This machine for a results file: CPU model, core count, OS."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"
