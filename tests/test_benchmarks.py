"""3D Shapes, MPI3D and dSprites: set-up checks and conversion, loading, a short training run
and its evaluation, on small files in each exact format (the real key names, dtypes and
per-image shapes; a small factor grid, patched in as celeba_setup's tests patch the count)."""
import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

import benchmarks
import configs
import data
import imagesets
import train

SMALL = {"shapes3d": (2, 2, 2, 2, 2, 3), "mpi3d": (2, 2, 2, 1, 2, 2, 3),
         "dsprites": (1, 2, 2, 2, 2, 3)}


def pictures(classes, sizes, channels):
    """Images that show their factors: a background from the first two, a square whose size
    follows the fourth and whose colour follows the third."""
    images = np.zeros((len(classes), 64, 64, 3), np.uint8)
    for i, c in enumerate(classes):
        images[i] = (40 + 100 * c[0], 40 + 100 * c[1], 60)
        side = 12 + 8 * c[3] + 2 * c[-1]
        images[i, 16:16 + side, 20:20 + side] = (220, 80 * c[2], 255)
    if channels == 1:
        return (images.max(-1) > 200).astype(np.uint8)  # 0/1, as dSprites
    return images


def make_file(folder, name, sizes=None):
    """A file named as the benchmark's, with its keys, dtypes and image shape."""
    spec = benchmarks.BENCHMARKS[name]
    sizes = sizes or SMALL[name]
    classes = benchmarks.grid_classes(sizes)
    images = pictures(classes, sizes, spec.channels)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.files[0]
    if name == "shapes3d":
        import h5py
        values = classes / np.maximum(np.array(sizes) - 1, 1)
        values[:, 5] = values[:, 5] * 60 - 30  # orientation in degrees
        with h5py.File(path, "w") as f:
            f["images"] = images
            f["labels"] = values.astype(np.float64)
    elif name == "mpi3d":
        np.savez(path, images=images)
    else:
        values = classes.astype(np.float64)
        values[:, 2] = 0.5 + 0.1 * classes[:, 2]
        np.savez_compressed(path, imgs=images, latents_classes=classes.astype(np.int64),
                            latents_values=values,
                            metadata=np.array({"latents_sizes": sizes}, dtype=object))
    return path, images


@pytest.fixture
def small_grids(monkeypatch):
    for name, sizes in SMALL.items():
        monkeypatch.setitem(benchmarks.BENCHMARKS, name, dataclasses.replace(
            benchmarks.BENCHMARKS[name], file_sizes=sizes))


def set_up(name, root, *extra):
    return benchmarks.main([name, "--data_dir", str(root), *extra])


@pytest.mark.parametrize("name", list(SMALL))
def test_a_file_is_checked_and_converted_once_with_its_factors(tmp_path, small_grids, capsys,
                                                               name):
    path, images = make_file(tmp_path / "downloads", name)
    root = tmp_path / name
    assert set_up(name, root, "--file", str(path)) == 0
    out = capsys.readouterr().out
    assert "format checked" in out and f"--dataset {name} --data_dir {root}" in out
    manifest = benchmarks.read_manifest(root)
    spec = benchmarks.BENCHMARKS[name]
    assert manifest["factor_names"] == [n for n, _ in benchmarks.FACTOR_KINDS[name]]
    assert manifest["factor_sizes"] == list(spec.sizes)
    stored = np.load(root / "images.npy")
    expected = images * 255 if spec.channels == 1 else images
    assert np.array_equal(stored.reshape(expected.shape), expected)
    factors = np.load(root / "factors.npy")
    assert np.array_equal(factors, benchmarks.grid_classes(spec.file_sizes)[:, list(
        spec.columns)])
    if name == "shapes3d":
        assert manifest["factor_values"][5] == [-30.0, 0.0, 30.0]
    if name == "dsprites":  # the one-value colour factor is no factor
        assert "color" not in manifest["factor_names"] and len(manifest["factor_names"]) == 5
    assert not list(root.glob("*.tmp-*"))
    before = {p: p.stat().st_mtime_ns for p in root.iterdir()}
    assert set_up(name, root, "--file", str(path)) == 0
    assert "already set up" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in root.iterdir()} == before


