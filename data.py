"""Datasets: CelebA, any folder of images, and a procedural one whose factors are known.

    build_datasets(cfg) -> (train, heldout, description)   # items: float32 (3, S, S) in [0, 1]
    make_loader(dataset, cfg, train, ...)                  # the batches of one epoch
    python data.py FOLDER [--image_size 64]                # preprocess a folder once (the cache)

Images are centre-cropped to a square of at most CELEBA_CROP pixels (never padded) and resized
to image_size. Decoding JPEGs dominates an epoch, so `preprocess_folder` does it once into a
uint8 array on disk (the *cache*); build_datasets uses it whenever it matches the folder.
"""
import argparse
import colorsys
import functools
import json
import logging
import math
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate
from tqdm import tqdm

from configs import UserError

log = logging.getLogger("data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")
CELEBA_FOLDER = "img_align_celeba"
CELEBA_CROP = 178                     # aligned CelebA images are 178 x 218: the centred face square
CELEBA_TRAIN = range(1, 162_771)      # the official partition, by file number
CELEBA_VAL = range(162_771, 182_638)
CELEBA_TEST = range(182_638, 202_600)
HELDOUT_SEED_OFFSET = 1_000_003       # the synthetic held-out set never repeats a training image
CACHE_FORMAT = 1


class DataError(UserError):
    pass


# --- the procedural dataset ---------------------------------------------------------------

class SyntheticShapes(Dataset):
    """A filled shape on a background, drawn on the fly from 9 factors in [0, 1].

    Structure (where the edges are): shape, x, y, size, rotation. Appearance (colours only):
    object hue and brightness, background hue and brightness. The object is always brighter
    than the background, so the shape stays visible whatever the appearance. Each factor maps
    one-to-one onto the picture (hues stop short of the colour wheel's wrap-around, rotations
    short of the shapes' symmetry), so a probe can recover it. Deterministic per (seed, i).
    """
    STRUCTURE_FACTORS = ("shape", "x", "y", "size", "rotation")
    APPEARANCE_FACTORS = ("hue", "brightness", "bg_hue", "bg_brightness")
    FACTORS = STRUCTURE_FACTORS + APPEARANCE_FACTORS
    SHAPES = ("circle", "square", "triangle")

    def __init__(self, n: int, image_size: int = 64, seed: int = 0, return_factors: bool = False):
        self.n, self.image_size, self.seed = n, image_size, seed
        self.return_factors = return_factors

    def __len__(self):
        return self.n

    def factors(self, i):
        """The 9 factors of image i, float32, in FACTORS order."""
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} images")
        rng = np.random.default_rng([self.seed % 2 ** 64, i])
        values = rng.random(len(self.FACTORS))
        values[0] = rng.integers(len(self.SHAPES)) / (len(self.SHAPES) - 1)
        return values.astype(np.float32)

    def __getitem__(self, i):
        factors = self.factors(i)
        image = torch.from_numpy(self.render(factors, self.image_size))
        return (image, torch.from_numpy(factors)) if self.return_factors else image

    @classmethod
    def coverage(cls, factors, image_size):
        """(S, S) share of each pixel inside the shape: a function of the structure factors only."""
        shape, x, y, size, rotation = (float(v) for v in factors[:5])
        s = image_size
        radius = s * (0.10 + 0.10 * size)
        centre_x, centre_y = s * (0.32 + 0.36 * x), s * (0.32 + 0.36 * y)
        grid = np.arange(s, dtype=np.float32) + 0.5  # pixel centres
        dx, dy = grid[None, :] - centre_x, grid[:, None] - centre_y
        kind = cls.SHAPES[round(shape * (len(cls.SHAPES) - 1))]
        if kind == "circle":
            distance = np.sqrt(dx * dx + dy * dy) - radius
        else:  # regular polygons of the circle's area; 45 degrees stays short of either symmetry
            sides, apothem_per_radius, first_normal = (
                (4, math.sqrt(math.pi) / 2, 0.0) if kind == "square"
                else (3, math.sqrt(math.pi / (3 * math.sqrt(3))), math.pi / 2))
            angles = first_normal + rotation * math.pi / 4 + 2 * math.pi * np.arange(sides) / sides
            normals = np.stack([np.cos(angles), np.sin(angles)]).astype(np.float32)
            distance = (dx[None] * normals[0][:, None, None] + dy[None] * normals[1][:, None, None]
                        ).max(0) - apothem_per_radius * radius
        # A logistic step over about one pixel: anti-aliased edges, exactly 0.5 on the outline.
        return 1.0 / (1.0 + np.exp(np.clip(distance / 0.3, -50, 50)))

    @classmethod
    def render(cls, factors, image_size):
        """float32 (3, S, S) in [0, 1]."""
        hue, brightness, bg_hue, bg_brightness = (float(v) for v in factors[5:])
        colour = np.array(colorsys.hsv_to_rgb(0.8 * hue, 0.75, 0.6 + 0.4 * brightness),
                          dtype=np.float32)
        background = np.array(colorsys.hsv_to_rgb(0.8 * bg_hue, 0.35, 0.08 + 0.3 * bg_brightness),
                              dtype=np.float32)
        # A soft top-to-bottom light gradient, fixed, so it adds no hidden factor.
        shade = np.linspace(0.8, 1.2, image_size, dtype=np.float32)
        back = background[:, None, None] * shade[None, :, None]
        cover = cls.coverage(factors, image_size).astype(np.float32)[None]
        return back + cover * (colour[:, None, None] - back)


