"""lab/ is the research record: its index (lab/README.md) gives every result file and every
experiment script a line, no script sits in a results folder, and the scripts in
lab/experiments/ still run on today's code (the two summaries give back their kept tables)."""
import importlib.util
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "lab"
INDEX = LAB / "README.md"
EXPERIMENTS = LAB / "experiments"
RESULT_FOLDERS = (LAB / "results", ROOT / "bench" / "results")
SCRIPTS = sorted(EXPERIMENTS.glob("*.py"))


def load(path):
    """A script as a module (its top level runs: the summaries print their table)."""
    spec = importlib.util.spec_from_file_location(f"lab_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_script_sits_in_a_results_folder():
    for folder in RESULT_FOLDERS:
        scripts = [p.relative_to(ROOT).as_posix() for p in folder.rglob("*")
                   if p.suffix in (".py", ".sh", ".ipynb")]
        assert scripts == [], f"move them to lab/experiments/ or retire them: {scripts}"


def test_the_index_has_a_line_for_every_result_file_and_script():
    index = INDEX.read_text()
    linked = set(re.findall(r"\]\((results/[^)#\s]+)", index))
    for report in sorted((LAB / "results").glob("*.md")):
        assert f"results/{report.name}" in linked, f"lab/README.md has no line for {report.name}"
    for script in SCRIPTS:
        assert f"lab/experiments/{script.name}" in index, f"lab/README.md never runs {script.name}"


def test_the_index_names_the_commit_of_every_retired_script():
    retired = INDEX.read_text().split("\n## Retired scripts\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in retired.splitlines() if line.startswith("| `")]
    assert rows
    for row in rows:
        path, _, commit = (cell.strip() for cell in row.strip("|").split("|"))
        assert re.fullmatch(r"`[\w./+-]+\.(py|sh)`", path), row
        assert re.fullmatch(r"[0-9a-f]{7,40}", commit), row
        assert not (ROOT / path.strip("`")).exists(), f"{path} is retired but still there"


def test_the_grad_clip_summary_gives_back_its_kept_table():
    out = io.StringIO()
    with redirect_stdout(out):
        load(EXPERIMENTS / "grad_clip_demo_summary.py")
    assert out.getvalue() == (LAB / "results" / "grad_clip_demo" / "summary.txt").read_text()


def test_the_consistency_units_summary_gives_back_its_kept_table():
    out = io.StringIO()
    with redirect_stdout(out):
        load(EXPERIMENTS / "consistency_units_summary.py")
    rows = [line for line in out.getvalue().splitlines() if line.startswith("| ")][2:]
    kept = (LAB / "results" / "consistency_units_cpu.md").read_text()
    assert len(rows) > 10 and all(row in kept for row in rows)


@pytest.mark.parametrize("script", [p for p in SCRIPTS if "__main__" in p.read_text()],
                         ids=lambda p: p.stem)
def test_each_experiment_script_imports_on_todays_code(script):
    module = load(script)
    assert callable(getattr(module, "main", None)), script.name


def test_the_drawn_split_table_marks_the_seeds_whose_split_was_withheld():
    drawn_split = load(EXPERIMENTS / "drawn_split.py")
    nan = float("nan")

    def run(seed, split, placement):
        return {"variant": "lbo", "seed": seed, "dataset": "synthetic", "source": "evaluation",
                "split_score": split,
                "drawn_split": split, "swap_factors": {"hue": placement},
                "recon_factors": {"hue": 0.9}}

    table = drawn_split.markdown([run("seed_0", 0.6, 0.7), run("seed_1", nan, nan)],
                                 "python lab/experiments/drawn_split.py A B", "abc1234",
                                 "a test machine")
    assert "| synthetic | lbo | 2 | 0.60 (1/2) | 0.60 (1/2) | 0.70 (1/2) (0.90) |" in table
    assert "at commit abc1234, on a test machine" in table
    assert "the run's evaluation's for 2 runs, measured again from the checkpoint at this " \
           "commit for 0" in table


def test_the_drawn_split_table_takes_the_evaluation_s_placements_when_it_has_them(tmp_path):
    """A run evaluated with the drawn split needs no checkpoint; one evaluated before it is
    measured only when its checkpoint was kept."""
    import json
    drawn_split = load(EXPERIMENTS / "drawn_split.py")
    drawn = {"swap_factors": {"hue": 0.7}, "recon_factors": {"hue": 0.9}, "swap_structure": 0.8,
             "swap_appearance": 0.7, "drawn_split": 0.7}
    final = {"reconstruction": {"variance_explained": 0.8}, "behaviour": {"swap": {}},
             "drawn_shapes": {"swap_kind": 0.3}}  # evaluated before the placements
    evaluated, older = tmp_path / "lbo" / "seed_0", tmp_path / "lbo" / "seed_1"
    for folder, metrics in ((evaluated, {**final, "drawn_shapes": {"swap_kind": 0.3, **drawn}}),
                            (older, final)):
        folder.mkdir(parents=True)
        (folder / "final_metrics.json").write_text(json.dumps(metrics))
        (folder / "study_run.json").write_text(json.dumps({"config": {"dataset": "synthetic"}}))
    run = drawn_split.measure_run(evaluated)
    assert (run["source"], run["drawn_split"], run["swap_factors"]) == ("evaluation", 0.7,
                                                                       {"hue": 0.7})
    assert drawn_split.measurable(evaluated) and not drawn_split.measurable(older)
    (older / "checkpoint.pt").touch()
    assert drawn_split.measurable(older)
