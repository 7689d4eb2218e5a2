"""What TF32 would do to the measures: SSIM, the pixel goal and the edge goal, computed with
the float32 convolutions they use and with those convolutions' inputs rounded as TF32 rounds
them (10 mantissa bits, to nearest even; sums kept in float32), on a CPU.

    python bench/tf32_measures.py

On an Ampere or later GPU, cuDNN runs float32 convolutions in TF32 unless
torch.backends.cudnn.allow_tf32 is off; the measures' convolutions (SSIM's Gaussian windows,
the Sobel edges) are float32 whatever autocast does to the networks. The images are the
built-in shapes at 64x64 against two stand-ins for reconstructions: a noisy one (a 3x3 blur
plus noise) and a smooth one (a 9x9 blur). Prints and writes bench/results/tf32_measures_cpu.md
and .json. bench/gpu_check.sh compares the measures on a real GPU with the CPU's.
"""
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import losses  # noqa: E402
from imagesets import SyntheticShapes  # noqa: E402
from machine import cpu_machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def to_tf32(t):
    """float32 rounded to TF32's 10 mantissa bits (round to nearest, ties to even)."""
    bits = t.contiguous().view(torch.int32)
    bias = 0xFFF + ((bits >> 13) & 1)
    return ((bits + bias) & ~0x1FFF).view(torch.float32)


def tf32_conv2d(conv):
    def rounded(input, weight, *args, **kwargs):
        return conv(to_tf32(input), to_tf32(weight), *args, **kwargs)
    return rounded


def measures(x, recon):
    ssim = losses.ssim_per_image(recon, x)
    mse = (recon - x).pow(2).flatten(1).mean(1)
    edge = (losses.edges(recon) - losses.edges(x)).pow(2).flatten(1).mean(1)
    return {"ssim": ssim, "pixel": mse + losses.PIXEL_SSIM_WEIGHT * (1 - ssim), "edge": edge}


def blur(x, size):
    return F.avg_pool2d(F.pad(x, [size // 2] * 4, mode="replicate"), size, stride=1)


def main():
    shapes = SyntheticShapes(256, 64, seed=11)
    x = torch.stack([shapes[i] for i in range(len(shapes))])
    noise = torch.Generator().manual_seed(0)
    stand_ins = {"noisy (3x3 blur, noise sd 0.02)":
                 (blur(x, 3) + 0.02 * torch.randn(x.shape, generator=noise)).clamp(0, 1),
                 "smooth (9x9 blur)": blur(x, 9)}
    rows, result = [], {"machine": cpu_machine(), "command": "python bench/tf32_measures.py",
                        "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
                        "images": len(x), "size": 64, "cases": {}}
    for name, recon in stand_ins.items():
        exact = measures(x, recon)
        real_conv = F.conv2d
        losses.F.conv2d = tf32_conv2d(real_conv)
        try:
            rounded = measures(x, recon)
        finally:
            losses.F.conv2d = real_conv
        case = {}
        for key in exact:
            e, r = exact[key], rounded[key]
            case[key] = {"batch_mean": e.mean().item(), "batch_mean_tf32": r.mean().item(),
                         "batch_mean_change": (r.mean() - e.mean()).item(),
                         "largest_change_one_image": (r - e).abs().max().item(),
                         "largest_relative_change_one_image":
                             ((r - e).abs() / e.abs().clamp_min(1e-12)).max().item()}
            rows.append(f"| {name} | {key} | {e.mean().item():.6g} | {r.mean().item():.6g} | "
                        f"{(r.mean() - e.mean()).item():+.2e} | {(r - e).abs().max().item():.2e} "
                        f"| {case[key]['largest_relative_change_one_image']:.2e} |")
        result["cases"][name] = case
    text = "\n".join([
        "# The measures under TF32 (emulated on a CPU)", "",
        f"`{result['command']}` on {result['machine']}, torch {result['torch']}, "
        f"{result['date']}: {len(x)} built-in shapes at 64x64; the convolutions' inputs "
        "rounded to TF32 (10 mantissa bits), sums in float32.", "",
        "| reconstruction | measure | float32 | TF32 | change of the batch mean | largest change, "
        "one image | largest relative change, one image |",
        "|---|---|---|---|---|---|---|", *rows, ""])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tf32_measures_cpu.md").write_text(text)
    (RESULTS / "tf32_measures_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
