"""Datasets and loaders: the procedural shapes, CelebA, image folders, bad files, the cache."""
import io
import itertools
import json
import logging
import time

import numpy as np
import pytest
import torch
from PIL import Image

import celeba
import configs
import data
import imagesets
from imagesets import SyntheticShapes


def photo(width=178, height=218, seed=0):
    """A JPEG-friendly picture: smooth colour gradients plus a little noise (uint8 HxWx3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin(2 * np.pi * (a * x + b * y) + c) for a, b, c in rng.random((3, 3)) * 3]
    pixels = 0.5 + 0.4 * np.stack(channels, -1) + rng.normal(0, 0.03, (height, width, 3))
    return (np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def save_jpeg(path, width=178, height=218, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(width, height, seed)).save(path, quality=90)  # ignored by PNG
    return path


def make_celeba(root, numbers):
    for n in numbers:
        save_jpeg(root / celeba.CELEBA_FOLDER / f"{n:06d}.jpg", seed=n)


def config(**fields):
    cfg = configs.Config(num_workers=0, image_size=32, batch_size=2, heldout_size=2)
    return configs.apply_overrides(cfg, fields)


class Indices(torch.utils.data.Dataset):
    """Item i is tensor([i]): makes the order of a loader visible."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([i])


def flat(loader):
    return [int(i) for batch in loader for i in batch]


# --- the procedural dataset ---------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64])
def test_synthetic_images_are_deterministic_float_images_in_the_unit_range(size):
    a, b = SyntheticShapes(50, size, seed=3), SyntheticShapes(50, size, seed=3)
    for i in (0, 17, 49):
        x = a[i]
        assert x.shape == (3, size, size) and x.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 1
        assert torch.equal(x, b[i])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], SyntheticShapes(50, size, seed=4)[0])
    with pytest.raises(IndexError):
        a[50]


def test_synthetic_factors_are_named_and_in_the_unit_range():
    ds = SyntheticShapes(300, 32, seed=0, return_factors=True)
    assert ds.FACTORS == ds.STRUCTURE_FACTORS + ds.APPEARANCE_FACTORS and len(ds.FACTORS) == 9
    factors = torch.stack([ds[i][1] for i in range(len(ds))])
    assert factors.shape == (300, 9) and factors.dtype == torch.float32
    assert factors.min() >= 0 and factors.max() <= 1
    assert set(factors[:, 0].tolist()) == {0.0, 0.5, 1.0}  # circle, square, triangle
    assert (factors[:, 1:].std(0) > 0.2).all()  # every continuous factor varies over [0, 1]
    image, f = ds[7]
    assert torch.equal(image, torch.from_numpy(SyntheticShapes.render(f.numpy(), 32)))


def object_mask(image):
    """The shape, read off the picture alone: the object is always brighter (max channel >= 0.6)
    than the background (<= 0.46)."""
    return image.max(0) > 0.53


def test_appearance_factors_change_colours_but_not_the_shape():
    ds, rng = SyntheticShapes(40, 64, seed=1), np.random.default_rng(0)
    for i in range(len(ds)):
        f = ds.factors(i)
        g = f.copy()
        g[5:] = rng.random(4)  # new object and background colours
        a, b = SyntheticShapes.render(f, 64), SyntheticShapes.render(g, 64)
        assert np.abs(a - b).max() > 0.05
        cover = SyntheticShapes.coverage(f, 64)
        assert np.array_equal(cover, SyntheticShapes.coverage(g, 64))
        sure = (cover < 0.02) | (cover > 0.98)  # pixels that are not on the outline
        for image in (a, b):
            assert np.array_equal(object_mask(image)[sure], cover[sure] > 0.5)


