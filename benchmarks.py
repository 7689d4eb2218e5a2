"""Data with known generating factors: 3D Shapes, MPI3D, dSprites, and any image folder that a
CSV file labels. Every factor is marked *structure* or *appearance* (FACTOR_KINDS below), so
every report knows what core and detail should carry.

    python benchmarks.py shapes3d [--file PATH] [--data_dir DIR] [--download]
    python benchmarks.py mpi3d --file PATH/mpi3d_toy.npz     # or _realistic, _real
    python benchmarks.py dsprites
    python train.py --dataset shapes3d                        # data/shapes3d by default
    python train.py --dataset folder --data_dir DIR --factors DIR/factors.csv

The set-up checks the file (format, shapes, the factor grid; size and MD5 where they are
known) and converts it once into DIR/images.npy (uint8 (N, 64, 64, C), memory-mapped in
training like an image folder's cache), DIR/factors.npy (float32 (N, K): each image's factor
class indices) and DIR/benchmark.json (names, kinds, grid, values), written last, so a
conversion cut short never leaves a cache that would be used. A second run only verifies.

The images stay 64x64 on disk; a run with another image_size resizes batches as they are read
(antialiased bilinear).
"""
import argparse
import csv
import dataclasses
import json
import math
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import imagesets
from configs import Config, UserError
from download import SourceFailed, download, md5_of
from imagesets import BUILT_IN_SHAPES, DataError, SparseShapes

STRUCTURE, APPEARANCE = "structure", "appearance"
KINDS = (STRUCTURE, APPEARANCE)

# The one table of what each factor is. Hues and colours are appearance; scale, shape,
# orientation, position and camera geometry are structure. Order: the files' factor order.
FACTOR_KINDS = {
    "shapes3d": (("floor_hue", APPEARANCE), ("wall_hue", APPEARANCE),
                 ("object_hue", APPEARANCE), ("scale", STRUCTURE), ("shape", STRUCTURE),
                 ("orientation", STRUCTURE)),
    "mpi3d": (("object_color", APPEARANCE), ("object_shape", STRUCTURE),
              ("object_size", STRUCTURE), ("camera_height", STRUCTURE),
              ("background_color", APPEARANCE), ("horizontal_axis", STRUCTURE),
              ("vertical_axis", STRUCTURE)),
    # dSprites is white on black: its one colour value is no factor, so it has structure
    # factors only. It tests whether core carries structure, not whether detail carries
    # appearance.
    "dsprites": (("shape", STRUCTURE), ("scale", STRUCTURE), ("orientation", STRUCTURE),
                 ("x", STRUCTURE), ("y", STRUCTURE)),
    **{name: tuple((factor, STRUCTURE) for factor in shapes.STRUCTURE_FACTORS)
       + tuple((factor, APPEARANCE) for factor in shapes.APPEARANCE_FACTORS)
       for name, shapes in BUILT_IN_SHAPES.items()},
}

# CelebA's 40 attributes, grouped the same way (docs/benchmarks.md). Colour, skin tone and
# make-up are appearance; expression, the shape of face parts, hair shape and the hairline are
# structure; the rest mixes both (facial hair and accessories have a shape and a colour) or is
# a judgement of the whole face, and is reported without a claim.
MIXED = "mixed"
CELEBA_ATTRIBUTE_KINDS = {
    **dict.fromkeys(("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Pale_Skin",
                     "Heavy_Makeup", "Wearing_Lipstick", "Rosy_Cheeks", "5_o_Clock_Shadow",
                     "Blurry"), APPEARANCE),
    **dict.fromkeys(("Smiling", "Mouth_Slightly_Open", "Narrow_Eyes", "Big_Lips", "Big_Nose",
                     "Pointy_Nose", "Oval_Face", "Chubby", "Double_Chin", "High_Cheekbones",
                     "Arched_Eyebrows", "Bushy_Eyebrows", "Bald", "Bangs",
                     "Receding_Hairline", "Straight_Hair", "Wavy_Hair"), STRUCTURE),
    **dict.fromkeys(("Attractive", "Bags_Under_Eyes", "Eyeglasses", "Goatee", "Male",
                     "Mustache", "No_Beard", "Sideburns", "Wearing_Earrings", "Wearing_Hat",
                     "Wearing_Necklace", "Wearing_Necktie", "Young"), MIXED),
}
# The aligned landmarks: positions, so structure.
CELEBA_LANDMARKS = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")

