"""study.py: a grid of variants x seeds that runs, resumes without redoing finished runs, and
reports means with 95 % intervals computed right."""
import json
import math

import pytest

import configs
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
    assert study.cell([1.0, 2.0, 3.0]) == "2 ± 2.5 (n=3/3)" and study.cell([4.0]) == "4 (n=1/1)"


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
    assert table["lbo_no_realism"]["metrics"]["bottleneck_most_in_an_epoch_realism"] == [0, 0]
    # The largest share in any epoch, and the held-out MSE's gain over the last epoch (of 2).
    history = [json.loads(line) for line in
               (runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert table["lbo_no_realism"]["metrics"]["bottleneck_most_in_an_epoch_recon"][0] == \
        max(r["bottleneck"]["recon"] for r in history)
    first, last = (r["heldout_mse"] for r in history)
    assert table["lbo_no_realism"]["metrics"]["heldout_mse_recent_gain"][0] == \
        pytest.approx((first - last) / first)
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


def row(seeds, values, name="ssim"):
    """A variant's entry in study.collect's table, for one metric."""
    return {"seeds": seeds, "metrics": {name: values}}


def test_a_failed_seed_is_counted_and_leaves_the_metric_without_a_verdict():
    nan = float("nan")
    # 0.6 ± t(1) sd / sqrt(2), t(1) = 12.706, sd = 0.1414: the two finite seeds of three
    assert study.cell([0.5, nan, 0.7]) == "0.6 ± 1.3 (n=2/3)"
    assert study.cell([nan, nan]) == "– (n=0/2)"
    control = [0.50, 0.52, 0.48]
    # Without the NaN seed it would be "better" (see the test above); a failure blocks that.
    assert study.compare([0.70, nan, 0.72], control, "higher") == "– (1/3 failed)"
    assert study.compare([0.70, 0.72, 0.68], [0.5, nan, 0.5], "higher") == \
        "– (control 1/3 failed)"
    table = {"lbo_score_realism": {**row([0, 1, 2], [0.70, nan, 0.72]), "stops": ["epoch budget"],
                                   "commits": ["abc1234", "abc1234", "def5678+dirty"]},
             study.CONTROL: {**row([0, 1, 2], control), "stops": ["epoch budget"],
                             "commits": ["abc1234"] * 3}}
    assert "| ssim (higher) | – (1/3 failed) |" in study.verdict_lines(table)
    # Seeds 0 and 2 still pair up (0.20, 0.24: 0.22 ± 12.706 × 0.0283 / √2) but give no verdict.
    assert "| ssim (higher) | +0.22 ± 0.25 (n=2 pairs) – (1/3 failed) |" in \
        study.paired_lines(table)
    report = study.markdown(table, study.parse_args(["--variants", "lbo_score_realism"]), None)
    assert "| ssim | 0.71 ± 0.13 (n=2/3) | 0.5 ± 0.05 (n=3/3) |" in report
    assert "counts as a failed seed" in report  # the legend says how NaNs are judged
    assert ("- runs made at several commits: abc1234: lbo_score_realism seeds [0, 1], "
            f"{study.CONTROL} seeds [0, 1, 2]; def5678+dirty: lbo_score_realism seeds [2]") \
        in report


def test_the_paired_interval_is_the_mean_seed_difference_with_students_t():
    # The control has a seed the variant lacks (seed 0): pairs go by seed, not by position.
    control = row([0, 1, 2, 3], [9.0, 0.5, 0.9, 0.2])
    variant = row([1, 2, 3], [0.6, 1.1, 0.5])  # differences 0.1, 0.2, 0.3: sd 0.1
    mean, half, n = study.paired(variant, control, "ssim")
    assert n == 3 and mean == pytest.approx(0.2)
    assert half == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    # A seed that is NaN in either run does not pair up.
    mean, half, n = study.paired(row([1, 2, 3], [0.6, float("nan"), 0.5]), control, "ssim")
    assert n == 2 and mean == pytest.approx(0.2)


def test_pairing_by_seed_shows_a_difference_the_spread_between_seeds_hides():
    # Seed to seed both runs move together (0.2 .. 0.8); the variant is always 0.04-0.06 higher.
    control, variant = row([0, 1, 2], [0.2, 0.5, 0.8]), row([0, 1, 2], [0.25, 0.56, 0.84])
    assert study.compare(variant["metrics"]["ssim"], control["metrics"]["ssim"],
                         "higher") == "overlap"
    assert study.compare_paired(variant, control, "ssim", "higher") == \
        "+0.05 ± 0.025 (n=3 pairs) better"
    assert study.compare_paired(variant, control, "ssim", "lower").endswith(" worse")
    noisy = row([0, 1, 2], [0.25, 0.46, 0.84])  # differences +0.05, -0.04, +0.04
    assert study.compare_paired(noisy, control, "ssim", "higher").endswith(" includes 0")
    assert study.compare_paired(row([0], [0.3]), control, "ssim", "higher") == \
        "+0.1 (n=1 pairs) –"


def test_a_finished_run_is_reused_only_with_the_config_the_grid_runs_now(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["--preset", "tiny", "--variants", "elbo_beta1", "--seeds", "1", "--out", str(out)]
    run = out / "elbo_beta1" / "seed_0"
    assert study.main(argv + ["--epochs", "1"]) == 0
    record = json.loads((run / "study_run.json").read_text())
    assert record["args"][-2:] == ["--epochs", "1"] and record["config"]["epochs"] == 1
    assert record["config"]["objective"] == "elbo" and isinstance(record["dirty"], bool)
    finished = (run / "final_metrics.json").stat().st_mtime_ns
    # Unchanged: reused, even when only the commit differs (reported, not refused).
    record["commit"] = "0123456789" * 4
    (run / "study_run.json").write_text(json.dumps(record))
    assert study.main(argv + ["--epochs", "1"]) == 0
    assert (run / "final_metrics.json").stat().st_mtime_ns == finished
    assert "- every run made at commit 0123456" in (out / "study.md").read_text()
    # Changed: refused in one line naming the folder and the field.
    with pytest.raises(SystemExit) as refused:
        study.main(argv + ["--epochs", "2"])
    message = str(refused.value)
    assert "\n" not in message and str(run) in message and "epochs 1 → 2" in message
    assert (run / "final_metrics.json").stat().st_mtime_ns == finished
    # A study moved elsewhere: where a run writes is not what it computes.
    moved = tmp_path / "moved"
    out.rename(moved)
    argv[argv.index(str(out))] = str(moved)
    out, run = moved, moved / "elbo_beta1" / "seed_0"
    assert study.main(argv + ["--epochs", "1"]) == 0
    assert (run / "final_metrics.json").stat().st_mtime_ns == finished
    # A run from before study_run.json: its checkpoint's config stands in, its commit unknown.
    (run / "study_run.json").unlink()
    with pytest.raises(SystemExit, match="epochs 1 → 2"):
        study.main(argv + ["--epochs", "2"])
    assert study.main(argv + ["--epochs", "1"]) == 0
    assert (run / "final_metrics.json").stat().st_mtime_ns == finished
    assert "- every run made at commit unknown" in (out / "study.md").read_text()
    # --rerun_changed runs it again from scratch (not resumed from the old checkpoint).
    assert study.main(argv + ["--epochs", "2", "--rerun_changed"]) == 0
    assert json.loads((run / "study_run.json").read_text())["config"]["epochs"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert "resuming from" not in (run / "train.log").read_text()
    assert "epochs 1 → 2; running it again" in capsys.readouterr().out


def test_kept_small_files_let_a_grid_continue_on_a_fresh_machine(tmp_path):
    """--keep copies each finished run's numbers, report and two pictures (no checkpoint);
    a study in a new folder with the same --keep counts them as finished and runs nothing.
    A variant's own :N seed count overrides --seeds."""
    kept = tmp_path / "kept"
    argv = ["--preset", "tiny", "--variants", "elbo_beta1:2,lbo_no_realism", "--seeds", "1",
            "--keep", str(kept), "--epochs", "1"]
    assert study.main(argv + ["--out", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "study.json").read_text())
    assert first["elbo_beta1"]["seeds"] == [0, 1] and first["lbo_no_realism"]["seeds"] == [0]
    for variant, seed in (("elbo_beta1", 0), ("elbo_beta1", 1), ("lbo_no_realism", 0)):
        folder = kept / variant / f"seed_{seed}"
        assert sorted(p.name for p in folder.iterdir()) == sorted(study.KEPT)
        assert json.loads((folder / "study_run.json").read_text())["seconds"] > 0
    assert not (kept / "elbo_beta1" / "seed_2").exists()
    # A fresh machine: only the kept files. Nothing runs (no train.log), the numbers agree.
    fresh = tmp_path / "fresh"
    assert study.main(argv + ["--out", str(fresh)]) == 0
    assert not list(fresh.glob("*/seed_*/train.log"))
    again = json.loads((fresh / "study.json").read_text())
    for variant in first:
        assert again[variant]["metrics"]["ssim"] == first[variant]["metrics"]["ssim"]
        assert all(m > 0 for m in again[variant]["metrics"]["run_minutes"])
    report = (fresh / "study.md").read_text()
    assert "seeds elbo_beta1 0..1, lbo_no_realism 0..0" in report and "| run_minutes |" in report
    # A report alone from the kept files, in yet another folder.
    elsewhere = tmp_path / "report"
    assert study.main(argv + ["--out", str(elsewhere), "--report_only"]) == 0
    assert json.loads((elsewhere / "study.json").read_text()) == again
    # A kept run made with other settings is refused like any other.
    with pytest.raises(SystemExit, match="epochs 1 → 2"):
        study.main([*argv[:-1], "2", "--out", str(tmp_path / "third")])


def test_a_bad_seed_count_after_a_variant_is_refused(capsys):
    with pytest.raises(SystemExit):
        study.parse_args(["--variants", "lbo:0"])
    assert "variant lbo:0: the seed count" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        study.parse_args(["--out", "runs/a", "--keep", "runs/a/"])
    assert "--keep must be another folder than --out" in capsys.readouterr().err


def test_a_setting_added_after_a_run_counts_as_its_default():
    """Kept runs stay valid when a switch is added: new settings default to the behaviour
    before them, so a stored config without the field is read as having its default."""
    now = configs.to_dict(configs.parse_args(["--preset", "study"]))
    stored = {k: v for k, v in now.items() if k != "lbo_grad_clip"}
    assert study.first_difference(stored, now) is None
    assert study.first_difference(stored, dict(now, lbo_grad_clip=5.0)) == \
        "lbo_grad_clip 0.0 → 5.0"
    assert study.first_difference(dict(stored, epochs=3), now) == "epochs 3 → 8"


def test_a_run_made_before_the_switches_were_retired_is_the_same_run():
    """A kept run's config holds the retired switches at their defaults and the old name
    "spec": it is the run the grid makes today. One made with a retired switch on is not."""
    now = configs.to_dict(configs.parse_args(["--preset", "study"]))
    old = dict(now, **configs.RETIRED_SETTINGS, decoder="spec", consistency="spec")
    assert study.first_difference(old, now) is None
    assert "cycle_goals = True, a switch retired" in study.first_difference(
        dict(old, cycle_goals=True), now)


def test_the_report_pairs_every_variant_with_both_controls():
    table = {"lbo": row([0, 1], [0.70, 0.74]), study.CONTROL: row([0, 1], [0.60, 0.62]),
             "sum": row([0, 1], [0.71, 0.76])}
    lines = study.paired_lines(table)
    against_sum = lines[lines.index(next(line for line in lines if "(`sum`)" in line)):]
    assert "| metric (better is) | lbo | elbo_beta1 |" in against_sum
    # lbo - sum per seed: -0.01, -0.02 -> -0.015 +- 12.706 x 0.00707 / sqrt(2)
    assert "| ssim (higher) | -0.015 ± 0.064 (n=2 pairs) includes 0 | -0.125 ± 0.19 " \
        "(n=2 pairs) includes 0 |" in against_sum
    assert any("(`elbo_beta1`)" in line for line in lines)
    assert len(study.paired_lines({k: table[k] for k in ("lbo", "sum")})) < len(lines)
    # --paired_with adds a table per named variant, in the report too.
    args = study.parse_args(["--variants", "lbo,sum,elbo_beta1", "--paired_with",
                             "elbo_beta1,sum,lbo"])
    full = {k: {**v, "stops": ["epoch budget"], "commits": ["abc1234"] * 2}
            for k, v in table.items()}
    against_lbo = study.markdown(full, args, None).split("(`lbo`), seed by seed")[1]
    assert "| metric (better is) | elbo_beta1 | sum |" in against_lbo
    with pytest.raises(SystemExit):
        study.parse_args(["--paired_with", "lbo,nonesuch"])


def test_the_share_of_variance_explained_is_recomputed_for_older_runs_and_gates_the_split(
        tmp_path):
    """A run evaluated before final_metrics.json held the share gets it recomputed from its
    MSE and its held-out images drawn again: the same number evaluate.py measures. Below 0.5
    the study withholds every split measure, as evaluate.py does."""
    import json
    import math
    import train
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--epochs", "1", "--output_dir", str(run)]) == 0
    path = run / "final_metrics.json"
    results = json.loads(path.read_text())
    measured = results["reconstruction"].pop("variance_explained")
    path.write_text(json.dumps(results))  # as an older run's
    metrics, _ = study.run_metrics(run)
    assert metrics["variance_explained"] == pytest.approx(measured, rel=1e-9)
    for share, withheld in ((0.9, False), (0.3, True)):
        results["reconstruction"]["variance_explained"] = share
        results["behaviour"]["swap"]["split_score"] = 0.8
        results["behaviour"]["core_specificity"] = 0.7
        # on the built-in shapes, the drawn split and where the swap places each factor
        results["drawn_shapes"]["drawn_split"] = 0.6
        results["drawn_shapes"]["swap_factors"]["hue"] = 0.65
        path.write_text(json.dumps(results))
        metrics, _ = study.run_metrics(run)
        split = [k for k in metrics if k in ("core_specificity", "detail_specificity",
                                             "swap_split_score", "drawn_split")
                 or k.endswith(("_transfer", "_transfer_bounded"))
                 or k.startswith("swap_placement_")
                 or "_from_core" in k or "_from_detail" in k]
        assert {"swap_split_score", "core_specificity", "r2_x_from_core", "drawn_split",
                "swap_placement_hue", "swap_placement_shape"} <= set(split)
        if withheld:
            assert all(math.isnan(metrics[k]) for k in split)
        else:
            assert (metrics["swap_split_score"], metrics["core_specificity"]) == (0.8, 0.7)
            assert (metrics["drawn_split"], metrics["swap_placement_hue"]) == (0.6, 0.65)
        assert metrics["ssim"] == results["reconstruction"]["ssim"]  # never withheld


def test_a_failed_or_interrupted_run_stops_the_grid(tmp_path, monkeypatch):
    """One run at a time: the first fails (as an interrupted train.py does, exit 130), and
    the runs queued after it never start; the error names it."""
    started = []

    def run_one(args, variant, seed):
        started.append((variant, seed))
        raise RuntimeError(f"{variant} seed {seed} failed (exit 130)")
    monkeypatch.setattr(study, "run_one", run_one)
    args = study.parse_args(["--variants", "lbo,sum", "--seeds", "2", "--out",
                             str(tmp_path / "out")])
    with pytest.raises(RuntimeError, match="lbo seed 0 failed"):
        study.run_grid(args)
    assert started == [("lbo", 0)]


def test_the_glance_table_gives_each_variant_its_reconstruction_split_and_factors():
    nan = float("nan")
    factors = {"hue": {"kind": "appearance", "key": "r2_hue"},
               "x": {"kind": "structure", "key": "r2_x"}}

    def variant(ssim, share, split, x_core, hue_detail):
        return {"seeds": [0, 1], "factors": factors,
                "metrics": {"ssim": ssim, "variance_explained": share, "swap_split_score": split,
                            "r2_x_from_core": x_core, "r2_x_from_detail_best_k": [0.1, 0.1],
                            "r2_hue_from_core": [0.0, 0.0], "r2_hue_from_detail_best_k":
                            hue_detail}}

    table = {"lbo": variant([0.70, 0.74], [0.6, 0.7], [0.8, 0.9], [0.9, 0.7], [0.5, 0.7]),
             # a variant whose second seed does not reconstruct: its split withheld there,
             # every seed's split withheld where none does
             "sum": variant([0.71, 0.76], [0.6, 0.4], [0.9, nan], [0.8, nan], [0.6, nan]),
             "elbo_beta1": variant([0.2, 0.3], [0.3, 0.4], [nan] * 2, [nan] * 2, [nan] * 2)}
    lines = study.glance_lines(table, "lbo")
    assert "| variant | seeds | SSIM | SSIM − `lbo`, paired | variance explained | split score " \
           "| x (structure) | hue (appearance) |" in lines  # structure factors first
    # lbo: 0.72 ± 12.706 × 0.0283 / √2; x from core 0.80, from detail 0.10; hue 0.00 / 0.60
    assert "| lbo | 2 | 0.720 ± 0.25 | – | 0.65 | 0.85 | 0.80 / 0.10 | 0.00 / 0.60 |" in lines
    # sum - lbo per seed: +0.01, +0.02
    assert "| sum | 2 | 0.735 ± 0.32 | +0.015 ± 0.064 | 0.50 | 0.90 (1/2) | 0.80 (1/2) / 0.10 " \
           "| 0.00 / 0.60 (1/2) |" in lines
    assert "| elbo_beta1 | 2 | 0.250 ± 0.64 | -0.470 ± 0.38 | 0.35 | n/a | n/a / 0.10 " \
           "| 0.00 / n/a |" in lines
    # Without the control in the table, no paired column.
    assert "| variant | seeds | SSIM | variance explained | split score | x (structure) | " \
           "hue (appearance) |" in study.glance_lines(table, "nonesuch")
    # Runs evaluated with the drawn split (the built-in shapes) add it, and where the swap
    # places each factor; variants evaluated before it read "–".
    table["lbo"]["metrics"].update({"drawn_split": [0.6, 0.7], "swap_placement_x": [0.8, 1.0],
                                    "swap_placement_hue": [0.4, 0.5]})
    lines = study.glance_lines(table, "lbo")
    assert "| lbo | 2 | 0.720 ± 0.25 | – | 0.65 | 0.85 | 0.65 | 0.80 / 0.10 · swap 0.90 | " \
           "0.00 / 0.60 · swap 0.45 |" in lines
    assert "| elbo_beta1 | 2 | 0.250 ± 0.64 | -0.470 ± 0.38 | 0.35 | n/a | – | n/a / 0.10 · " \
           "swap – | 0.00 / n/a · swap – |" in lines


def test_the_paper_grid_holds_the_two_by_two_of_objective_and_decoder():
    cells = set()
    for variant in study.PAPER_GRID:
        cfg = study.configs.parse_args(["--preset", "study", *study.VARIANTS[variant]])
        cells.add((cfg.objective, cfg.decoder))
    assert {(o, d) for o in ("lbo", "elbo") for d in ("standard", "asymmetric")} <= cells
    assert {"sum", "smooth_max", "multipliers"} <= {o for o, _ in cells}
