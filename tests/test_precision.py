"""The arithmetic chosen by the hardware: bf16 autocast only where the GPU computes bf16
natively, float32 elsewhere, TF32 off, and a start-up line that says which."""
import contextlib

import pytest
import torch

from precision import choose_precision

GPUS = {"Tesla T4": (7, 5), "Tesla V100-SXM2-16GB": (7, 0), "NVIDIA A100-SXM4-40GB": (8, 0),
        "NVIDIA L4": (8, 9)}


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device as torch.cuda would describe it; TF32 flags restored afterwards."""
    def use(name):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: GPUS[name])
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        # torch.cuda.is_bf16_supported() may say yes on a T4 (emulation): never asked.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        return torch.device("cuda")
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield use
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@pytest.mark.parametrize("name, bf16", [("Tesla T4", False), ("Tesla V100-SXM2-16GB", False),
                                        ("NVIDIA A100-SXM4-40GB", True), ("NVIDIA L4", True)])
def test_bf16_autocast_only_where_the_gpu_has_it_natively(fake_gpu, name, bf16):
    chosen = choose_precision(True, fake_gpu(name))
    assert chosen.mixed == bf16
    if bf16:
        with chosen.autocast():
            assert torch.get_autocast_dtype("cuda") == torch.bfloat16
        assert chosen.description.startswith("bf16 autocast")
    else:
        assert chosen.autocast is contextlib.nullcontext
        assert chosen.description.startswith("float32") and "no native bf16" in chosen.description
    assert name in chosen.description and "TF32 off" in chosen.description
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_amp_off_and_the_cpu_run_float32(fake_gpu):
    assert not choose_precision(False, fake_gpu("NVIDIA L4")).mixed
    cpu = choose_precision(True, torch.device("cpu"))
    assert not cpu.mixed and cpu.description == "float32 (cpu)"


def test_the_start_up_lines_say_the_precision(tmp_path, capsys):
    import train
    assert train.main(["--preset", "tiny", "--epochs", "1", "--output_dir", str(tmp_path)]) == 0
    assert "\nprecision: float32 (cpu)\n" in capsys.readouterr().out


def test_the_tf32_emulation_keeps_ten_mantissa_bits_rounding_to_nearest_even():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from tf32_measures import to_tf32
    step = 2.0 ** -10  # TF32's spacing just above 1
    values = torch.tensor([1.0, 1 + step, 1 + step / 4, 1 + 3 * step / 4, 1 + step / 2,
                           1 + 3 * step / 2, -2.5, 0.0])
    assert to_tf32(values).tolist() == [1.0, 1 + step, 1.0, 1 + step, 1.0, 1 + 2 * step,
                                        -2.5, 0.0]