NATIVE_SIZE = 64
CACHE_FORMAT = 1
MANIFEST, IMAGES, FACTORS = "benchmark.json", "images.npy", "factors.npy"
HELDOUT_SEED = 20_250_101    # the held-out images of a benchmark: the same for every run
CHUNK_ROWS = 4096
EXIT_OK, EXIT_NO_FILE, EXIT_BAD_FILE, EXIT_DISK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One published file and how to read it. file_sizes: the factor grid of the file's rows
    (row-major, the last factor fastest); columns: which of the file's factors are kept (the
    names and kinds of FACTOR_KINDS, in order)."""
    name: str
    title: str
    files: tuple            # accepted file names (MPI3D: its three variants)
    urls: dict              # file name -> download URL, as the authors publish it
    page: str
    file_sizes: tuple
    columns: tuple
    reader: str             # "h5" | "npz"
    image_key: str
    channels: int
    # file name -> (bytes, MD5, who recorded them); the authors publish neither, so a
    # mismatch is reported and the format checks decide.
    known: dict = dataclasses.field(default_factory=dict)

    @property
    def count(self):
        return math.prod(self.file_sizes)

    @property
    def sizes(self):
        return tuple(self.file_sizes[c] for c in self.columns)


MPI3D_BUCKET = "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/"
BENCHMARKS = {
    "shapes3d": Benchmark(
        "shapes3d", "3D Shapes", ("3dshapes.h5",),
        {"3dshapes.h5": "https://storage.googleapis.com/3d-shapes/3dshapes.h5"},
        "https://github.com/deepmind/3d-shapes", (10, 10, 10, 8, 4, 15), (0, 1, 2, 3, 4, 5),
        "h5", "images", 3,
        {"3dshapes.h5": (267_573_662, "099a2078d58cec4daad0702c55d06868",
                         "other projects' loaders")}),
    "mpi3d": Benchmark(
        "mpi3d", "MPI3D", ("mpi3d_toy.npz", "mpi3d_realistic.npz", "mpi3d_real.npz"),
        {f: MPI3D_BUCKET + f for f in ("mpi3d_toy.npz", "mpi3d_realistic.npz",
                                       "mpi3d_real.npz")},
        "https://github.com/rr-learning/disentanglement_dataset", (6, 6, 2, 3, 3, 40, 40),
        (0, 1, 2, 3, 4, 5, 6), "npz", "images", 3,
        {"mpi3d_toy.npz": (None, "55889cb7c7dfc655d6e0277beee88868", "the disent library"),
         "mpi3d_realistic.npz": (None, "59a6225b88b635365f70c91b3e52f70f",
                                 "the disent library"),
         "mpi3d_real.npz": (None, "0f33f609918fb5c97996692f91129802", "the disent library")}),
    "dsprites": Benchmark(
        "dsprites", "dSprites", ("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",),
        {"dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz":
         "https://github.com/deepmind/dsprites-dataset/raw/master/"
         "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"},
        "https://github.com/deepmind/dsprites-dataset", (1, 3, 6, 40, 32, 32), (1, 2, 3, 4, 5),
        "npz", "imgs", 1,
        {"dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz":
         (None, "7da33b31b13a06f4b04a70402ce90c2e", "another project's loader")}),
}


class BadFile(UserError):
    """A file that is not the benchmark's; the message says what to do."""


def benchmark_root(cfg):
    """Where a benchmark's cache is: --data_dir, or data/<dataset> while data_dir is left at
    its default (CelebA's folder)."""
    return Path(cfg.data_dir) if cfg.data_dir != Config().data_dir else Path("data") / cfg.dataset


# --- reading the published files ------------------------------------------------------------

def _h5py():
    try:
        import h5py
    except ImportError:
        raise DataError("3D Shapes is an HDF5 file and reading it needs h5py: "
                        "pip install h5py") from None
    return h5py