# --- decoding one image -------------------------------------------------------------------

def _as_rgb(img):
    """Any PIL mode as 8-bit RGB: transparency over white, 16-bit scaled rather than clipped."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        # PIL would clip 16-bit grey at 255 (a white picture); 8-bit data in an "I" image stays.
        if img.mode.startswith("I;16") or values.max() > 255:
            values = values / 257.0
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, RGB


def crop_and_resize(img, image_size, crop=CELEBA_CROP):
    """Centre square of side min(crop, width, height), resized (antialiased) to image_size.

    Only what the image has is cropped: a small image is never padded with black.
    """
    width, height = img.size
    side = min(crop, width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop first: resize(box=...) would let the filter reach pixels outside the square.
    square = img.crop((left, top, left + side, top + side))
    return square.resize((image_size, image_size), Image.Resampling.BILINEAR)


def load_image(path, image_size, crop=CELEBA_CROP):
    """uint8 (S, S, 3). Raises on a file that cannot be decoded."""
    with Image.open(path) as img:
        ImageOps.exif_transpose(img, in_place=True)  # phone photos store their rotation in EXIF
        rgb = _as_rgb(img)
    return np.asarray(crop_and_resize(rgb, image_size, crop), dtype=np.uint8)


def try_load_image(path, image_size, crop=CELEBA_CROP):
    """(pixels, None), or (None, reason) for a file that cannot be decoded."""
    try:
        return load_image(path, image_size, crop), None
    # Decoders fed broken bytes raise all kinds (OSError, SyntaxError, ValueError, struct.error..).
    except Exception as err:  # noqa: BLE001
        return None, f"{type(err).__name__}: {err}"


def to_tensor(pixels):
    """uint8 (..., S, S, 3) -> float32 (..., 3, S, S) in [0, 1].

    In numpy, on one thread: torch's thread pool gains nothing on so small a job and loses
    ten times over when other processes hold the cores (measured: 1.5 vs 15 ms a batch).
    """
    channels_first = np.moveaxis(pixels, -1, -3)
    out = np.empty(channels_first.shape, np.float32)
    np.divide(channels_first, np.float32(255), out=out)
    return torch.from_numpy(out)


# --- files and folders --------------------------------------------------------------------

def list_images(folder, root):
    """Sorted names, relative to root, of the image files under folder (recursively).

    Hidden files and folders are left out: Jupyter's .ipynb_checkpoints, macOS's ._ files and
    __MACOSX folders hold no images of the set.
    """
    names = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        rel = os.path.relpath(parent, root)
        for f in files:
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                names.append(Path(rel, f).as_posix() if rel != "." else f)
    return sorted(names)


def celeba_number(name):
    """000123.jpg -> 123; None for a name that is not a CelebA file number."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else None


