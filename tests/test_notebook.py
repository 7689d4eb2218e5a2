"""The Colab notebook runs top to bottom outside Colab: headless, CPU, demo preset."""
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent


def with_parameters(parameters):
    notebook = nbformat.read(ROOT / "bom_vae_v15.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n# injected by the test\n" + "\n".join(
        f"{name} = {value!r}" for name, value in parameters.items())
    return notebook


def execute(notebook):
    """Run it in place (outputs stay in `notebook`, also when a cell fails)."""
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return notebook


def run_notebook(parameters):
    return execute(with_parameters(parameters))


def outputs_text(notebook):
    return "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []))


def test_the_notebook_runs_the_demo_and_shows_every_picture(tmp_path):
    out = tmp_path / "outputs"
    notebook = run_notebook({
        "PRESET": "demo", "OUTPUT_DIR": str(out),
        "EXTRA_ARGS": "--epochs 2 --synthetic_size 96 --heldout_size 32 --batch_size 16 "
                      "--calibration_batches 3"})
    text = outputs_text(notebook)
    assert "Colab: False" in text and "outside Colab: using the current environment" in text
    assert "=== epoch 2/2" in text
    images = sum(1 for cell in notebook.cells if cell.cell_type == "code"
                 for o in cell.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images == 10
    assert "Does core carry structure" in str(notebook.cells[-2].outputs)
    assert (out / "checkpoint.pt").exists()


def test_a_failing_training_fails_the_notebook(tmp_path):
    # CODE_DIR pointing at this project is taken (outside Colab it is used in place).
    notebook = with_parameters({"PRESET": "demo", "OUTPUT_DIR": str(tmp_path),
                                "EXTRA_ARGS": "--epochs 0", "CODE_DIR": str(ROOT)})
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="exited with code 2"):
        execute(notebook)
    assert f"project folder: {ROOT}" in outputs_text(notebook)


def errors(notebook):
    return [out for cell in notebook.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.output_type == "error"]


@pytest.mark.parametrize("layout", ["seed", "empty"])
def test_code_that_is_not_this_project_stops_the_notebook_in_one_line(tmp_path, layout):
    """The seed's repository (an earlier system: a train.py, no presets) or an empty folder as
    the code source: the get-the-code cell stops with one line saying what to set."""
    code = tmp_path / "bom_vea"
    code.mkdir()
    if layout == "seed":
        (code / "train.py").write_text("import argparse  # the seed's earlier system\n")
        (code / "configs.py").write_text("EPOCHS = 35\n")
    notebook = with_parameters({"PRESET": "demo", "OUTPUT_DIR": str(tmp_path / "out"),
                                "CODE_DIR": str(code)})
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        execute(notebook)
    [error] = errors(notebook)
    assert error.traceback == [
        f"STOP: {code}: not this project's code (no train.py beside a configs.py that defines "
        "PRESETS; the seed's bom_vea repository is an earlier system); set REPO_URL or "
        "CODE_DIR in the Parameters cell to this project's code"]
    assert "project folder" not in outputs_text(notebook) and not (tmp_path / "out").exists()


def test_on_colab_without_a_code_source_the_notebook_says_what_to_set(tmp_path):
    """As shipped (REPO_URL and CODE_DIR empty), on Colab (faked) in a folder without the
    project: one line asking for the code source, rather than cloning anything."""
    notebook = with_parameters({"PRESET": "demo"})
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += ("\nimport os, sys, types\n"
                    "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
                    f"os.chdir({str(tmp_path)!r})")
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        execute(notebook)
    assert "Colab: True" in outputs_text(notebook)
    [error] = errors(notebook)
    assert error.traceback == [
        "STOP: set REPO_URL (this project's git URL) or CODE_DIR (the project folder, e.g. on "
        "Google Drive) in the Parameters cell, then run all again"]
    assert list(tmp_path.iterdir()) == []  # nothing cloned


SETUP_CELL = '"celeba_setup.py", "--data_dir"'  # a fragment of the CelebA cell alone
FAKE_COLAB = """
import os, sys, types
colab = types.ModuleType("google.colab")
colab.drive = types.SimpleNamespace(mount=lambda folder: print("mounted", folder))
sys.modules["google.colab"] = colab
"""


def celeba_cells_on_colab(parameters):
    """The notebook's cells up to its CelebA set-up, on Colab (faked, Drive mounted by a stand-in)
    without the install and get-the-code cells, which would pip install and clone."""
    notebook = with_parameters(parameters)
    keep = [c for c in notebook.cells if c.cell_type == "code" and not any(
        word in c.source for word in ("requirements.txt", "def code_folder", "nvidia-smi"))]
    stop = next(i for i, c in enumerate(keep) if SETUP_CELL in c.source)
    notebook.cells = keep[:stop + 1]
    notebook.cells[0].source += FAKE_COLAB
    return notebook


def cell_text(notebook, fragment):
    cell = next(c for c in notebook.cells if fragment in c.source)
    return "".join(o.get("text", "") for o in cell.outputs)


def test_on_colab_with_drive_celeba_is_kept_there_and_a_new_session_does_not_download(
        tmp_path):
    from test_celeba_setup import tiny_celeba_zip
    given = tmp_path / "archive.zip"
    given.write_bytes(tiny_celeba_zip())
    drive, data = tmp_path / "drive", tmp_path / "content" / "data"
    small = "--expected_images 5 --no-annotations --image_size 16 --workers 1"
    parameters = {"USE_DRIVE": True, "DRIVE_DIR": str(drive), "DATA_DIR": str(data),
                  "OUTPUT_DIR": str(tmp_path / "content" / "out")}
    first = execute(celeba_cells_on_colab({**parameters,
                                           "CELEBA_ARGS": f"--zip {given} {small}"}))
    text = cell_text(first, SETUP_CELL)
    # celeba_setup.py's own lines show in the cell (IPython's `!`, not a bare subprocess).
    assert "checked by content" in text and "preprocess 16x16" in text
    kept = drive / "celeba"
    assert (kept / "archive.zip").read_bytes() == given.read_bytes()
    assert (kept / "preprocessed_16.npy").is_file() and (kept / "preprocessed_16.json").is_file()
    assert not list(kept.glob("*.part"))
    # A reconnect: local disk is new, Drive is not. No --zip given: the kept one is used, and
    # the kept cache spares the decoding.
    shutil.rmtree(tmp_path / "content")
    given.unlink()
    second = execute(celeba_cells_on_colab({**parameters, "CELEBA_ARGS": small}))
    text = cell_text(second, SETUP_CELL)
    assert f"--zip {kept / 'archive.zip'}" in text
    assert f"copying {kept / 'preprocessed_16.npy'}" in text
    assert "preprocess 16x16" not in text and "download" not in text.lower()
    assert (data / "img_align_celeba" / "000001.jpg").is_file()


def test_on_colab_the_notebook_installs_what_lpips_and_fid_need():
    """evaluate.py skips LPIPS and FID without torchmetrics and torch-fidelity: the install
    cell brings them on Colab, from requirements-metrics.txt."""
    notebook = nbformat.read(ROOT / "bom_vae_v15.ipynb", as_version=4)
    [install] = [c for c in notebook.cells if c.cell_type == "code"
                 and "pip" in c.source and "install" in c.source]
    assert '"-r", "requirements-metrics.txt"' in install.source
    wanted = {line.split(">=")[0].split("[")[0].strip() for line in
              (ROOT / "requirements-metrics.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert wanted == {"torchmetrics", "torch-fidelity"}