class NpzArray:
    """One array of a .npz, read row block by row block without loading it whole (the
    archive's members may be stored or deflated; either streams)."""

    def __init__(self, archive, key, label):
        self.label = label
        try:
            self.stream = archive.open(f"{key}.npy")
            version = np.lib.format.read_magic(self.stream)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            self.shape, fortran, self.dtype = header(self.stream)
        except (ValueError, zipfile.BadZipFile, EOFError) as err:
            raise BadFile(f"{label}: cannot read its array '{key}' ({err})") from None
        if fortran or self.dtype.hasobject:
            raise BadFile(f"{label}: its array '{key}' is not a plain C-ordered array")
        self.row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])

    def rows(self, n):
        """The next n rows."""
        try:
            raw = self.stream.read(n * self.row_bytes)
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise BadFile(f"{self.label} is damaged ({err})") from None
        if len(raw) != n * self.row_bytes:
            raise BadFile(f"{self.label} is truncated: its data ends before its header's "
                          f"{self.shape[0]} rows")
        return np.frombuffer(raw, self.dtype).reshape(n, *self.shape[1:])

    def read(self):
        return self.rows(self.shape[0])


class SourceFile:
    """The arrays of a benchmark file: images (streamed in row blocks) and factor labels."""

    def __init__(self, spec, path):
        self.spec, self.path, self.label = spec, Path(path), str(path)
        self._h5 = self._zip = None
        if spec.reader == "h5":
            h5py = _h5py()
            try:
                self._h5 = h5py.File(path, "r")
            except OSError as err:
                raise BadFile(f"{path} is not an HDF5 file ({err}); download "
                              f"{spec.files[0]} again") from None
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, EOFError, OSError) as err:
                raise BadFile(f"{path} is not a .npz file ({err}); download it again") from None
        self.keys = (set(self._h5.keys()) if self._h5 is not None else
                     {n[:-4] for n in self._zip.namelist() if n.endswith(".npy")})

    def close(self):
        for handle in (self._h5, self._zip):
            if handle is not None:
                handle.close()

    def require(self, key):
        if key not in self.keys:
            raise BadFile(f"{self.label} has no array '{key}' (it has "
                          f"{', '.join(sorted(self.keys)) or 'none'}); is it "
                          f"{' or '.join(self.spec.files)}?")

    def shape_and_dtype(self, key):
        self.require(key)
        if self._h5 is not None:
            return tuple(self._h5[key].shape), self._h5[key].dtype
        array = NpzArray(self._zip, key, self.label)
        return tuple(array.shape), array.dtype

    def array(self, key):
        self.require(key)
        return self._h5[key][()] if self._h5 is not None else \
            NpzArray(self._zip, key, self.label).read()

    def image_blocks(self):
        """Row blocks of the image array, in order."""
        key, total = self.spec.image_key, self.spec.count
        if self._h5 is not None:
            dataset = self._h5[key]
            for start in range(0, total, CHUNK_ROWS):
                yield dataset[start:start + CHUNK_ROWS]
            return
        stream = NpzArray(self._zip, key, self.label)
        for start in range(0, total, CHUNK_ROWS):
            yield stream.rows(min(CHUNK_ROWS, total - start))


def check_format(spec, source):
    """Shapes and dtypes of the file's arrays, against the benchmark's grid: BadFile if wrong."""
    n, label = spec.count, source.label
    shape, dtype = source.shape_and_dtype(spec.image_key)
    pixel = (NATIVE_SIZE, NATIVE_SIZE) + ((3,) if spec.channels == 3 else ())
    if shape != (n, *pixel) or dtype != np.uint8:
        hint = ""
        if spec.name == "mpi3d" and shape[:1] == (460_800,):
            hint = ("; this is the earlier 460,800-image release: get the 1,036,800-image "
                    f"file from {spec.page}")
        raise BadFile(f"{label}: '{spec.image_key}' is {dtype} {shape}, expected uint8 "
                      f"{(n, *pixel)} ({spec.title}: {n:,} images, factor grid "
                      f"{'x'.join(map(str, spec.file_sizes))}){hint}")
    if spec.name == "shapes3d":
        shape, dtype = source.shape_and_dtype("labels")
        if shape != (n, len(spec.file_sizes)) or dtype.kind != "f":
            raise BadFile(f"{label}: 'labels' is {dtype} {shape}, expected float "
                          f"({n}, {len(spec.file_sizes)})")
    if spec.name == "dsprites":
        for key, kind in (("latents_classes", "i"), ("latents_values", "f")):
            shape, dtype = source.shape_and_dtype(key)
            if shape != (n, len(spec.file_sizes)) or dtype.kind != kind:
                raise BadFile(f"{label}: '{key}' is {dtype} {shape}, expected "
                              f"{'integer' if kind == 'i' else 'float'} "
                              f"({n}, {len(spec.file_sizes)})")


