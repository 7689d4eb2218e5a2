"""The datasets a config names (CelebA, any folder of images, the procedural shapes, the
benchmarks), and the loader of one epoch's batches.

    build_datasets(cfg) -> (train, heldout, description)   # items: float32 (3, S, S) in [0, 1]
    make_loader(dataset, cfg, train, ...)                  # the batches of one epoch
    first_images(dataset, n)                               # a small fixed batch to draw
    python data.py FOLDER [--image_size 64]                # preprocess a folder once (the cache)

The kinds themselves are below: imagesets.py (the shapes, image files, the preprocessed cache),
celeba.py (CelebA's files and partition), benchmarks.py (data with known factors).
"""
import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate

import benchmarks
from celeba import CELEBA_FOLDER, celeba_number, celeba_partition
from configs import UserError
from imagesets import (BUILT_IN_SHAPES, CELEBA_CROP, IMAGE_EXTENSIONS, CachedImages, DataError,
                       ImageFiles, SparseShapes, cache_path, list_images,
                       matching_cache, preprocess_folder, read_cache)

log = logging.getLogger("data")

HELDOUT_SEED_OFFSET = 1_000_003       # the synthetic held-out set never repeats a training image


# --- datasets from the config -------------------------------------------------------------

def _synthetic(cfg):
    shapes = BUILT_IN_SHAPES[cfg.dataset]
    train = shapes(cfg.synthetic_size, cfg.image_size, seed=cfg.seed)
    heldout = shapes(cfg.heldout_size, cfg.image_size, seed=cfg.seed + HELDOUT_SEED_OFFSET)
    kind = "small shapes on black" if shapes is SparseShapes else "synthetic shapes"
    return train, heldout, (f"{kind}, {len(train)} train / {len(heldout)} held-out, "
                            f"{cfg.image_size}x{cfg.image_size}, drawn on the fly")


def _celeba_missing(folder):
    return DataError(f"CelebA is not set up at {folder}: fetch it with `python celeba_setup.py` "
                     "(add --data_dir DIR for another place), or try the pipeline on built-in "
                     "data with `python train.py --preset demo`")


def _celeba_split(root, cfg):
    """Train and held-out names by file number: the official train and test partitions."""
    folder = root / CELEBA_FOLDER
    names = list_images(folder, root) if folder.is_dir() else []
    if not names:
        raise _celeba_missing(folder)
    parts = [celeba_partition(celeba_number(n)) for n in names]
    train = [n for n, p in zip(names, parts) if p == 0]
    test = [n for n, p in zip(names, parts) if p == 2]
    if not train:
        raise DataError(f"{folder} has no image of CelebA's training partition (000001.jpg to "
                        "162770.jpg); run `python celeba_setup.py` to extract them")
    if not test:  # a partial copy: hold out the end of what there is instead
        keep = max(1, min(cfg.heldout_size, len(train) // 10))
        train, test = train[:-keep], train[-keep:]
        return names, train, test, f"no test-partition files, last {keep} held out"
    return names, train, test, "official train / test partitions"


def _folder_split(root, cfg):
    if not root.is_dir():
        raise DataError(f"data_dir {root} does not exist; point --data_dir at a folder of images")
    names = list_images(root, root)
    if not names:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}; "
                        "point --data_dir at a folder of images")
    if cfg.heldout_size >= len(names):
        raise DataError(f"{root} has {len(names)} images: heldout_size {cfg.heldout_size} leaves "
                        "none to train on; lower it, e.g. "
                        f"--heldout_size {max(1, len(names) // 10)}")
    return names, names[:-cfg.heldout_size], names[-cfg.heldout_size:], \
        f"last {cfg.heldout_size} files held out"


def _image_datasets(root, all_names, train_names, heldout_names, cfg, rebuild):
    """From the cache when it matches the folder's files, else decoding; and a note on which.
    rebuild: the command that builds the cache."""
    cache = matching_cache(root, all_names, cfg.image_size)
    if cache is not None:
        path, row, skipped = cache

        def cached(names):
            return CachedImages(path, [row[n] for n in names if n not in skipped])
        note = f"preprocessed cache {path}"
        if skipped:
            note += (f" ({len(skipped)} unreadable files left out, named in "
                     f"{path.with_suffix('.json')})")
            log.warning(f"{len(skipped)} unreadable images left out of {path}: "
                        + ", ".join(list(skipped)[:5]) + (", ..." if len(skipped) > 5 else ""))
        return cached(train_names), cached(heldout_names), note
    why = "out of date" if read_cache(root, cfg.image_size) is not None else "none yet"
    note = f"decoding images on the fly (preprocessed cache: {why}; `{rebuild}` builds it once)"
    return (ImageFiles(root, train_names, cfg.image_size),
            ImageFiles(root, heldout_names, cfg.image_size), note)