def celeba_partition(number):
    """0 train, 1 validation, 2 test (list_eval_partition.txt), None outside CelebA's range."""
    for code, part in enumerate((CELEBA_TRAIN, CELEBA_VAL, CELEBA_TEST)):
        if number in part:
            return code
    return None


class ImageFiles(Dataset):
    """Images decoded from files on every access (the path without a cache).

    A file that cannot be decoded never stops an epoch: it is recorded in `skipped` (name ->
    reason), named in a warning of the "data" logger the first time this process meets it, and
    the next readable image is returned in its place. DataLoader workers are new processes
    each epoch, so with workers a bad file is named once per epoch.
    """

    def __init__(self, root, names, image_size, crop=CELEBA_CROP):
        self.root, self.names = Path(root), list(names)
        self.image_size, self.crop = image_size, crop
        self.skipped = {}

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        for j in range(i, i + len(self)):  # at most once round the whole set
            name = self.names[j % len(self)]
            if name in self.skipped:
                continue
            pixels, reason = try_load_image(self.root / name, self.image_size, self.crop)
            if pixels is not None:
                return to_tensor(pixels)
            self.skipped[name] = reason
            log.warning(f"skipped unreadable image {self.root / name} ({reason}); "
                        f"{len(self.skipped)} skipped so far")
        raise DataError(f"none of the {len(self)} images under {self.root} can be read "
                        f"(e.g. {self.names[0]}: {self.skipped[self.names[0]]}); "
                        "check the files or point --data_dir elsewhere")


# --- the preprocessed cache ---------------------------------------------------------------

def cache_path(root, image_size):
    """The cache of the images under `root`; its manifest is the same name with .json."""
    return Path(root) / f"preprocessed_{image_size}.npy"


def _write_atomically(path, text):
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _decode_all(paths, image_size, crop, workers):
    """(pixels or None, reason) per path, in order, on `workers` processes."""
    load = functools.partial(try_load_image, image_size=image_size, crop=crop)
    if workers <= 1:
        yield from map(load, paths)
        return
    with multiprocessing.Pool(workers) as pool:
        yield from pool.imap(load, paths, chunksize=64)


def _fill_cache(path, root, names, image_size, crop, workers):
    """Write the .npy at path; returns {name: reason} of the files that could not be read."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                      shape=(len(names), image_size, image_size, 3))
    skipped = {}
    results = _decode_all([root / n for n in names], image_size, crop, workers)
    bar = tqdm(results, total=len(names), unit="img",
               desc=f"preprocess {image_size}x{image_size}")
    for row, (pixels, reason) in enumerate(bar):
        if pixels is None:
            skipped[names[row]] = reason  # its row stays zero and is never used
        else:
            array[row] = pixels
    array.flush()
    return skipped


def preprocess_folder(source, out_path, image_size=64, crop=CELEBA_CROP, workers=None):
    """Decode, crop and resize every image once into a uint8 (N, S, S, 3) .npy at out_path.

    source: a folder (scanned recursively) or a list of image paths. Alongside, out_path with
    .json (the manifest) names the files, relative to out_path's folder, row by row, and the
    unreadable ones. The manifest is removed first and written last, and the array goes through
    a temporary file, so an interrupted run leaves no cache that would be used. workers: decoding
    processes (default: every CPU core). Returns the manifest.
    """
    out_path = Path(out_path)
    root = out_path.parent
    if isinstance(source, (str, os.PathLike)):
        names = list_images(source, root)
    else:
        names = [Path(os.path.relpath(p, root)).as_posix() for p in source]
    if not names:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {source}; "
                        "point at a folder of images")
    manifest_path = out_path.with_suffix(".json")
    tmp = out_path.with_name(f"{out_path.name}.tmp-{os.getpid()}")
    try:
        manifest_path.unlink(missing_ok=True)
        for stale in root.glob(f"{out_path.name}.tmp-*"):  # left by a run that was killed
            stale.unlink()
        skipped = _fill_cache(tmp, root, names, image_size, crop, workers or os.cpu_count() or 1)
        os.replace(tmp, out_path)
        manifest = {"format": CACHE_FORMAT, "image_size": image_size, "crop": crop,
                    "array": out_path.name, "files": names, "skipped": skipped}
        _write_atomically(manifest_path, json.dumps(manifest))
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write the cache {out_path} ({err.strerror or err}); free some "
                        "disk space or make the folder writable, then run again") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for name, reason in skipped.items():
        log.warning(f"skipped unreadable image {root / name} ({reason})")
    return manifest


def read_cache(root, image_size, crop=CELEBA_CROP):
    """The manifest of root's complete cache for this image size and crop, else None."""
    path = cache_path(root, image_size)
    try:
        manifest = json.loads(path.with_suffix(".json").read_text())
        shape = np.load(path, mmap_mode="r").shape
    except (OSError, ValueError):
        return None
    matches = isinstance(manifest, dict) and (
        manifest.get("format"), manifest.get("image_size"), manifest.get("crop")) == \
        (CACHE_FORMAT, image_size, crop)
    complete = matches and shape == (len(manifest["files"]), image_size, image_size, 3)
    return manifest if complete else None