def grid_classes(sizes):
    """(prod(sizes), K) class indices of a row-major grid: the last factor varies fastest."""
    return np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), 1)


def _values_from_labels(labels, sizes, label, key):
    """Each factor's value per class, from a labels array that must follow the grid: column k
    depends on factor k's class only, and its values differ between classes."""
    grid = labels.reshape(*sizes, len(sizes))
    values = []
    for k, size in enumerate(sizes):
        index = [0] * len(sizes)
        index[k] = slice(None)
        column = grid[tuple(index) + (k,)]
        shape = [1] * len(sizes)
        shape[k] = size
        expected = np.broadcast_to(column.reshape(shape), sizes)
        wrong = np.argwhere(grid[..., k] != expected)
        if len(wrong) or len(np.unique(column)) != size:
            where = (f"first wrong row {int(np.ravel_multi_index(tuple(wrong[0]), sizes))}"
                     if len(wrong) else f"{len(np.unique(column))} distinct values, not {size}")
            raise BadFile(f"{label}: '{key}' column {k} does not follow the factor grid "
                          f"{'x'.join(map(str, sizes))} ({where}); the rows are not in the "
                          "published order")
        values.append(column.astype(float).tolist())
    return values


def factor_values(spec, source):
    """The value of each class of each kept factor, checked against the grid where the file
    has labels (MPI3D has none: its labels are the row order)."""
    sizes, label = spec.file_sizes, source.label
    if spec.name == "shapes3d":
        values = _values_from_labels(source.array("labels"), sizes, label, "labels")
    elif spec.name == "dsprites":
        classes = source.array("latents_classes")
        if not np.array_equal(classes, grid_classes(sizes)):
            row = int(np.argwhere((classes != grid_classes(sizes)).any(1))[0, 0])
            raise BadFile(f"{label}: 'latents_classes' row {row} is {classes[row].tolist()}, "
                          f"expected {grid_classes(sizes)[row].tolist()}: the rows are not in "
                          "the published order")
        values = _values_from_labels(source.array("latents_values"), sizes, label,
                                     "latents_values")
    else:
        values = [list(range(size)) for size in sizes]
    return [values[c] for c in spec.columns]


def known_file_note(spec, path):
    """One line: the file's size and MD5 against those recorded for it, where known."""
    size = path.stat().st_size
    expected_bytes, md5, who = spec.known.get(path.name, (None, None, None))
    if expected_bytes is None and md5 is None:
        return f"{path.name}: {size:,} bytes (no size or checksum is published for it)"
    if expected_bytes is not None and size != expected_bytes:
        return (f"{path.name}: {size:,} bytes, not the {expected_bytes:,} recorded by {who} "
                "(the authors publish no checksum): the format checks decide")
    actual = md5_of(path)
    if md5 is not None and actual != md5:
        return (f"{path.name}: MD5 {actual}, not the {md5} recorded by {who} (the authors "
                "publish no checksum): the format checks decide")
    return f"{path.name}: size and MD5 as recorded by {who} (the authors publish none)"


# --- the cache --------------------------------------------------------------------------------