BENCHMARK_DATASETS = ("shapes3d", "mpi3d", "dsprites")  # benchmarks.py sets them up


def build_datasets(cfg):
    """(train, heldout, one-line description for the log). Items are float32 (3,S,S) in [0,1]."""
    if cfg.factors:  # a malformed factors file stops the run before it trains
        benchmarks.check_factors_file(cfg)
    if cfg.dataset in BUILT_IN_SHAPES:
        return _synthetic(cfg)
    if cfg.dataset in BENCHMARK_DATASETS:
        return benchmarks.benchmark_datasets(cfg)
    root = Path(cfg.data_dir)
    # "auto" means CelebA when it is set up; when it is not, the CelebA error says what to do.
    kind = "celeba" if cfg.dataset == "auto" else cfg.dataset
    if kind == "celeba":
        split, name, rebuild = _celeba_split, "CelebA", f"python celeba_setup.py --data_dir {root}"
    else:
        split, name, rebuild = _folder_split, "image folder", f"python data.py {root}"
    all_names, train_names, heldout_names, how = split(root, cfg)
    train, heldout, source = _image_datasets(root, all_names, train_names, heldout_names, cfg,
                                             rebuild)
    return train, heldout, (f"{name} {root}: {len(train)} train / {len(heldout)} held-out "
                            f"({how}), centre crop {CELEBA_CROP} -> {cfg.image_size}x"
                            f"{cfg.image_size}, {source}")


# --- loaders ------------------------------------------------------------------------------

class EpochBatches:
    """The shuffled batches of one epoch for one process (a DataLoader batch_sampler).

    The order depends only on (seed, epoch), so a resumed run meets exactly the batches the
    uninterrupted run would; start_batch leaves out those already trained on. Each of `world`
    processes takes an equal share, so their steps line up; incomplete batches are dropped
    (batch statistics need full batches).
    """

    def __init__(self, n, batch_size, seed, epoch, start_batch=0, shard=(0, 1)):
        rank, world = shard
        order = np.random.default_rng([seed % 2 ** 64, epoch]).permutation(n)
        mine = order[rank::world][: n // world]
        count = len(mine) // batch_size
        self.batches = mine[: count * batch_size].reshape(count, batch_size)[start_batch:]

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return (batch.tolist() for batch in self.batches)


def first_images(dataset, n):
    """The dataset's first n images (all, if it has fewer) as one (n, 3, S, S) batch."""
    return torch.stack([dataset[i] for i in range(min(n, len(dataset)))])


def _collate(batch):
    # The cache's __getitems__ hands over a batch already stacked; the rest come one by one.
    return batch if torch.is_tensor(batch) else default_collate(batch)


def make_loader(dataset, cfg, train, epoch=1, start_batch=0, shard=(0, 1)):
    """The batches of one epoch: train=True shuffled by (cfg.seed, epoch), full batches only,
    from batch start_batch on, this process's share of shard=(rank, world); train=False in
    order, the last batch kept.

    cfg.num_workers processes decode images; the preprocessed cache is read in the main
    process whatever it says, because copying rows from the memory map is several times faster
    than shipping the batch from a worker (bench/data_throughput.py). A new loader is made each
    epoch, so workers are not kept between epochs (persistent workers would never be reused).
    The loader's own generator keeps torch's global random state untouched, which an exact
    resume relies on.
    """
    world = shard[1]
    if train and len(dataset) // world < cfg.batch_size:
        per = f" per process ({world} processes)" if world > 1 else ""
        raise DataError(f"batch_size {cfg.batch_size} is larger than the "
                        f"{len(dataset) // world} training images{per}; lower --batch_size "
                        "or use more images")
    workers = 0 if isinstance(dataset, CachedImages) else cfg.num_workers
    options = {"num_workers": workers, "collate_fn": _collate,
               "pin_memory": torch.cuda.is_available(),
               "generator": torch.Generator().manual_seed(cfg.seed)}
    if not train:
        return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, **options)
    batches = EpochBatches(len(dataset), cfg.batch_size, cfg.seed, epoch, start_batch, shard)
    return DataLoader(dataset, batch_sampler=batches, **options)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Preprocess a folder of images once into "
                                     "FOLDER/preprocessed_<size>.npy, used by train.py.")
    parser.add_argument("folder")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="default: all CPU cores")
    args = parser.parse_args(argv)
    try:
        manifest = preprocess_folder(args.folder, cache_path(args.folder, args.image_size),
                                     args.image_size, workers=args.workers)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(manifest['files']) - len(manifest['skipped'])} images in "
          f"{cache_path(args.folder, args.image_size)}, {len(manifest['skipped'])} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