def test_structure_factors_move_resize_and_change_the_shape():
    f = SyntheticShapes(1, 64).factors(0)
    f[:5] = [0.0, 0.0, 0.5, 0.5, 0.0]  # a circle at the left

    def mask(**change):
        g = f.copy()
        for name, value in change.items():
            g[SyntheticShapes.FACTORS.index(name)] = value
        return object_mask(SyntheticShapes.render(g, 64))
    base = mask()
    moved = mask(x=1.0)
    shift = np.nonzero(moved)[1].mean() - np.nonzero(base)[1].mean()
    assert shift == pytest.approx(0.36 * 64, abs=1)  # x spans 36 % of the width
    assert np.array_equal(base.sum(0).nonzero()[0] + round(0.36 * 64),
                          moved.sum(0).nonzero()[0])
    assert mask(size=1.0).sum() / mask(size=0.0).sum() == pytest.approx(4, rel=0.1)  # radius x2
    square, diamond = mask(shape=0.5), mask(shape=0.5, rotation=1.0)
    assert (square != diamond).sum() > 40
    areas = [SyntheticShapes.coverage(np.array([shape, 0.5, 0.5, 0.5, rotation]), 64).sum()
             for shape in (0.0, 0.5, 1.0) for rotation in (0.0, 1.0)]
    assert max(areas) / min(areas) < 1.02  # every shape and rotation: the same area per size


@pytest.mark.parametrize("radius, centre", [(SyntheticShapes.RADIUS, SyntheticShapes.CENTRE),
                                             ((0.15, 0.10), (0.39, 0.22))])  # the larger screen
def test_the_geometry_sets_radius_and_centre_and_keeps_every_shape_in_frame(monkeypatch, radius,
                                                                            centre):
    monkeypatch.setattr(SyntheticShapes, "RADIUS", radius)
    monkeypatch.setattr(SyntheticShapes, "CENTRE", centre)
    s = 64
    disc = SyntheticShapes.coverage(np.array([0.0, 0.5, 0.5, 1.0, 0.0]), s)
    assert disc.sum() == pytest.approx(np.pi * (s * sum(radius)) ** 2, rel=0.02)
    assert (disc * np.arange(s)[None, :]).sum() / disc.sum() == pytest.approx(
        s * (centre[0] + centre[1] / 2) - 0.5, abs=0.05)
    # The largest shape of each kind and rotation, pushed to each corner, stays in frame.
    for kind, rotation, x, y in itertools.product((0.0, 0.5, 1.0), (0.0, 0.5, 1.0), (0.0, 1.0),
                                                  (0.0, 1.0)):
        cover = SyntheticShapes.coverage(np.array([kind, x, y, 1.0, rotation]), s)
        border = np.concatenate([cover[0], cover[-1], cover[:, 0], cover[:, -1]])
        assert border.max() < 0.5, (kind, rotation, x, y)


def test_synthetic_images_take_well_under_half_a_millisecond():
    ds = SyntheticShapes(500, 64)
    started = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    assert (time.perf_counter() - started) / len(ds) < 0.5e-3


# --- build_datasets -----------------------------------------------------------------------

def test_synthetic_config_gives_distinct_train_and_heldout_sets():
    cfg = config(dataset="synthetic", synthetic_size=20, heldout_size=6, seed=5)
    train, heldout, description = data.build_datasets(cfg)
    assert (len(train), len(heldout)) == (20, 6)
    assert train[0].shape == (3, 32, 32)
    assert torch.equal(train[3], SyntheticShapes(20, 32, seed=5)[3])
    assert not any(torch.equal(train[i], heldout[i]) for i in range(6))
    assert "synthetic" in description and "\n" not in description


def test_celeba_is_split_by_file_number_into_the_official_train_and_test_partitions(tmp_path):
    make_celeba(tmp_path, [1, 2, 162770, 162771, 182637, 182638, 202599])
    train, heldout, description = data.build_datasets(config(dataset="celeba",
                                                             data_dir=str(tmp_path)))
    assert [n[-10:] for n in train.names] == ["000001.jpg", "000002.jpg", "162770.jpg"]
    assert [n[-10:] for n in heldout.names] == ["182638.jpg", "202599.jpg"]  # val left out
    x = train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert "CelebA" in description and "3 train / 2 held-out" in description


def test_a_celeba_copy_without_test_files_holds_out_its_last_training_files(tmp_path):
    make_celeba(tmp_path, range(1, 21))
    train, heldout, description = data.build_datasets(config(dataset="celeba",
                                                             data_dir=str(tmp_path)))
    assert [n[-10:] for n in heldout.names] == ["000019.jpg", "000020.jpg"]  # heldout_size 2
    assert len(train) == 18 and "no test-partition files, last 2 held out" in description