def read_manifest(root):
    """The manifest of root's complete benchmark cache, else None."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        images = np.load(root / manifest["images"], mmap_mode="r")
        factors = np.load(root / manifest["factors"], mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    n, size = manifest.get("count"), manifest.get("image_size")
    ok = manifest.get("format") == CACHE_FORMAT and \
        images.shape == (n, size, size, manifest.get("channels")) and \
        factors.shape == (n, len(manifest.get("factor_names", ())))
    return manifest if ok else None


def _tmp(path):
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def convert(spec, source, root, values, note):
    """Write images.npy, factors.npy and, last, benchmark.json under root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)
    for stale in root.glob("*.tmp-*"):   # left by a conversion that was killed
        stale.unlink()
    n = spec.count
    images_tmp, factors_tmp = _tmp(root / IMAGES), _tmp(root / FACTORS)
    try:
        array = np.lib.format.open_memmap(images_tmp, mode="w+", dtype=np.uint8,
                                          shape=(n, NATIVE_SIZE, NATIVE_SIZE, spec.channels))
        row = 0
        with tqdm(total=n, unit="img", desc=f"convert {source.path.name}") as bar:
            for block in source.image_blocks():
                if spec.channels == 1:
                    if block.max(initial=0) > 1:
                        raise BadFile(f"{source.label}: '{spec.image_key}' rows {row}-"
                                      f"{row + len(block) - 1} hold values above 1; dSprites "
                                      "images are 0/1")
                    block = (block * np.uint8(255))[..., None]
                array[row:row + len(block)] = block
                row += len(block)
                bar.update(len(block))
        array.flush()
        del array
        classes = grid_classes(spec.file_sizes)[:, list(spec.columns)].astype(np.float32)
        with open(factors_tmp, "wb") as f:
            np.save(f, classes)
        os.replace(images_tmp, root / IMAGES)
        os.replace(factors_tmp, root / FACTORS)
        names, kinds = zip(*FACTOR_KINDS[spec.name])
        manifest = {"format": CACHE_FORMAT, "benchmark": spec.name, "title": spec.title,
                    "source": source.path.name, "source_bytes": source.path.stat().st_size,
                    "count": n, "image_size": NATIVE_SIZE, "channels": spec.channels,
                    "images": IMAGES, "factors": FACTORS, "factor_names": list(names),
                    "factor_kinds": list(kinds), "factor_sizes": list(spec.sizes),
                    "factor_values": values, "check": note}
        imagesets.write_atomically(root / MANIFEST, json.dumps(manifest))
    finally:
        images_tmp.unlink(missing_ok=True)
        factors_tmp.unlink(missing_ok=True)
    return manifest


def find_file(spec, args, root):
    """The benchmark file to use: --file, or one of its names in root; None when absent."""
    if args.file:
        if not args.file.is_file():
            raise BadFile(f"--file {args.file}: no such file; give the path of "
                          f"{' or '.join(spec.files)}")
        return args.file
    present = [root / f for f in spec.files if (root / f).is_file()]
    if len(present) > 1:
        raise BadFile(f"{root} holds {', '.join(p.name for p in present)}: say which with "
                      f"--file, and give each its own --data_dir")
    return present[0] if present else None


def where_to_download(spec, root):
    lines = [f"{spec.title} is not in {root}. Download it (the authors' links, {spec.page}):"]
    for name, url in spec.urls.items():
        lines += [f"  {url}", f"    curl -L -C - -o {root / name} {url}"]
    lines += ["then run this command again (or pass --file PATH where it is; --download "
              "fetches it for you, resuming a broken transfer)."]
    if spec.name == "mpi3d":
        lines.append("MPI3D: any one of the three files; give each its own --data_dir.")
    return "\n".join(lines)


def fetch(spec, root, name):
    """The file fetched from the authors' link (resumed across attempts and runs, as CelebA's
    archive is: download.py), or None with the reason printed."""
    url = spec.urls[name]
    print(f"downloading {url}")
    root.mkdir(parents=True, exist_ok=True)
    try:
        download(url, root / name, None, spec.known.get(name, (None,))[0])
    except SourceFailed as err:
        print(f"  failed: {err}", file=sys.stderr)
        return None
    return root / name


