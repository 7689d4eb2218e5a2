"""Images per second that make_loader delivers: decoding JPEGs vs the preprocessed cache.

    python bench/data_throughput.py [--images 3000] [--repeats 10] [--batch 256]

Writes a folder of CelebA-sized (178x218) JPEGs (procedural shapes upscaled, plus noise,
quality 90) to a temporary folder and times one training epoch through make_loader on the
JPEG path and, after preprocess_folder, on the cache path, with Config's default num_workers
and with 0. The epoch goes over the files `repeats` times, so that worker start-up weighs
what it weighs in a CelebA epoch (162,770 images) rather than in a 3,000-image one. Every
file is read once beforehand, so both paths start from the page cache (the disk is not what
is measured). Prints and writes bench/results/data_throughput_cpu.{md,json}.
"""
import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import configs  # noqa: E402
import data  # noqa: E402
import imagesets  # noqa: E402
from machine import cpu_machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def write_jpegs(folder, count):
    """CelebA-sized JPEGs with edges, gradients and sensor-like noise."""
    shapes, rng = imagesets.SyntheticShapes(count, 218, seed=7), np.random.default_rng(7)
    for i in range(count):
        pixels = shapes[i].numpy().transpose(1, 2, 0)[:, 20:198]  # 218 high, 178 wide
        pixels = pixels + rng.normal(0, 0.03, pixels.shape)
        Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(
            folder / f"{i + 1:06d}.jpg", quality=90)


def warm_page_cache(folder):
    for path in folder.iterdir():
        path.read_bytes()


def images_per_second(dataset, cfg):
    """One whole epoch through make_loader, worker start-up included."""
    images, started = 0, time.perf_counter()
    for batch in data.make_loader(dataset, cfg, train=True):
        images += len(batch)
    return images / (time.perf_counter() - started)


def repeated(dataset, times):
    """The same dataset type over its files `times` over."""
    if isinstance(dataset, data.CachedImages):
        return data.CachedImages(dataset.array_path, np.tile(dataset.rows, times))
    return data.ImageFiles(dataset.root, dataset.names * times, dataset.image_size)


def measure(folder, args):
    load_before = os.getloadavg()[0]  # other work on the machine would lower every rate
    default_workers = configs.Config().num_workers
    cfg = configs.Config(dataset="folder", data_dir=str(folder), batch_size=args.batch,
                         heldout_size=args.batch // 2)
    jpeg_train, _, jpeg_description = data.build_datasets(cfg)
    started = time.perf_counter()
    data.preprocess_folder(folder, data.cache_path(folder, cfg.image_size), cfg.image_size)
    preprocess_seconds = time.perf_counter() - started
    cache_train, _, cache_description = data.build_datasets(cfg)
    assert isinstance(jpeg_train, data.ImageFiles), jpeg_description
    assert isinstance(cache_train, data.CachedImages), cache_description
    rates = {}
    for workers in (default_workers, 0):
        cfg.num_workers = workers
        for path, dataset in (("jpeg", jpeg_train), ("cache", cache_train)):
            dataset = repeated(dataset, args.repeats)
            rates[f"{path}_workers_{workers}"] = images_per_second(dataset, cfg)
            print(f"{path:5s} num_workers={workers}: "
                  f"{rates[f'{path}_workers_{workers}']:9.0f} images/s", flush=True)
    return {
        "machine": cpu_machine(),
        "command": " ".join(["python bench/data_throughput.py", shlex.join(sys.argv[1:])]).strip(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "images": args.images, "image": "178x218 JPEG quality 90 -> 64x64",
        "train_files": len(jpeg_train), "repeats": args.repeats,
        "epoch_images": len(jpeg_train) * args.repeats,
        "batch": args.batch, "default_num_workers": default_workers,
        "preprocess_seconds": preprocess_seconds,
        "images_per_second": rates,
        "ratio_cache_over_jpeg": {f"workers_{w}": rates[f"cache_workers_{w}"]
                                  / rates[f"jpeg_workers_{w}"] for w in (default_workers, 0)},
    }


def markdown(r):
    rates, w = r["images_per_second"], r["default_num_workers"]
    rows = "\n".join(f"| {workers} | {rates[f'jpeg_workers_{workers}']:,.0f} | "
                     f"{rates[f'cache_workers_{workers}']:,.0f} | "
                     f"{r['ratio_cache_over_jpeg'][f'workers_{workers}']:.1f}x |"
                     for workers in (w, 0))
    return f"""# Data throughput (CPU)

Images per second that `make_loader` delivers in training mode: decoding JPEGs vs reading the
preprocessed cache (`preprocess_folder`: a memory-mapped uint8 array).

- data: {r['images']:,} files, {r['image']}; one epoch of {r['epoch_images']:,} images
  (the {r['train_files']:,} training files {r['repeats']} times over), batch {r['batch']},
  worker start-up included; every file in the page cache for both paths
- the cache is read in the main process whatever num_workers says (shipping a worker's
  float32 batch costs more than copying the rows), so both cache cells time the same path
- machine: {r['machine']}
- command: `{r['command']}`
- date: {r['date']}, torch {r['torch']}
- 1-minute load average before / after: {r['load_average_before_after'][0]} / \
{r['load_average_before_after'][1]} (the run itself adds up to about 2)
- one-off preprocessing of the {r['images']:,} files: {r['preprocess_seconds']:.1f} s

| num_workers | JPEG decode (img/s) | preprocessed cache (img/s) | cache / JPEG |
|---|---|---|---|
{rows}

Target: the preprocessed path at least 10x the JPEG path.
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10,
                        help="times the epoch goes over the files (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"writing {args.images} JPEGs to {folder}", flush=True)
        write_jpegs(folder, args.images)
        warm_page_cache(folder)
        result = measure(folder, args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data_throughput_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "data_throughput_cpu.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
