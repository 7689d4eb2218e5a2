"""The Colab notebook runs top to bottom outside Colab: headless, CPU, demo preset."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent


def run_notebook(parameters):
    notebook = nbformat.read(ROOT / "bom_vae_v15.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n# injected by the test\n" + "\n".join(
        f"{name} = {value!r}" for name, value in parameters.items())
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return notebook


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
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="exited with code 2"):
        run_notebook({"PRESET": "demo", "OUTPUT_DIR": str(tmp_path),
                      "EXTRA_ARGS": "--epochs 0"})