def set_up(spec, args):
    root = Path(args.data_dir or Path("data") / spec.name)
    manifest = read_manifest(root)
    path = find_file(spec, args, root)
    if manifest is not None and manifest["benchmark"] == spec.name and (
            path is None or (path.name, path.stat().st_size) ==
            (manifest["source"], manifest["source_bytes"])):
        print(f"{spec.title} already set up in {root}: {manifest['count']:,} images of "
              f"{manifest['source']}, verified, nothing changed")
        return EXIT_OK
    if path is None and args.download:
        path = fetch(spec, root, args.variant if spec.name == "mpi3d" else spec.files[0])
    if path is None:
        print(where_to_download(spec, root), file=sys.stderr)
        return EXIT_NO_FILE
    source = SourceFile(spec, path)
    try:
        check_format(spec, source)
        values = factor_values(spec, source)
        note = known_file_note(spec, path)
        print(f"{note}; format checked: {spec.count:,} images, factor grid "
              f"{'x'.join(map(str, spec.file_sizes))}")
        manifest = convert(spec, source, root, values, note)
    finally:
        source.close()
    print(f"{spec.title} ready in {root}: {manifest['count']:,} images, factors "
          + ", ".join(f"{n} ({k})" for n, k in FACTOR_KINDS[spec.name]))
    where = "" if root == Path("data") / spec.name else f" --data_dir {root}"
    print(f"next: python train.py --dataset {spec.name}{where}")
    return EXIT_OK


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", choices=list(BENCHMARKS))
    parser.add_argument("--file", type=Path, help="the downloaded file (default: looked for "
                        "in --data_dir)")
    parser.add_argument("--data_dir", help="where the cache goes (default: data/BENCHMARK, "
                        "train.py's default for --dataset BENCHMARK)")
    parser.add_argument("--download", action="store_true",
                        help="fetch the file from the authors' link when it is not there")
    parser.add_argument("--variant", default="mpi3d_toy.npz",
                        choices=BENCHMARKS["mpi3d"].files, help="MPI3D: which file --download "
                        "fetches (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        return set_up(BENCHMARKS[args.benchmark], args)
    except BadFile as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_FILE
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_FILE if "pip install" in str(err) else EXIT_NO_FILE
    except OSError as err:
        print(f"error: {err.filename or args.data_dir}: {err.strerror or err}; free some disk "
              "space or choose a writable --data_dir", file=sys.stderr)
        return EXIT_DISK
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again (the conversion starts over; nothing "
              "half-written is used)", file=sys.stderr)
        return EXIT_INTERRUPTED


# --- the images in training -----------------------------------------------------------------

class FactorImages(imagesets.CachedImages):
    """Rows of a benchmark cache as float32 (3, S, S) in [0, 1]: grey images repeated to three
    channels, resized (antialiased bilinear) when image_size is not the stored 64."""

    def __init__(self, array_path, rows, image_size):
        super().__init__(array_path, rows)
        self.image_size = image_size

    def _convert(self, pixels):
        x = imagesets.to_tensor(pixels)
        if x.shape[-3] == 1:
            x = x.repeat_interleave(3, dim=-3)
        if x.shape[-1] != self.image_size:
            batch = x if x.dim() == 4 else x[None]
            batch = F.interpolate(batch, size=(self.image_size, self.image_size),
                                  mode="bilinear", antialias=True, align_corners=False)
            x = batch.clamp_(0, 1) if x.dim() == 4 else batch[0].clamp_(0, 1)
        return x

    def __getitem__(self, i):
        return self._convert(self.array[self.rows[i]])

    def __getitems__(self, indices):
        return self._convert(self.array[self.rows[indices]])


def _missing(name, root):
    return DataError(f"{name} is not set up in {root}: run `python benchmarks.py {name}"
                     + ("" if root == Path("data") / name else f" --data_dir {root}")
                     + "` (it says where to download the file)")


def benchmark_datasets(cfg):
    """(train, held-out, description) of a benchmark: heldout_size images drawn once (the same
    for every run and seed), the rest for training."""
    root = benchmark_root(cfg)
    manifest = read_manifest(root)
    if manifest is None:
        raise _missing(cfg.dataset, root)
    if manifest["benchmark"] != cfg.dataset:
        raise DataError(f"{root} holds {manifest['title']}, not {cfg.dataset}; point --data_dir "
                        f"at the {cfg.dataset} folder")
    n = manifest["count"]
    if cfg.heldout_size >= n:
        raise DataError(f"{root} has {n} images: heldout_size {cfg.heldout_size} leaves none to "
                        f"train on; lower it, e.g. --heldout_size {max(1, n // 10)}")
    order = np.random.default_rng(HELDOUT_SEED).permutation(n)
    path = root / manifest["images"]
    train = FactorImages(path, np.sort(order[cfg.heldout_size:]), cfg.image_size)
    heldout = FactorImages(path, order[:cfg.heldout_size], cfg.image_size)
    resize = "" if cfg.image_size == NATIVE_SIZE else f", resized to {cfg.image_size}"
    grey = ", grey (structure factors only)" if manifest["channels"] == 1 else ""
    return train, heldout, (f"{manifest['title']} ({manifest['source']}) {root}: {len(train)} "
                            f"train / {len(heldout)} held-out, 64x64{resize}{grey}, "
                            f"preprocessed cache {path}")


# --- factors for evaluation -----------------------------------------------------------------

class FactorSet:
    """Images with known factors. factors: (N, K) float64; images(rows) -> float (n, 3, S, S).
    sizes: the class count of each factor when the set is a full grid whose row order is
    row-major (then factors can be sampled and their image looked up: the FactorVAE score).
    random_order: its rows are independent draws already, so probes may take them in order
    (the built-in shapes); otherwise rows are sampled at random (a grid's order is its
    factors'). discrete: one bool per factor, True for a class index (MIG, DCI and SAP use its
    classes), False for a continuous value (they cut it into bins)."""

    def __init__(self, title, names, kinds, factors, images, sizes=None, note="",
                 random_order=False, *, discrete):
        self.title, self.names, self.kinds = title, list(names), list(kinds)
        self.discrete = [bool(d) for d in discrete]
        self.factors, self.images = np.asarray(factors, dtype=np.float64), images
        self.sizes, self.note = (tuple(sizes) if sizes else None), note
        self.random_order = random_order

    def __len__(self):
        return len(self.factors)

    @property
    def samplable(self):
        return self.sizes is not None

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(0, size, n) for size in self.sizes], 1).astype(np.float64)

    def images_of(self, factors):
        rows = np.ravel_multi_index(tuple(np.asarray(factors, dtype=np.int64).T), self.sizes)
        return self.images(rows)


