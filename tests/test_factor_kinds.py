"""Which factors are discrete (class labels for MIG, DCI and SAP) and which continuous (cut
into bins) is said by the dataset, not guessed from how many values a sample shows: benchmark
factors are class indices, the built-in shapes' shape is a class and its other factors are
uniform draws, a --factors column of whole numbers is discrete. factor_report passes that on."""
import math

import numpy as np
import pytest
import torch

import benchmarks
import configs
import disentanglement
import probes
from models import Posterior
from test_benchmarks import make_file, set_up, small_grids  # noqa: F401 (a fixture)
from test_factors_csv import make_folder, write


def test_the_built_in_shapes_have_one_discrete_factor():
    cfg = configs.parse_args(["--preset", "tiny"])
    factor_set = benchmarks.factor_set(cfg)
    assert dict(zip(factor_set.names, factor_set.discrete)) == {
        "shape": True, "x": False, "y": False, "size": False, "rotation": False,
        "hue": False, "brightness": False, "bg_hue": False, "bg_brightness": False}
    # As drawn: shape one of 3 values, every other factor a fresh uniform value per image.
    assert len(np.unique(factor_set.factors[:, 0])) == 3
    assert all(len(np.unique(c)) == len(factor_set) for c in factor_set.factors[:, 1:].T)


@pytest.mark.parametrize("column, discrete", [
    ([0, 1, 2, 40, 3], True), ([6.0, 7.0, 25.0], True), ([-3, 0, 2], True),
    ([0.25, 1.0, 2.0], False), ([0.1, 0.2], False), ([1e6 + 0.5, 2.0], False),
])
def test_a_csv_column_of_whole_numbers_is_discrete(column, discrete):
    assert benchmarks.csv_column_is_discrete(np.array(column, dtype=float)) is discrete


def test_a_labelled_folder_marks_whole_number_columns_discrete(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    rows = make_folder(root)  # size: whole pixels 6..25; redness: four decimals
    cfg = configs.parse_args(["--preset", "tiny", "--dataset", "folder", "--data_dir",
                              str(root), "--factors", str(write(tmp_path, rows))])
    factor_set = benchmarks.factor_set(cfg)
    assert factor_set.names == ["size", "redness"] and factor_set.discrete == [True, False]


def test_benchmark_factors_are_class_indices(tmp_path, small_grids):  # noqa: F811
    path, _ = make_file(tmp_path / "a", "dsprites")
    root = tmp_path / "dsprites"
    assert set_up("dsprites", root, "--file", str(path)) == 0
    cfg = configs.parse_args(["--preset", "tiny", "--dataset", "dsprites", "--data_dir",
                              str(root)])
    factor_set = benchmarks.factor_set(cfg)
    assert factor_set.discrete == [True] * 5
    # dSprites' orientation is stored as class indices 0..n-1, as the grid says.
    sizes = benchmarks.BENCHMARKS["dsprites"].sizes
    for column, size in zip(factor_set.factors.T, sizes):
        assert set(np.unique(column)) == set(range(size))


class ReadOffVAE(torch.nn.Module):
    """Codes that are the factors written into the images (pixel [0, 0] of channels 0, 1)."""
    core_dim = 1

    def posterior(self, x):
        z = torch.stack([x[:, 0, 0, 0], x[:, 1, 0, 0]], 1)
        return Posterior(z, torch.zeros_like(z))


def test_factor_report_scores_a_32_class_factor_by_its_classes(monkeypatch):
    rng = np.random.default_rng(0)
    n = 1500
    factors = np.c_[rng.integers(0, 32, n), rng.uniform(size=n)].astype(np.float64)

    def images(rows):
        values = torch.from_numpy(factors[np.asarray(rows)]).float()
        return values[:, :, None, None].expand(-1, -1, 4, 4).repeat(1, 2, 1, 1)[:, :3]
    factor_set = benchmarks.FactorSet("test factors", ["x", "u"], ["structure", "appearance"],
                                      factors, images, random_order=True,
                                      discrete=[True, False])
    monkeypatch.setattr(benchmarks, "factor_set", lambda cfg: factor_set)
    cfg = configs.parse_args(["--preset", "tiny"])
    cfg.probe_images, cfg.dci_trees = n, 2
    report = probes.factor_report(ReadOffVAE(), cfg, torch.device("cpu"))
    codes = factors.astype(np.float32).astype(np.float64)  # encoded in float32
    expected = disentanglement.mutual_information_gap(codes, factors, discrete=[True, False])
    binned = disentanglement.mutual_information_gap(codes, factors, discrete=False)
    assert report["mig_per_factor"] == pytest.approx(expected["per_factor"], rel=1e-12)
    assert report["mig_per_factor"][0] < binned["per_factor"][0] - 0.1  # 32 classes, not 20
    assert report["classes"] == {"x": 32, "u": "continuous"}
    # DCI and SAP classify the 32 classes: one-dim codes read off exactly get them all right.
    assert report["dci"]["informativeness"] == pytest.approx(1.0)
    assert math.isfinite(report["sap"])