class CachedImages(Dataset):
    """Rows of a preprocessed cache, memory-mapped (no decoding, no copy of the whole file).

    The file is opened lazily in each process: a pickled dataset (spawned workers) carries
    only the path, never the mapped gigabytes.
    """

    def __init__(self, array_path, rows):
        self.array_path, self.rows = Path(array_path), np.asarray(rows, dtype=np.int64)
        self._array = None

    def __len__(self):
        return len(self.rows)

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    @property
    def array(self):
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r")
        return self._array

    def __getitem__(self, i):
        return to_tensor(self.array[self.rows[i]])

    def __getitems__(self, indices):
        """A whole batch in one read and one conversion (the DataLoader calls this)."""
        return to_tensor(self.array[self.rows[indices]])


# --- datasets from the config -------------------------------------------------------------

def _synthetic(cfg):
    train = SyntheticShapes(cfg.synthetic_size, cfg.image_size, seed=cfg.seed)
    heldout = SyntheticShapes(cfg.heldout_size, cfg.image_size, seed=cfg.seed + HELDOUT_SEED_OFFSET)
    return train, heldout, (f"synthetic shapes, {len(train)} train / {len(heldout)} held-out, "
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


def _matching_cache(root, all_names, image_size):
    """(cache path, row of each file, files left out as unreadable) when the folder's cache
    lists exactly its files; None when there is no cache or it is out of date."""
    manifest = read_cache(root, image_size)
    if manifest is None or sorted(manifest["files"]) != sorted(all_names):
        return None
    return (cache_path(root, image_size),
            {name: i for i, name in enumerate(manifest["files"])}, manifest["skipped"])


def _image_datasets(root, all_names, train_names, heldout_names, cfg, rebuild):
    """From the cache when it matches the folder's files, else decoding; and a note on which.
    rebuild: the command that builds the cache."""
    cache = _matching_cache(root, all_names, cfg.image_size)
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


def folder_images(root, all_names, names, cfg):
    """(dataset, kept names) of the named images of a folder, in order: from the cache when it
    matches the folder (files it could not read are left out), else decoded on access."""
    cache = _matching_cache(Path(root), all_names, cfg.image_size)
    if cache is None:
        return ImageFiles(root, names, cfg.image_size), list(names)
    path, row, skipped = cache
    kept = [n for n in names if n not in skipped]
    return CachedImages(path, [row[n] for n in kept]), kept


BENCHMARK_DATASETS = ("shapes3d", "mpi3d", "dsprites")  # benchmarks.py sets them up


def build_datasets(cfg):
    """(train, heldout, one-line description for the log). Items are float32 (3,S,S) in [0,1]."""
    if cfg.factors:  # a malformed factors file stops the run before it trains
        import benchmarks  # here, not at the top: benchmarks.py builds on this module
        benchmarks.check_factors_file(cfg)
    if cfg.dataset == "synthetic":
        return _synthetic(cfg)
    if cfg.dataset in BENCHMARK_DATASETS:
        import benchmarks
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