def _benchmark_factor_set(cfg):
    root = benchmark_root(cfg)
    manifest = read_manifest(root)
    if manifest is None:
        raise _missing(cfg.dataset, root)
    dataset = FactorImages(root / manifest["images"], np.arange(manifest["count"]),
                           cfg.image_size)
    factors = np.load(root / manifest["factors"], mmap_mode="r")
    note = (f"{manifest['title']} ({manifest['source']}), {manifest['count']:,} images")
    if manifest["channels"] == 1:
        note += ("; grey images: structure factors only, so only core → structure is "
                 "tested (detail has no appearance factor to carry)")
    return FactorSet(manifest["title"], manifest["factor_names"], manifest["factor_kinds"],
                     factors, lambda rows: dataset.__getitems__(np.asarray(rows)),
                     manifest["factor_sizes"], note,
                     discrete=[True] * len(manifest["factor_names"]))  # class indices


def _synthetic_factor_set(cfg):
    """The built-in shapes: fresh images (seed + 7, as before), factors in [0, 1]."""
    kind = BUILT_IN_SHAPES[cfg.dataset]
    shapes = kind(cfg.probe_images, cfg.image_size, seed=cfg.seed + 7)
    factors = np.stack([shapes.factors(i) for i in range(len(shapes))])
    names, kinds = zip(*FACTOR_KINDS[cfg.dataset])

    def images(rows):
        return torch.stack([shapes[int(i)] for i in rows])
    title = "built-in small shapes on black" if kind is SparseShapes else "built-in shapes"
    return FactorSet(title, names, kinds, factors, images,
                     note=f"the {title} (factors continuous in [0, 1], shape one of 3 classes)",
                     random_order=True,
                     discrete=[n in kind.DISCRETE_FACTORS for n in names])


def factor_set(cfg):
    """The dataset's images with known factors, or None when it has none."""
    if cfg.dataset in BUILT_IN_SHAPES:
        return _synthetic_factor_set(cfg)
    if cfg.dataset in BENCHMARKS:
        return _benchmark_factor_set(cfg)
    if cfg.dataset == "folder" and cfg.factors:
        return csv_factor_set(cfg)
    return None


# --- a CSV file of factors for any image folder -----------------------------------------------