def test_auto_uses_celeba_when_it_is_set_up(tmp_path):
    make_celeba(tmp_path, [1, 2, 182638])
    train, heldout, description = data.build_datasets(config(data_dir=str(tmp_path)))
    assert description.startswith("CelebA") and (len(train), len(heldout)) == (2, 1)


@pytest.mark.parametrize("present", ["nothing", "empty folder"])
def test_auto_without_celeba_says_how_to_fetch_it_or_run_the_demo(tmp_path, present):
    if present == "empty folder":
        (tmp_path / celeba.CELEBA_FOLDER).mkdir()
    with pytest.raises(configs.UserError) as err:
        data.build_datasets(config(data_dir=str(tmp_path)))
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / celeba.CELEBA_FOLDER) in message
    assert "python celeba_setup.py" in message and "python train.py --preset demo" in message


def test_a_folder_dataset_finds_images_recursively_and_holds_out_the_last_ones(tmp_path):
    for name in ["b/2.png", "a/1.jpg", "c.JPEG", "a/0.jpg"]:
        save_jpeg(tmp_path / name)  # the format follows the extension
    (tmp_path / "notes.txt").write_text("not an image")
    save_jpeg(tmp_path / ".ipynb_checkpoints" / "x.jpg")
    save_jpeg(tmp_path / "._c.jpg")
    train, heldout, _ = data.build_datasets(config(dataset="folder", data_dir=str(tmp_path),
                                                   heldout_size=1))
    assert train.names == ["a/0.jpg", "a/1.jpg", "b/2.png"] and heldout.names == ["c.JPEG"]
    assert train[2].shape == (3, 32, 32)


@pytest.mark.parametrize("case", ["missing", "empty", "too few"])
def test_unusable_folders_raise_one_line_errors_naming_the_path_and_the_fix(tmp_path, case):
    folder = tmp_path / "photos"
    if case != "missing":
        folder.mkdir()
    if case == "too few":
        save_jpeg(folder / "one.jpg")
    with pytest.raises(configs.UserError) as err:
        data.build_datasets(config(dataset="folder", data_dir=str(folder), heldout_size=3))
    message = str(err.value)
    assert str(folder) in message and "\n" not in message and "--" in message


def test_a_batch_larger_than_the_training_set_is_refused_naming_both_numbers():
    cfg = config(dataset="synthetic", synthetic_size=10, batch_size=16)
    train, _, _ = data.build_datasets(cfg)
    with pytest.raises(configs.UserError, match="batch_size 16 .* 10 training images"):
        data.make_loader(train, cfg, train=True)
    with pytest.raises(configs.UserError, match="batch_size 16 .* 8 training images per process"):
        data.make_loader(SyntheticShapes(16), cfg, train=True, shard=(0, 2))


# --- the transform and bad files ----------------------------------------------------------

def test_the_centre_crop_never_pads_a_small_image(tmp_path):
    Image.new("RGB", (100, 150), (200, 180, 40)).save(tmp_path / "small.png")
    x = imagesets.load_image(tmp_path / "small.png", 64)
    assert x.shape == (64, 64, 3)
    assert (np.abs(x.astype(int) - [200, 180, 40]) <= 1).all()  # no black border anywhere


def test_the_centre_crop_takes_the_middle_178_square_of_a_celeba_image(tmp_path):
    pixels = np.zeros((218, 178, 3), np.uint8)
    pixels[:, :] = (0, 0, 255)
    pixels[:20], pixels[198:] = (255, 0, 0), (0, 255, 0)  # the 20 rows above and below the crop
    Image.fromarray(pixels).save(tmp_path / "face.png")
    x = imagesets.load_image(tmp_path / "face.png", 64)
    assert (x == (0, 0, 255)).all()


