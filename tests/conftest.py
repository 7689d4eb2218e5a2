import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(2)

import configs  # noqa: E402


@pytest.fixture
def tiny_cfg(tmp_path):
    """The smallest full configuration (see configs.PRESETS['tiny']), writing under tmp_path."""
    return configs.parse_args(["--preset", "tiny", "--output_dir", str(tmp_path / "out")])
