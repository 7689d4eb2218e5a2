"""study.py: a grid of variants x seeds that runs, resumes without redoing finished runs, and
reports means with 95 % intervals computed right."""
import json
import math

import pytest

import study


def test_the_interval_is_students_t_on_known_numbers():
    mean, half, n = study.interval([1.0, 2.0, 3.0])  # sd 1, t(2) = 4.303
    assert (mean, n) == (2.0, 3) and half == pytest.approx(4.303 / math.sqrt(3))
    mean, half, n = study.interval([0.5, 0.7, float("nan"), 0.6, 0.8, 0.4])  # NaN left out
    sd = math.sqrt(sum((v - 0.6) ** 2 for v in (0.5, 0.7, 0.6, 0.8, 0.4)) / 4)
    assert (n, mean) == (5, pytest.approx(0.6)) and half == pytest.approx(2.776 * sd / math.sqrt(5))
    assert study.interval([4.0])[0] == 4.0 and math.isnan(study.interval([4.0])[1])
    assert study.interval([])[2] == 0
    assert study.t_quantile(11) == 2.228  # between rows: the wider interval (10 df)
    assert study.cell([1.0, 2.0, 3.0]) == "2 ± 2.5" and study.cell([4.0]) == "4 (n=1)"


def test_unknown_variants_are_refused(capsys):
    with pytest.raises(SystemExit):
        study.parse_args(["--variants", "lbo,nope"])
    assert "unknown variant nope" in capsys.readouterr().err


def test_a_tiny_grid_runs_and_resumes_without_redoing_finished_runs(tmp_path):
    out = tmp_path / "study"
    argv = ["--preset", "tiny", "--variants", "lbo_no_realism,elbo_beta1", "--seeds", "2",
            "--out", str(out), "--epochs", "2"]
    assert study.main(argv) == 0
    runs = [out / v / f"seed_{s}" for v in ("lbo_no_realism", "elbo_beta1") for s in (0, 1)]
    finished = {run: (run / "final_metrics.json").stat().st_mtime_ns for run in runs}
    report = (out / "study.md").read_text()
    assert "| metric | lbo_no_realism | elbo_beta1 |" in report
    assert "| ssim | " in report and " ± " in report and (out / "study.png").stat().st_size
    assert "- command: `python study.py --preset tiny --variants lbo_no_realism," in report
    table = json.loads((out / "study.json").read_text())
    assert table["elbo_beta1"]["seeds"] == [0, 1]
    # The realism group was left out of the barrier: never a bottleneck, never refused.
    assert table["lbo_no_realism"]["metrics"]["bottleneck_realism"] == [0.0, 0.0]
    assert all(len(v) == 2 for v in table["lbo_no_realism"]["metrics"].values())
    # An interrupted run: its checkpoint is there, its evaluation is not.
    interrupted = runs[1]
    (interrupted / "final_metrics.json").unlink()
    assert study.main(argv) == 0
    assert "resuming from" in (interrupted / "train.log").read_text()
    for run in runs:
        if run != interrupted:  # finished runs were not run again
            assert (run / "final_metrics.json").stat().st_mtime_ns == finished[run]
            assert "resuming from" not in (run / "train.log").read_text()
    assert (interrupted / "final_metrics.json").exists()


def test_a_variant_beats_the_control_only_when_the_intervals_are_apart():
    control = [0.50, 0.52, 0.48]                      # 0.5 ± 0.05
    assert study.compare([0.70, 0.72, 0.68], control, "higher") == "better"
    assert study.compare([0.70, 0.72, 0.68], control, "lower") == "worse"
    assert study.compare([0.30, 0.32, 0.28], control, "higher") == "worse"
    assert study.compare([0.53, 0.56, 0.50], control, "higher") == "overlap"  # 0.53 ± 0.075
    assert study.compare([0.9], control, "higher") == "–"  # one seed: no interval
    table = {"lbo": {"metrics": {"ssim": [0.70, 0.72, 0.68]}},
             study.CONTROL: {"metrics": {"ssim": control}}}
    lines = study.verdict_lines(table)
    assert "| metric (better is) | lbo |" in lines
    assert "| ssim (higher) | better |" in lines
    assert "| core_specificity (higher) | – |" in lines