def png16_rgb(values):
    """A 16-bit-per-channel RGB PNG (PIL cannot write one)."""
    import struct
    import zlib
    h, w, _ = values.shape
    raw = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_odd_files(folder):
    """Every kind of awkward file; returns {name: expected RGB colour, or None if unreadable}."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    Image.new("RGB", (40, 50), (10, 120, 230)).save(folder / "good.png")
    expected["good.png"] = (10, 120, 230)
    Image.new("L", (40, 50), 128).save(folder / "grey.png")
    expected["grey.png"] = (128, 128, 128)
    Image.new("1", (40, 50), 1).save(folder / "bilevel.png")
    expected["bilevel.png"] = (255, 255, 255)
    Image.new("RGBA", (40, 50), (0, 0, 0, 0)).save(folder / "transparent.png")
    expected["transparent.png"] = (255, 255, 255)  # transparency shows white, not black
    Image.new("LA", (40, 50), (0, 255)).save(folder / "grey_alpha.png")
    expected["grey_alpha.png"] = (0, 0, 0)
    Image.new("RGB", (40, 50), (200, 30, 30)).quantize(8).save(folder / "palette.png")
    expected["palette.png"] = (200, 30, 30)
    Image.new("CMYK", (40, 50), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    expected["cmyk.jpg"] = (255, 0, 0)
    Image.fromarray(np.full((50, 40), 32896, np.uint16)).save(folder / "grey16.png")
    expected["grey16.png"] = (128, 128, 128)  # scaled, not clipped to white
    rgb16 = np.zeros((50, 40, 3), np.uint16)
    rgb16[:] = (65535, 32896, 0)
    (folder / "rgb16.png").write_bytes(png16_rgb(rgb16))
    expected["rgb16.png"] = (255, 128, 0)
    Image.new("RGB", (6, 9), (50, 60, 70)).save(folder / "tiny.bmp")
    expected["tiny.bmp"] = (50, 60, 70)
    jpeg = io.BytesIO()
    Image.fromarray(photo()).save(jpeg, "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("this is not a picture")
    (folder / "html.jpeg").write_bytes(b"<html><body>Not Found</body></html>")
    expected.update({"truncated.jpg": None, "empty.jpg": None, "notes.png": None,
                     "html.jpeg": None})
    return expected


def test_every_awkward_file_is_converted_to_the_right_colour_or_skipped(tmp_path):
    expected = write_odd_files(tmp_path)
    for name, colour in expected.items():
        pixels, reason = imagesets.try_load_image(tmp_path / name, 16)
        if colour is None:
            assert pixels is None and reason, name
        else:
            assert reason is None and pixels.shape == (16, 16, 3), name
            assert np.abs(pixels.astype(int) - colour).max() <= 3, (name, pixels[8, 8])


def test_bad_files_never_stop_an_epoch_and_are_named(tmp_path, caplog):
    expected = write_odd_files(tmp_path)
    cfg = config(dataset="folder", data_dir=str(tmp_path), heldout_size=1, batch_size=3)
    train, _, _ = data.build_datasets(cfg)
    with caplog.at_level(logging.WARNING, logger="data"):
        batches = list(data.make_loader(train, cfg, train=True))
        assert sum(len(b) for b in batches) == len(train) // 3 * 3
        for i in range(len(train)):  # every index answers, bad ones with a readable image
            assert train[i].shape == (3, 32, 32)
    bad = {name for name, colour in expected.items() if colour is None}
    assert set(train.skipped) == bad & set(train.names)
    for name in train.skipped:
        assert sum(name in r.getMessage() for r in caplog.records) == 1  # named once
    assert f"{len(train.skipped)} skipped so far" in caplog.records[-1].getMessage()


def test_a_folder_of_only_unreadable_files_says_so(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"")
    train, _, _ = data.build_datasets(config(dataset="folder", data_dir=str(tmp_path),
                                             heldout_size=1))
    with pytest.raises(configs.UserError, match="none of the 2 images"):
        train[0]


# --- loaders ------------------------------------------------------------------------------

def test_training_batches_are_full_shuffled_per_epoch_and_resumable():
    cfg = config(batch_size=4, seed=2)
    ds = Indices(18)
    epoch1 = [b.flatten().tolist() for b in data.make_loader(ds, cfg, train=True, epoch=1)]
    assert len(epoch1) == 4 and all(len(b) == 4 for b in epoch1)  # 2 left over: dropped
    seen = [i for batch in epoch1 for i in batch]
    assert len(set(seen)) == 16 and seen != list(range(16))
    assert epoch1 == [b.flatten().tolist() for b in data.make_loader(ds, cfg, True, epoch=1)]
    assert epoch1 != [b.flatten().tolist() for b in data.make_loader(ds, cfg, True, epoch=2)]
    rest = data.make_loader(ds, cfg, train=True, epoch=1, start_batch=3)
    assert len(rest) == 1 and [b.flatten().tolist() for b in rest] == epoch1[3:]


def test_processes_get_disjoint_equal_shares_of_each_epoch():
    cfg = config(batch_size=2)
    shares = [flat(data.make_loader(Indices(11), cfg, True, epoch=3, shard=(r, 3)))
              for r in range(3)]
    assert [len(s) for s in shares] == [2, 2, 2]
    assert len({i for share in shares for i in share}) == 6


def test_evaluation_batches_come_in_order_with_the_last_one_kept():
    loader = data.make_loader(Indices(7), config(batch_size=3), train=False)
    assert [len(b) for b in loader] == [3, 3, 1] and flat(loader) == list(range(7))


def test_loading_leaves_torchs_global_random_state_alone():
    # An exact resume restores the random state saved in the checkpoint; the loader must not
    # draw from it.
    state = torch.get_rng_state()
    for train in (True, False):
        flat(data.make_loader(Indices(8), config(batch_size=2), train=train))
    assert torch.equal(state, torch.get_rng_state())


# --- the preprocessed cache ---------------------------------------------------------------

def build_cache(folder, root, image_size=32, workers=1):
    return imagesets.preprocess_folder(folder, imagesets.cache_path(root, image_size), image_size,
                                  workers=workers)


def all_items(dataset):
    return torch.stack([dataset[i] for i in range(len(dataset))])


def test_the_cache_is_used_and_gives_exactly_the_decoded_images(tmp_path, monkeypatch):
    make_celeba(tmp_path, (1, 2, 3, 4, 182638, 182639))
    cfg = config(dataset="celeba", data_dir=str(tmp_path))
    decoded, decoded_heldout, note = data.build_datasets(cfg)
    assert isinstance(decoded, imagesets.ImageFiles) and "decoding" in note
    expected = all_items(decoded), all_items(decoded_heldout)
    manifest = build_cache(tmp_path / celeba.CELEBA_FOLDER, tmp_path)
    assert manifest["files"][0] == "img_align_celeba/000001.jpg" and not manifest["skipped"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache is there")
    monkeypatch.setattr(imagesets.Image, "open", no_decoding)
    train, heldout, description = data.build_datasets(cfg)
    assert isinstance(train, imagesets.CachedImages) and "preprocessed cache" in description
    assert torch.equal(all_items(train), expected[0])  # the same uint8, so exactly equal
    assert torch.equal(all_items(heldout), expected[1])
    batch = next(iter(data.make_loader(train, cfg, train=False)))
    assert batch.shape == (2, 3, 32, 32) and torch.equal(batch, expected[0][:2])


def test_a_cache_of_another_size_or_an_out_of_date_cache_is_not_used(tmp_path):
    make_celeba(tmp_path, (1, 2, 182638))
    build_cache(tmp_path / celeba.CELEBA_FOLDER, tmp_path, image_size=16)
    cfg = config(dataset="celeba", data_dir=str(tmp_path))
    assert isinstance(data.build_datasets(cfg)[0], imagesets.ImageFiles)  # 16, not 32
    build_cache(tmp_path / celeba.CELEBA_FOLDER, tmp_path)
    assert isinstance(data.build_datasets(cfg)[0], imagesets.CachedImages)
    manifest = imagesets.cache_path(tmp_path, 32).with_suffix(".json")
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])  # a damaged manifest
    assert isinstance(data.build_datasets(cfg)[0], imagesets.ImageFiles)
    manifest.write_text(text)
    make_celeba(tmp_path, (3,))  # a file the cache does not know
    train, _, description = data.build_datasets(cfg)
    assert isinstance(train, imagesets.ImageFiles) and len(train) == 3
    assert "out of date" in description
    assert f"python celeba_setup.py --data_dir {tmp_path}" in description


def test_an_interrupted_cache_is_never_used_and_is_cleaned_up_next_time(tmp_path, monkeypatch):
    make_celeba(tmp_path, (1, 2, 3, 182638))
    build_cache(tmp_path / celeba.CELEBA_FOLDER, tmp_path)  # a complete cache, then a rebuild
    real, calls = imagesets.try_load_image, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(imagesets, "try_load_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / celeba.CELEBA_FOLDER, tmp_path)
    monkeypatch.undo()
    assert not imagesets.cache_path(tmp_path, 32).with_suffix(".json").exists()
    assert not list(tmp_path.glob("*.tmp-*"))
    cfg = config(dataset="celeba", data_dir=str(tmp_path))
    assert isinstance(data.build_datasets(cfg)[0], imagesets.ImageFiles)
    # A killed run (no cleanup) leaves a temporary file: the next build removes it.
    (tmp_path / "preprocessed_32.npy.tmp-99999").write_bytes(b"half")
    build_cache(tmp_path / celeba.CELEBA_FOLDER, tmp_path)
    assert not list(tmp_path.glob("*.tmp-*"))
    assert isinstance(data.build_datasets(cfg)[0], imagesets.CachedImages)


def test_the_cache_leaves_out_unreadable_files_and_names_them(tmp_path, caplog):
    expected = write_odd_files(tmp_path)
    with caplog.at_level(logging.WARNING, logger="data"):
        manifest = build_cache(tmp_path, tmp_path)
    bad = {name for name, colour in expected.items() if colour is None}
    assert set(manifest["skipped"]) == bad
    assert all(any(name in r.getMessage() for r in caplog.records) for name in bad)
    caplog.clear()
    cfg = config(dataset="folder", data_dir=str(tmp_path), heldout_size=1)
    with caplog.at_level(logging.WARNING, logger="data"):
        train, heldout, description = data.build_datasets(cfg)
    assert isinstance(train, imagesets.CachedImages)
    assert len(train) + len(heldout) == len(expected) - len(bad)
    assert f"{len(bad)} unreadable files left out" in description
    assert "unreadable images left out" in caplog.text


def test_preprocessing_on_several_processes_writes_the_same_cache(tmp_path):
    make_celeba(tmp_path / "a", (1, 2, 3, 4, 5))
    make_celeba(tmp_path / "b", (1, 2, 3, 4, 5))
    build_cache(tmp_path / "a" / celeba.CELEBA_FOLDER, tmp_path / "a", workers=1)
    build_cache(tmp_path / "b" / celeba.CELEBA_FOLDER, tmp_path / "b", workers=2)
    one, two = (np.load(imagesets.cache_path(tmp_path / d, 32)) for d in "ab")
    assert one.shape == (5, 32, 32, 3) and np.array_equal(one, two)
    manifests = [json.loads(imagesets.cache_path(tmp_path / d, 32).with_suffix(".json").read_text())
                 for d in "ab"]
    assert manifests[0] == manifests[1]


def test_loader_workers_deliver_the_same_batches_as_the_main_process(tmp_path):
    make_celeba(tmp_path, (1, 2, 3, 4, 5, 6, 7, 182638))
    batches = {}
    for workers in (0, 2):
        cfg = config(dataset="celeba", data_dir=str(tmp_path), num_workers=workers)
        train, _, _ = data.build_datasets(cfg)
        loader = data.make_loader(train, cfg, train=True, epoch=4)
        assert loader.num_workers == workers
        batches[workers] = list(loader)
    assert len(batches[0]) == 3
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))
    build_cache(tmp_path / celeba.CELEBA_FOLDER, tmp_path)
    cached, _, _ = data.build_datasets(cfg)
    loader = data.make_loader(cached, cfg, train=True, epoch=4)
    assert loader.num_workers == 0  # rows from the memory map: cheaper than a worker's batch
    assert all(torch.equal(a, b) for a, b in zip(batches[0], loader))


def test_the_command_line_preprocesses_a_folder(tmp_path, capsys):
    for i in range(3):
        save_jpeg(tmp_path / f"{i}.jpg", seed=i)
    assert data.main([str(tmp_path), "--image_size", "16", "--workers", "1"]) == 0
    assert np.load(imagesets.cache_path(tmp_path, 16)).shape == (3, 16, 16, 3)
    assert "3 images" in capsys.readouterr().out
    assert data.main([str(tmp_path / "nothing"), "--workers", "1"]) == 2
    assert "no images" in capsys.readouterr().err