def test_every_factor_is_marked_structure_or_appearance_in_one_table():
    for name, table in benchmarks.FACTOR_KINDS.items():
        assert all(kind in benchmarks.KINDS for _, kind in table), name
    kinds = dict(benchmarks.FACTOR_KINDS["shapes3d"])
    assert [n for n, k in kinds.items() if k == "appearance"] == \
        ["floor_hue", "wall_hue", "object_hue"]
    mpi3d = dict(benchmarks.FACTOR_KINDS["mpi3d"])
    assert mpi3d["object_color"] == mpi3d["background_color"] == "appearance"
    assert mpi3d["camera_height"] == mpi3d["horizontal_axis"] == "structure"
    assert {k for _, k in benchmarks.FACTOR_KINDS["dsprites"]} == {"structure"}  # grey
    for name, spec in benchmarks.BENCHMARKS.items():
        assert len(spec.columns) == len(benchmarks.FACTOR_KINDS[name])
    assert benchmarks.BENCHMARKS["shapes3d"].count == 480_000
    assert benchmarks.BENCHMARKS["mpi3d"].count == 1_036_800
    assert benchmarks.BENCHMARKS["dsprites"].count == 737_280
    assert len(benchmarks.CELEBA_ATTRIBUTE_KINDS) == 40


def test_a_missing_file_says_where_to_download_it(tmp_path, capsys):
    assert set_up("mpi3d", tmp_path / "mpi3d") == benchmarks.EXIT_NO_FILE
    err = capsys.readouterr().err
    for url in benchmarks.BENCHMARKS["mpi3d"].urls.values():
        assert url in err
    assert f"curl -L -C - -o {tmp_path / 'mpi3d' / 'mpi3d_toy.npz'}" in err


def one_error_line(capsys):
    """The error: one line (progress bars aside, which tqdm also writes to stderr)."""
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and err.count("error") == 1, err
    return last


def test_a_file_with_the_wrong_grid_or_keys_is_refused_in_one_line(tmp_path, small_grids,
                                                                   capsys):
    path, _ = make_file(tmp_path / "a", "mpi3d", sizes=(2, 2, 2, 1, 2, 2, 2))
    assert set_up("mpi3d", tmp_path / "m", "--file", str(path)) == benchmarks.EXIT_BAD_FILE
    assert "'images' is uint8 (64, 64, 64, 3), expected uint8 (96, 64, 64, 3)" in \
        one_error_line(capsys)
    np.savez(tmp_path / "other.npz", pictures=np.zeros((96, 64, 64, 3), np.uint8))
    assert set_up("mpi3d", tmp_path / "m", "--file", str(tmp_path / "other.npz")) == 2
    assert "has no array 'images' (it has pictures)" in one_error_line(capsys)
    (tmp_path / "text.npz").write_text("not a zip")
    assert set_up("dsprites", tmp_path / "d", "--file", str(tmp_path / "text.npz")) == 2
    assert "is not a .npz file" in one_error_line(capsys)
    assert not (tmp_path / "m" / benchmarks.MANIFEST).exists()


def test_labels_out_of_the_published_order_are_refused(tmp_path, small_grids, capsys):
    import h5py
    path, _ = make_file(tmp_path / "a", "shapes3d")
    with h5py.File(path, "r+") as f:
        labels = f["labels"][()]
        labels[[5, 6]] = labels[[6, 5]]
        f["labels"][...] = labels
    assert set_up("shapes3d", tmp_path / "s", "--file", str(path)) == 2
    assert "'labels' column 3 does not follow the factor grid 2x2x2x2x2x3 (first wrong row " \
        "5)" in one_error_line(capsys)


def test_dsprites_images_must_be_zero_or_one(tmp_path, small_grids, capsys):
    path, _ = make_file(tmp_path / "a", "dsprites")
    with np.load(path, allow_pickle=True) as f:
        arrays = dict(f)
    arrays["imgs"][40, 0, 0] = 255
    np.savez_compressed(path, **arrays)
    assert set_up("dsprites", tmp_path / "d", "--file", str(path)) == 2
    assert "rows 0-47 hold values above 1; dSprites images are 0/1" in one_error_line(capsys)
    assert benchmarks.read_manifest(tmp_path / "d") is None


