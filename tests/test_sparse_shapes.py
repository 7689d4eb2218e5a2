"""The second kind of built-in data: small shapes on black, appearance the object's colour and
intensity alone, as third-party sets of small objects have it and the shapes lack."""
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmarks
import configs
import data
import imagesets


@pytest.fixture
def sparse_cfg(tmp_path):
    return configs.parse_args(["--preset", "tiny", "--dataset", "synthetic_sparse",
                               "--output_dir", str(tmp_path)])


def test_it_is_selected_like_the_built_in_shapes_and_draws_small_objects_on_black(sparse_cfg):
    train, heldout, description = data.build_datasets(sparse_cfg)
    assert isinstance(train, imagesets.SparseShapes) and isinstance(heldout, imagesets.SparseShapes)
    assert description.startswith("small shapes on black, 64 train / 32 held-out")
    for i in range(len(heldout)):
        image, factors = heldout[i], heldout.factors(i)
        cover = torch.from_numpy(imagesets.SparseShapes.coverage(factors, 32))
        assert image[:, cover < 1e-4].abs().max() < 1e-4  # the background is black
        assert 0.005 < cover.mean() < 0.05  # a few percent of the pixels
    # Most of each image is black: a black frame is nearly as close as the mean image.
    x = torch.stack([heldout[i] for i in range(len(heldout))])
    assert x.pow(2).mean() < 1.2 * x.var(0, unbiased=False).mean()


def test_its_factors_are_structure_and_the_object_s_colour_and_intensity(sparse_cfg):
    assert imagesets.SparseShapes.FACTORS == ("shape", "x", "y", "size", "rotation", "hue",
                                              "brightness")
    factor_set = benchmarks.factor_set(sparse_cfg)
    assert dict(zip(factor_set.names, factor_set.kinds)) == {
        **{n: "structure" for n in ("shape", "x", "y", "size", "rotation")},
        "hue": "appearance", "brightness": "appearance"}
    assert factor_set.title == "built-in small shapes on black"
    # Appearance is in the object's pixels alone: brighter objects, brighter pixels.
    shapes = imagesets.SparseShapes(2, 32)
    dim, bright = np.array([[0.5, 0.5, 0.5, 1, 0, 0.3, 0.0], [0.5, 0.5, 0.5, 1, 0, 0.3, 1.0]],
                           dtype=np.float32)
    assert shapes.render(bright, 32).max() > 2 * shapes.render(dim, 32).max()


def test_a_run_on_it_trains_and_measures_its_factors(sparse_cfg):
    import json
    import train
    out = sparse_cfg.output_dir
    assert train.main(["--preset", "tiny", "--dataset", "synthetic_sparse", "--epochs", "1",
                       "--output_dir", out]) == 0
    results = json.loads((Path(out) / "final_metrics.json").read_text())
    assert set(results["factors"]["probes"]) == set(imagesets.SparseShapes.FACTORS)
    assert results["drawn_shapes"]["images"] == 32