def read_factor_csv(path, images):
    """(file names, factor names, kinds, values (n, K)) of a factors CSV, every row checked.

    The first row is the header: the file-name column, then one column per factor named
    NAME:structure or NAME:appearance. images: the image names the folder holds (relative to
    it). Any fault stops with one line naming the row and column. A column whose values are all
    whole numbers is a discrete factor (class labels, see csv_column_is_discrete); one with any
    fractional value is continuous.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise DataError(f"--factors {path}: {err.strerror or err}; give the CSV of factors") \
            from None
    except UnicodeDecodeError:
        raise DataError(f"--factors {path}: not a UTF-8 text file; give a CSV of factors") \
            from None
    rows = [row for row in csv.reader(text.splitlines()) if any(c.strip() for c in row)]
    example = "file,size:structure,hue:appearance"
    if not rows:
        raise DataError(f"{path}: empty; its first row is the header, e.g. {example}")
    header = [cell.strip() for cell in rows[0]]
    if len(header) < 2:
        raise DataError(f"{path} row 1: the header needs the file-name column and at least "
                        f"one factor column, e.g. {example}")
    names, kinds = [], []
    for col, cell in enumerate(header[1:], 2):
        name, colon, mark = cell.rpartition(":")
        where = f"{path} row 1, column {col} ({cell!r})"
        if not colon or not name.strip():
            raise DataError(f"{where}: mark the factor NAME:structure or NAME:appearance")
        if mark.strip().lower() not in KINDS:
            raise DataError(f"{where}: unknown mark {mark.strip()!r}; use structure or "
                            "appearance")
        if name.strip() in names:
            raise DataError(f"{where}: factor {name.strip()!r} named twice in the header")
        names.append(name.strip())
        kinds.append(mark.strip().lower())
    known, files, values, first = set(images), [], [], {}
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise DataError(f"{path} row {number}: {len(row)} cells, the header has "
                            f"{len(header)}")
        name = row[0].strip()
        if name in first:
            raise DataError(f"{path} row {number}, column 1: {name!r} is listed again (first "
                            f"on row {first[name]})")
        if name not in known:
            raise DataError(f"{path} row {number}, column 1: no image {name!r} in the folder "
                            "(names are relative to --data_dir)")
        first[name] = number
        numbers = []
        for col, (cell, factor) in enumerate(zip(row[1:], names), 2):
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"{path} row {number}, column {col} ({factor}): "
                                f"{cell.strip()!r} is not a finite number")
            numbers.append(value)
        files.append(name)
        values.append(numbers)
    if not files:
        raise DataError(f"{path}: a header and no rows; add a row per image")
    return files, names, kinds, np.array(values, dtype=np.float64)


def check_factors_file(cfg):
    """Read the --factors CSV against the folder at start-up: a fault stops the run at once."""
    if cfg.dataset != "folder":
        raise DataError(f"--factors labels an image folder: use it with --dataset folder, not "
                        f"--dataset {cfg.dataset}")
    root = Path(cfg.data_dir)
    return read_factor_csv(cfg.factors, imagesets.list_images(root, root))


def csv_column_is_discrete(column):
    """A --factors column is discrete (one class per value in MIG, DCI and SAP) when every value
    is a whole number (0, 1, 2 or 6.0, 7.0); a single fractional value (0.25) makes it
    continuous, cut into bins. A continuous quantity recorded in whole numbers (a size in
    whole pixels) therefore counts as discrete; to have it binned, write it with fractions
    (rescaled to [0, 1], say)."""
    column = np.asarray(column, dtype=np.float64)
    return bool(np.all(column == np.round(column)))


def csv_factor_set(cfg):
    root = Path(cfg.data_dir)
    names = imagesets.list_images(root, root)
    files, factor_names, kinds, values = read_factor_csv(cfg.factors, names)
    dataset, kept = imagesets.folder_images(root, names, files, cfg)
    keep = [files.index(name) for name in kept] if len(kept) != len(files) else slice(None)

    def image(name, i):
        if isinstance(dataset, imagesets.CachedImages):
            return dataset[i]
        # Decoding: a file that cannot be read must not lend another image its factors.
        pixels, reason = imagesets.try_load_image(root / name, cfg.image_size)
        if pixels is None:
            raise DataError(f"{root / name} cannot be decoded ({reason}); `python data.py "
                            f"{root}` builds the cache, which leaves unreadable images out")
        return imagesets.to_tensor(pixels)

    def images(rows):
        return torch.stack([image(kept[int(i)], int(i)) for i in rows])
    note = f"{len(kept)} images of {root} labelled by {cfg.factors}"
    if len(kept) != len(files):
        note += f" ({len(files) - len(kept)} unreadable left out)"
    return FactorSet(f"factors of {Path(cfg.factors).name}", factor_names, kinds,
                     values[keep], images, note=note,
                     discrete=[csv_column_is_discrete(c) for c in values.T])


if __name__ == "__main__":
    sys.exit(main())
