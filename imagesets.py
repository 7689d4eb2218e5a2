"""The kinds of image set the datasets are made of: the procedural shapes, image files decoded
on access, and the preprocessed cache of a folder.

    load_image(path, image_size) / try_load_image(...)   # uint8 (S, S, 3), centre-cropped
    preprocess_folder(folder, cache_path(folder, size))  # decode once into a .npy (the cache)
    folder_images(root, all_names, names, cfg)           # from the cache when it matches

Images are centre-cropped to a square of at most CELEBA_CROP pixels (never padded) and resized
to image_size. Decoding JPEGs dominates an epoch, so `preprocess_folder` does it once into a
uint8 array on disk (the *cache*), used whenever it matches the folder.

Only configs is imported here: data.py, benchmarks.py and celeba_setup.py build on this module.
"""
import colorsys
import functools
import json
import logging
import math
import multiprocessing
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from tqdm import tqdm

from configs import UserError

log = logging.getLogger("data")  # one logger for the whole data pipeline, data.py's too

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")
CELEBA_CROP = 178                     # aligned CelebA images are 178 x 218: the centred face square
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
    DISCRETE_FACTORS = ("shape",)  # a class index k / 2 (see factors); the rest uniform draws
    # Each shape's order of rotational symmetry (it looks the same turned by 360 / order
    # degrees; 0: a circle looks the same at every angle, so its rotation is not in the image)
    # and the angle a rotation factor of 1 stands for (see coverage: 45 degrees, short of
    # either polygon's symmetry).
    SYMMETRY_ORDERS = (0, 4, 3)
    ROTATION_SPAN = math.pi / 4
    # The geometry in shares of the image side, each as (at factor 0, added at factor 1): the
    # radius of the circle of the shape's area (size) and the centre on each axis (x, y). The
    # widest shape, the largest triangle (circumradius 1.555 x that radius), stays in frame.
    RADIUS = (0.10, 0.10)
    CENTRE = (0.32, 0.36)

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
        values[0] = self.kind_factor(rng.integers(len(self.SHAPES)))
        return values.astype(np.float32)

    def __getitem__(self, i):
        factors = self.factors(i)
        image = torch.from_numpy(self.render(factors, self.image_size))
        return (image, torch.from_numpy(factors)) if self.return_factors else image

    @classmethod
    def kind_factor(cls, index):
        """The shape factor of the kind SHAPES[index]: index / (kinds - 1)."""
        return index / (len(cls.SHAPES) - 1)

    @classmethod
    def kind_index(cls, shape_factor):
        """The index into SHAPES that a shape factor stands for (an int, or an int array for an
        array of factors)."""
        index = np.rint(np.asarray(shape_factor) * (len(cls.SHAPES) - 1)).astype(int)
        return int(index) if index.ndim == 0 else index

    @classmethod
    def render_all(cls, factors, image_size):
        """float32 tensor (N, 3, S, S): render() of each row of the (N, 9) factors."""
        return torch.from_numpy(np.stack([cls.render(f, image_size) for f in factors]))

    @classmethod
    def coverage(cls, factors, image_size):
        """(S, S) share of each pixel inside the shape: a function of the structure factors only."""
        shape, x, y, size, rotation = (float(v) for v in factors[:5])
        s = image_size
        (r0, r_span), (c0, c_span) = cls.RADIUS, cls.CENTRE
        radius = s * (r0 + r_span * size)
        centre_x, centre_y = s * (c0 + c_span * x), s * (c0 + c_span * y)
        grid = np.arange(s, dtype=np.float32) + 0.5  # pixel centres
        dx, dy = grid[None, :] - centre_x, grid[:, None] - centre_y
        kind = cls.SHAPES[cls.kind_index(shape)]
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


class SparseShapes(SyntheticShapes):
    """The built-in shapes as a third-party set of small objects draws them: one small shape
    (1-3 % of the pixels) on a plain black background, anywhere in the frame; appearance is
    the object's colour and intensity alone (hue, brightness), with no background factor and
    no light gradient. Most pixels are black whatever the image, so a decoder that draws a
    black frame already matches most of every image."""
    APPEARANCE_FACTORS = ("hue", "brightness")
    FACTORS = SyntheticShapes.STRUCTURE_FACTORS + APPEARANCE_FACTORS
    RADIUS = (0.05, 0.05)   # area 0.8-3.1 % of the image
    CENTRE = (0.18, 0.64)   # the largest triangle (circumradius 0.156) stays in frame

    @classmethod
    def render(cls, factors, image_size):
        """float32 (3, S, S) in [0, 1]: the shape in its colour, intensity 0.3 to 1, on black."""
        hue, brightness = (float(v) for v in factors[5:])
        colour = np.array(colorsys.hsv_to_rgb(0.8 * hue, 0.75, 0.3 + 0.7 * brightness),
                          dtype=np.float32)
        cover = cls.coverage(factors, image_size).astype(np.float32)[None]
        return cover * colour[:, None, None]


# The built-in datasets (--dataset NAME), drawn on the fly with known factors.
BUILT_IN_SHAPES = {"synthetic": SyntheticShapes, "synthetic_sparse": SparseShapes}


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
    several times over when other processes hold the cores.
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


def write_atomically(path, text):
    """Replace path's content in one rename: a reader never sees it half-written."""
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
        write_atomically(manifest_path, json.dumps(manifest))
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


def matching_cache(root, all_names, image_size):
    """(cache path, row of each file, files left out as unreadable) when the folder's cache
    lists exactly its files; None when there is no cache or it is out of date."""
    manifest = read_cache(root, image_size)
    if manifest is None or sorted(manifest["files"]) != sorted(all_names):
        return None
    return (cache_path(root, image_size),
            {name: i for i, name in enumerate(manifest["files"])}, manifest["skipped"])


def folder_images(root, all_names, names, cfg):
    """(dataset, kept names) of the named images of a folder, in order: from the cache when it
    matches the folder (files it could not read are left out), else decoded on access."""
    cache = matching_cache(Path(root), all_names, cfg.image_size)
    if cache is None:
        return ImageFiles(root, names, cfg.image_size), list(names)
    path, row, skipped = cache
    kept = [n for n in names if n not in skipped]
    return CachedImages(path, [row[n] for n in kept]), kept