def test_without_h5py_3d_shapes_says_how_to_install_it(tmp_path, small_grids, capsys,
                                                        monkeypatch):
    path, _ = make_file(tmp_path / "a", "shapes3d")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    assert set_up("shapes3d", tmp_path / "s", "--file", str(path)) == 2
    assert one_error_line(capsys) == "error: 3D Shapes is an HDF5 file and reading it needs " \
        "h5py: pip install h5py"


def test_an_interrupted_conversion_leaves_no_cache_that_would_be_used(tmp_path, small_grids,
                                                                      monkeypatch):
    old, _ = make_file(tmp_path / "old", "dsprites")
    assert set_up("dsprites", tmp_path / "m", "--file", str(old)) == 0  # a cache to replace
    path, _ = make_file(tmp_path / "a", "mpi3d")
    monkeypatch.setattr(benchmarks, "CHUNK_ROWS", 16)
    real = benchmarks.SourceFile.image_blocks

    def cut(self):
        for i, block in enumerate(real(self)):
            if i == 2:
                raise KeyboardInterrupt
            yield block
    monkeypatch.setattr(benchmarks.SourceFile, "image_blocks", cut)
    assert set_up("mpi3d", tmp_path / "m", "--file", str(path)) == benchmarks.EXIT_INTERRUPTED
    assert benchmarks.read_manifest(tmp_path / "m") is None
    assert not list((tmp_path / "m").glob("*.tmp-*"))
    monkeypatch.setattr(benchmarks.SourceFile, "image_blocks", real)
    assert set_up("mpi3d", tmp_path / "m", "--file", str(path)) == 0
    assert benchmarks.read_manifest(tmp_path / "m")["count"] == 96


def test_loading_resizes_and_gives_grey_images_three_channels(tmp_path, small_grids):
    path, images = make_file(tmp_path / "a", "dsprites")
    assert set_up("dsprites", tmp_path / "d", "--file", str(path)) == 0
    cfg = configs.Config(dataset="dsprites", data_dir=str(tmp_path / "d"), image_size=32,
                         heldout_size=10, batch_size=8)
    train_set, heldout, description = data.build_datasets(cfg)
    assert (len(train_set), len(heldout)) == (38, 10)
    assert "grey (structure factors only)" in description and "resized to 32" in description
    x = heldout[0]
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[2])
    batch = next(iter(data.make_loader(train_set, cfg, train=True)))
    assert batch.shape == (cfg.batch_size, 3, 32, 32) and batch.dtype == torch.float32
    full = benchmarks.FactorImages(tmp_path / "d" / "images.npy", [7], 64)[0]
    assert torch.equal(full[0], torch.from_numpy(images[7] * 1.0).float())
    # The held-out images are the same for every seed.
    _, again, _ = data.build_datasets(configs.apply_overrides(cfg, {"seed": 5}))
    assert np.array_equal(heldout.rows, again.rows)


def test_training_needs_the_set_up_and_says_so(tmp_path):
    cfg = configs.parse_args(["--preset", "tiny", "--dataset", "shapes3d"])
    assert benchmarks.benchmark_root(cfg).as_posix() == "data/shapes3d"
    cfg.data_dir = str(tmp_path / "nothing")
    with pytest.raises(imagesets.DataError, match=r"run `python benchmarks.py shapes3d --data_dir"):
        data.build_datasets(cfg)


