"""The device and the arithmetic a run uses, chosen by the hardware, and said in one start-up
line. train.py and evaluate.py both take their device from resolve_device.

bf16 autocast runs the networks where the GPU computes bf16 natively (compute capability 8.0
and up: A100, L4, H100); the goals, the measures and the guard's decisions stay float32.
Below that (Colab's free T4 is 7.5, a V100 7.0) torch may still report bf16 as supported,
by emulation: slower than float32 there. fp16, which those GPUs do compute fast, overflows
above 65,504 and needs a loss scale that skips steps on its own; the rollback guard and the
exact-update rule would then have to reckon with a second kind of refused step. So such GPUs
train in float32 (docs/running.md, "Which GPU").

TF32 is off, deliberately: it rounds the inputs of float32 matrix products and convolutions
to 10 mantissa bits, and the measures' own convolutions (SSIM's Gaussian windows, the Sobel
edges) are float32. SSIM's variances are differences of such sums, so their error would move
the pixel goal and every reported SSIM; with bf16 autocast the networks do not use TF32
anyway (bench/tf32_measures.py measures the effect).
"""
import contextlib
import dataclasses
import functools

import torch

from configs import UserError

NATIVE_BF16 = (8, 0)  # the first compute capability with bf16 tensor cores (Ampere)


@dataclasses.dataclass
class Precision:
    autocast: object  # a context-manager factory: torch.autocast(...) or nullcontext
    description: str  # the start-up line's words

    @property
    def mixed(self):
        return self.autocast is not contextlib.nullcontext


def resolve_device(name):
    """The torch device a --device setting names: "auto" is the GPU when one is visible, else
    the CPU; a CUDA device asked for without a GPU is a one-line error, not a later crash."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device = {name!r}, but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def choose_precision(amp, device):
    """bf16 autocast when `amp` is on and the device is a GPU with native bf16, else float32;
    also turns TF32 off for float32 work on CUDA (see the module's docstring)."""
    if device.type != "cuda":
        return Precision(contextlib.nullcontext, f"float32 ({device.type})")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    major, minor = torch.cuda.get_device_capability(device)
    gpu = f"{torch.cuda.get_device_name(device)}, compute capability {major}.{minor}"
    if not amp:
        return Precision(contextlib.nullcontext, f"float32, TF32 off ({gpu}; amp off)")
    if (major, minor) < NATIVE_BF16:
        return Precision(contextlib.nullcontext,
                         f"float32, TF32 off ({gpu}: no native bf16, so no autocast; "
                         "docs/running.md, 'Which GPU')")
    return Precision(functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16),
                     f"bf16 autocast for the networks, goals in float32, TF32 off ({gpu})")
