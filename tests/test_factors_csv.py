"""--factors FILE.csv: any labelled image folder gets the factor metrics; a malformed file stops
with one line naming the row and column."""
import json

import numpy as np
import pytest
from PIL import Image

import benchmarks
import configs
import data
import imagesets
import train


def make_folder(root, n=40):
    """Images of a square whose size (structure) and colour (appearance) are known."""
    rng = np.random.default_rng(0)
    rows = ["file,size:structure,redness:appearance"]
    for i in range(n):
        size, red = rng.integers(6, 26), rng.random()
        pixels = np.full((32, 32, 3), 30, np.uint8)
        pixels[4:4 + size, 4:4 + size] = (int(255 * red), 120, 80)
        name = f"img{i:03d}.png"
        Image.fromarray(pixels).save(root / name)
        rows.append(f"{name},{size},{red:.4f}")
    return rows


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    rows = make_folder(root)
    return root, rows


def write(tmp_path, rows):
    path = tmp_path / "factors.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_labelled_folder_trains_and_gets_the_factor_table(tmp_path, folder):
    root, rows = folder
    path = write(tmp_path, rows)
    out = tmp_path / "out"
    assert train.main(["--preset", "tiny", "--dataset", "folder", "--data_dir", str(root),
                       "--factors", str(path), "--heldout_size", "8", "--epochs", "1",
                       "--output_dir", str(out), "--tensorboard", "false"]) == 0
    factors = json.loads((out / "final_metrics.json").read_text())["factors"]
    assert factors["kinds"] == {"size": "structure", "redness": "appearance"}
    assert factors["images"] == 40 and set(factors["probes"]) == {"size", "redness"}
    assert "cannot be sampled" in factors["factor_vae"]["skipped"]
    report = (out / "report.md").read_text()
    assert "| size | structure |" in report and "| redness | appearance |" in report
    assert "FactorVAE score n/a (its factors cannot be sampled" in report
    assert (out / "factor_probes.png").exists()


def test_the_values_and_marks_are_read_as_written(tmp_path, folder):
    root, rows = folder
    files, names, kinds, values = benchmarks.read_factor_csv(
        write(tmp_path, rows), imagesets.list_images(root, root))
    assert names == ["size", "redness"] and kinds == ["structure", "appearance"]
    assert files[3] == "img003.png" and values.shape == (40, 2)
    assert values[3, 1] == float(rows[4].split(",")[2])


@pytest.mark.parametrize("edit, message", [
    (lambda r: [r[0].replace("redness:appearance", "redness:colour")] + r[1:],
     "row 1, column 3 ('redness:colour'): unknown mark 'colour'; use structure or appearance"),
    (lambda r: [r[0].replace("size:structure", "size")] + r[1:],
     "row 1, column 2 ('size'): mark the factor NAME:structure or NAME:appearance"),
    (lambda r: r[:5] + [r[5].replace(r[5].split(",")[2], "abc")] + r[6:],
     "row 6, column 3 (redness): 'abc' is not a finite number"),
    (lambda r: r[:3] + [r[3].replace("img002", "img999")] + r[4:],
     "row 4, column 1: no image 'img999.png' in the folder"),
    (lambda r: r[:9] + [r[2]] + r[10:],
     "row 10, column 1: 'img001.png' is listed again (first on row 3)"),
    (lambda r: r[:7] + [r[7] + ",1"] + r[8:], "row 8: 4 cells, the header has 3"),
    (lambda r: r[:7] + [r[7].replace(r[7].split(",")[1], "nan")] + r[8:],
     "row 8, column 2 (size): 'nan' is not a finite number"),
], ids=["unknown mark", "no mark", "not a number", "missing image", "duplicate name",
        "extra cell", "nan"])
def test_a_malformed_file_stops_the_run_with_one_line(tmp_path, folder, capsys, edit, message):
    root, rows = folder
    path = write(tmp_path, edit(rows))
    code = train.main(["--preset", "tiny", "--dataset", "folder", "--data_dir", str(root),
                       "--factors", str(path), "--output_dir", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {path} ") and message in err, err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_factors_belong_to_a_folder_dataset(tmp_path, folder):
    root, rows = folder
    cfg = configs.parse_args(["--preset", "tiny", "--factors", str(write(tmp_path, rows))])
    with pytest.raises(imagesets.DataError, match="use it with --dataset folder, not --dataset "
                       "synthetic"):
        data.build_datasets(cfg)