@pytest.mark.parametrize("name", list(SMALL))
def test_each_benchmark_trains_and_evaluates_end_to_end(tmp_path, small_grids, name):
    path, _ = make_file(tmp_path / "a", name)
    root = tmp_path / name
    assert set_up(name, root, "--file", str(path)) == 0
    out = tmp_path / "out"
    assert train.main(["--preset", "tiny", "--dataset", name, "--data_dir", str(root),
                       "--output_dir", str(out), "--heldout_size", "16", "--epochs", "1",
                       "--factor_vae_train", "6", "--factor_vae_eval", "4",
                       "--factor_vae_variance", "32", "--factor_vae_batch", "8",
                       "--tensorboard", "false"]) == 0
    results = json.loads((out / "final_metrics.json").read_text())
    factors = results["factors"]
    names = [n for n, _ in benchmarks.FACTOR_KINDS[name]]
    assert list(factors["probes"]) == names
    assert factors["kinds"] == dict(benchmarks.FACTOR_KINDS[name])
    # Probe images are drawn at random: in the grid's order the held-out fifth would hold
    # one value of the slowest factors, and their R² would be undefined.
    sizes = benchmarks.BENCHMARKS[name].sizes
    assert all(np.isfinite(factors["probes"][f]["all_r2"]) == (size > 1)  # 1: constant
               for f, size in zip(names, sizes)), factors["probes"]
    assert {"mig", "dci", "sap", "factor_vae"} <= set(factors)
    assert "eval_accuracy" in factors["factor_vae"], factors["factor_vae"]
    assert factors["factor_vae"]["counts"]["train_votes"] == 6
    report = (out / "report.md").read_text()
    for text in ("## Generating factors: ", "| factor | kind | measure | chance | from core (",
                 "MIG ", "DCI ", "SAP ", "FactorVAE score", "![factor_probes]"):
        assert text in report, text
    for factor, kind in benchmarks.FACTOR_KINDS[name]:
        assert f"| {factor} | {kind} |" in report
    if name == "dsprites":
        assert "structure factors only" in report
    assert (out / "factor_probes.png").stat().st_size > 0


def test_the_factor_table_holds_the_values_planted_in_the_codes(tmp_path, monkeypatch):
    """Not only keys: codes built from the factors (core dim 0 = horizontal_axis, core dim 1
    = object_shape with its classes out of order, detail dim 5 = background_color, the rest
    noise) give the answer known by construction in final_metrics' probes and in report.md."""
    import probes
    import report
    sizes = (2, 3, 2, 2, 2, 10, 12)
    monkeypatch.setitem(benchmarks.BENCHMARKS, "mpi3d", dataclasses.replace(
        benchmarks.BENCHMARKS["mpi3d"], file_sizes=sizes))
    path, _ = make_file(tmp_path / "a", "mpi3d", sizes)
    root = tmp_path / "mpi3d"
    assert set_up("mpi3d", root, "--file", str(path)) == 0
    cfg = configs.parse_args(["--preset", "tiny", "--dataset", "mpi3d", "--data_dir", str(root),
                              "--probe_images", "1500", "--factor_vae_train", "0",
                              "--dci_trees", "2"])
    grid = benchmarks.factor_set(cfg).factors
    names = list(benchmarks.factor_set(cfg).names)
    col = {n: names.index(n) for n in names}

    def planted(vae, images, rows, device, amp):
        f = grid[np.asarray(rows)]
        codes = np.random.default_rng(len(rows)).normal(size=(len(rows), 8)) * 0.01
        codes[:, 0] += f[:, col["horizontal_axis"]]
        codes[:, 1] += np.array([0.0, 2.0, 1.0])[f[:, col["object_shape"]].astype(int)]
        codes[:, 5] += f[:, col["background_color"]]
        return codes
    monkeypatch.setattr(probes, "encode_rows", planted)

    class Stub:
        core_dim = 2
    factors = probes.factor_report(Stub(), cfg, "cpu")
    p = factors["probes"]
    assert p["horizontal_axis"]["measure"] == "r2" and p["horizontal_axis"]["core"] > 0.999
    assert abs(p["horizontal_axis"]["detail"]) < 0.05
    assert p["object_shape"]["measure"] == "balanced_accuracy"
    assert p["object_shape"]["core"] == pytest.approx(1.0)
    assert p["object_shape"]["chance"] == pytest.approx(1 / 3)
    assert abs(p["object_shape"]["detail"] - 1 / 3) < 0.1
    assert p["background_color"]["detail_best_k"] == pytest.approx(1.0)
    assert p["background_color"]["detail_dims"][0] == 5
    assert abs(p["background_color"]["core"] - 0.5) < 0.1
    assert abs(p["vertical_axis"]["all"]) < 0.05 and p["vertical_axis"]["measure"] == "r2"
    assert factors["probe_k"] == 2
    text = "\n".join(report.factor_lines(factors))
    assert "| object_shape | structure | balanced accuracy | 0.333 | 1 |" in text
    assert f"| horizontal_axis | structure | R² | 0 | {p['horizontal_axis']['core']:.3g} |" in text
