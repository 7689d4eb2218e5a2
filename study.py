"""Does LBO earn its keep? A grid of named variants x seeds, each an ordinary train.py run.

    python study.py                             # the default grid, 3 seeds, --preset study
    python study.py --seeds 5 --variants lbo,elbo_beta1
    python study.py --variants lbo:5,elbo_beta1:5,lbo_no_swap   # 5 seeds, 5, and --seeds
    python study.py --keep lab/results/study_runs    # keep each run's small files there
    python study.py --jobs 4 --device cuda      # runs side by side (one GPU is plenty)

Every run is `python train.py --preset P --seed S --output_dir OUT/VARIANT/seed_S OVERRIDES`,
its console output in train.log beside its outputs. A run whose final_metrics.json exists is
done and skipped; one with only a checkpoint resumes from it (--resume), so an interrupted
study continues where it stopped. Each run folder keeps study_run.json: its train.py
arguments, the config they resolve to and the commit. A finished run whose config is not what
the grid would run now is refused (one line names the field) or, with --rerun_changed, run
again from scratch. With --keep DIR, each finished run's small files (KEPT below: metrics,
report, two pictures; no checkpoint) are copied to DIR/VARIANT/seed_S, and a run found there
counts as finished: a grid longer than one sitting continues on a fresh machine from files a
repository can hold. OUT/study.md gets every metric as the mean and 95 % interval over seeds
(Student's t) with n = finite values / seeds, verdicts against the control (interval against
interval, and paired by seed), and the commits the runs come from; OUT/study.json the numbers
per seed, OUT/study.png the headline metrics per variant, one point per seed.

A variant is a line in VARIANTS: a name and the train.py settings it changes.
"""
import argparse
import concurrent.futures
import datetime
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

import configs
import data
import plots
import probes
import quality
import split_measures
from machine import cpu_machine

ROOT = Path(__file__).resolve().parent
# The best split the study found (the demo preset's), which the later variants start from.
CONSISTENCY_ASYMMETRIC = ["--consistency", "split", "--decoder", "asymmetric"]
VARIANTS = {
    "lbo": [],
    "elbo_beta1": ["--objective", "elbo", "--beta", "1"],
    "elbo_beta4": ["--objective", "elbo", "--beta", "4"],
    "lbo_no_tightening": ["--tighten_start_epoch", "1000000"],
    "lbo_fast_schedule": ["--tighten_start_epoch", "2", "--tighten_rate", "0.5"],  # the demo's
    "lbo_next_batch": ["--guard_check", "next-batch"],
    "lbo_no_realism": ["--drop_groups", "realism"],
    "lbo_no_swap": ["--drop_groups", "swap"],
    "sum": ["--objective", "sum"],  # LBO's goals, calibration, guard and tightener, mean loss
    # Beyond the default grid (--variants names them):
    "lbo_score_realism": ["--realism", "score"],  # the original design's realism measure
    "lbo_no_core": ["--drop_groups", "core"],  # core-only decodes need not match the image
    # the split's switches, one at a time and together (the demo's), under LBO and the sum:
    "lbo_asymmetric": ["--decoder", "asymmetric"],
    "lbo_consistency": ["--consistency", "split"],  # core ignores colour, detail ignores flips
    "sum_consistency": ["--objective", "sum", "--consistency", "split"],
    "lbo_consistency_asymmetric": CONSISTENCY_ASYMMETRIC,
    "sum_consistency_asymmetric": ["--objective", "sum", *CONSISTENCY_ASYMMETRIC],
    # What the min adds: the published controls, on the split switches. smooth_max's three
    # temperatures run from min-like to sum-like (how they were chosen: docs/design.md).
    **{f"smooth_max_mu{mu}_consistency_asymmetric": [
        "--objective", "smooth_max", "--smooth_max_temperature", mu, *CONSISTENCY_ASYMMETRIC]
       for mu in ("0.01", "0.1", "1")},
    "multipliers_consistency_asymmetric": ["--objective", "multipliers",
                                           *CONSISTENCY_ASYMMETRIC],
    # What the architecture adds: the beta-VAE with the asymmetric decoder (its goals-free
    # loss has no consistency goals to switch).
    "elbo_beta1_asymmetric": ["--objective", "elbo", "--beta", "1", "--decoder", "asymmetric"],
}
# The grid that answers what the min and the architecture add, paired by seed against LBO
# with the split switches and against the beta-VAE: python study.py --variants "$(python -c
# 'import study; print(",".join(study.PAPER_GRID))')" --seeds 5 --paired_with
# lbo_consistency_asymmetric,elbo_beta1. LBO and the beta-VAE, each with the standard and the
# asymmetric decoder, make the 2 x 2 of objective x decoder.
PAPER_GRID = ["lbo_consistency_asymmetric", "sum_consistency_asymmetric",
              *(f"smooth_max_mu{mu}_consistency_asymmetric" for mu in ("0.01", "0.1", "1")),
              "multipliers_consistency_asymmetric", "elbo_beta1", "elbo_beta1_asymmetric",
              "lbo_consistency"]
# The grid `python study.py` runs: LBO, its controls and one ablation of each part.
DEFAULT_GRID = ["lbo", "elbo_beta1", "elbo_beta4", "sum", "lbo_no_tightening",
                "lbo_fast_schedule", "lbo_next_batch", "lbo_no_realism", "lbo_no_swap"]
# The metrics drawn in study.png (all are in study.md), with the direction that is better.
HEADLINE = {"ssim": "higher", "variance_explained": "higher", "core_specificity": "higher", "detail_specificity": "higher",
            "swap_structure_error": "lower", "swap_appearance_error": "lower", "mig": "higher",
            "swap_structure_transfer_bounded": "higher",
            "swap_appearance_transfer_bounded": "higher", "swap_split_score": "higher"}
# Two-sided 95 % quantiles of Student's t by degrees of freedom; between rows the smaller
# degrees of freedom (the wider interval) is used.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000,
         120: 1.980}


def t_quantile(df):
    return T_975[max(k for k in T_975 if k <= df)]


def is_finite(value):
    return value is not None and math.isfinite(value)


def interval(values):
    """(mean, half-width of the 95 % interval, n) over the finite values; the half-width is
    NaN for fewer than two."""
    finite = [v for v in values if is_finite(v)]
    n = len(finite)
    if not n:
        return math.nan, math.nan, 0
    mean = sum(finite) / n
    if n < 2:
        return mean, math.nan, n
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    return mean, t_quantile(n - 1) * sd / math.sqrt(n), n


# --- running -------------------------------------------------------------------------------
def run_folder(out, variant, seed):
    return Path(out) / variant / f"seed_{seed}"


def train_args(args, variant, seed):
    """The train.py arguments of one run, the same for its start and every resume."""
    return ["--preset", args.preset, "--seed", str(seed), "--output_dir",
            str(run_folder(args.out, variant, seed)), "--device", args.device,
            *VARIANTS[variant], *args.extra]


def command(args, variant, seed):
    folder = run_folder(args.out, variant, seed)
    words = [sys.executable, str(ROOT / "train.py"), *train_args(args, variant, seed)]
    return words + (["--resume"] if (folder / "checkpoint.pt").exists() else [])


def resolved_config(words):
    """The config train.py makes of these arguments, as plain data (what its checkpoint holds)."""
    return configs.to_dict(configs.parse_args(words))


def run_record(args, variant, seed):
    """What a run is made with (study_run.json): the arguments, their config, the code."""
    words = train_args(args, variant, seed)
    return {"args": words, "config": resolved_config(words), **git_state()}


def stored_record(folder):
    """A finished run's record; for a run made before study_run.json existed, the config its
    checkpoint holds (commit unknown); None when neither is there."""
    if (folder / "study_run.json").exists():
        return json.loads((folder / "study_run.json").read_text())
    if (folder / "checkpoint.pt").exists():
        import torch  # only old run folders need it
        state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
        return {"config": state["config"], "commit": "unknown", "dirty": False}
    return None


# Where a run writes and whether it was resumed: they differ by design, not in what it computes.
NOT_COMPARED = ("output_dir", "resume")


def first_difference(stored, now):
    """'field stored → now' for the first setting in which two configs differ, or None.

    A setting the stored config lacks was added later, and new settings default to the
    behaviour that came before them: it counts as its default."""
    defaults = configs.to_dict(configs.Config())
    try:
        stored = configs.upgraded(stored)
    except configs.ConfigError as err:
        return str(err)
    for key in [*now, *(k for k in stored if k not in now)]:
        before = stored[key] if key in stored else defaults.get(key)
        if key not in NOT_COMPARED and before != now.get(key):
            return f"{key} {short(before)} → {short(now.get(key))}"
    return None


def short(value):
    """A setting's value for a one-line message (the goal table is long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def changed_runs(args):
    """[(folder, what differs)] for the finished runs that the grid would now run otherwise."""
    changed = []
    for variant, seed in grid_runs(args):
        folder = run_folder(args.out, variant, seed)
        if not (folder / "final_metrics.json").exists():
            continue
        stored = stored_record(folder)
        now = resolved_config(train_args(args, variant, seed))
        why = "no stored config" if stored is None else first_difference(stored["config"], now)
        if why:
            changed.append((folder, why))
    return changed


def grid_runs(args):
    """[(variant, seed)] of the grid, in order."""
    return [(v, s) for v in args.variants for s in args.seeds[v]]


# What --keep copies of a finished run: every number the study reads, the run's report, the
# pictures to look at. The checkpoints (megabytes each) stay in OUT.
KEPT = ("study_run.json", "final_metrics.json", "metrics.jsonl", "report.md",
        "reconstructions.png", "cross_reconstruction.png")


def copy_kept(source, target):
    target.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)


def restore_kept(args):
    """Copy into OUT the kept runs OUT lacks, so that they count as finished."""
    if not args.keep:
        return
    for variant, seed in grid_runs(args):
        kept, folder = run_folder(args.keep, variant, seed), run_folder(args.out, variant, seed)
        if (kept / "final_metrics.json").exists() and \
                not (folder / "final_metrics.json").exists():
            if folder.exists():
                shutil.rmtree(folder)  # a partial run: the kept one is finished
            copy_kept(kept, folder)


def run_one(args, variant, seed):
    """One run to the end (resumed if it was interrupted); returns (variant, seed, seconds)."""
    folder = run_folder(args.out, variant, seed)
    folder.mkdir(parents=True, exist_ok=True)
    # Written before training, also on a resume: train.py resumes only with the checkpoint's
    # settings (epochs and run-only fields aside, which the resumed run then follows), so the
    # record holds for the run that finishes here; its commit is this invocation's.
    record = run_record(args, variant, seed)
    (folder / "study_run.json").write_text(json.dumps(record, indent=1))
    started = time.monotonic()
    with open(folder / "train.log", "a") as log:
        code = subprocess.run(command(args, variant, seed), cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{variant} seed {seed} failed (exit {code}); see {folder}/train.log "
                           "(run study.py again to resume it)")
    seconds = time.monotonic() - started
    # The last invocation's wall time (a resumed run's covers the part after the resume).
    record.update(seconds=round(seconds, 1), machine=machine(args.device))
    (folder / "study_run.json").write_text(json.dumps(record, indent=1))
    if args.keep:
        copy_kept(folder, run_folder(args.keep, variant, seed))
    return variant, seed, seconds


def pending_runs(args):
    return [(v, s) for v, s in grid_runs(args)
            if not (run_folder(args.out, v, s) / "final_metrics.json").exists()]


def rerun_or_refuse(args):
    """A finished run made with other settings would be reused by its folder name alone."""
    changed = changed_runs(args)
    if changed and not args.rerun_changed:
        folder, why = changed[0]
        more = f" (and {len(changed) - 1} more runs)" if len(changed) > 1 else ""
        raise SystemExit(f"{folder} was run with other settings, {why}{more}; run the same "
                         "settings, another --out, or --rerun_changed to run them again")
    for folder, why in changed:
        print(f"{folder}: {why}; running it again")
        shutil.rmtree(folder)  # from scratch: its checkpoint must not be resumed
        if args.keep:
            kept = Path(args.keep) / folder.relative_to(args.out)
            if kept.exists():
                shutil.rmtree(kept)


def run_grid(args):
    rerun_or_refuse(args)
    todo = pending_runs(args)
    done = len(grid_runs(args)) - len(todo)
    if done:
        print(f"{done} runs already finished in {args.out}: skipped")
    bar = tqdm(total=len(todo), desc="study", unit="run", dynamic_ncols=True)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, args, v, s) for v, s in todo]
        try:
            for future in concurrent.futures.as_completed(futures):
                variant, seed, seconds = future.result()
                bar.set_postfix_str(f"{variant} seed {seed}: {seconds / 60:.1f} min")
                bar.update()
        except BaseException:
            # A failed or interrupted run (Ctrl-C reaches its train.py too) stops the grid:
            # the runs not yet started are dropped, and a later invocation resumes them.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    bar.close()


# --- reading the runs ----------------------------------------------------------------------
_HELDOUT_VARIANCE = {}  # (the data's settings) -> pixel variance: one computation a seed


def recomputed_share(folder, mse):
    """The pixel variance its reconstructions explained, for a run evaluated before
    final_metrics.json held it: its MSE against the variance of the held-out images it was
    measured on, drawn again from its config (NaN when they are not the built-in shapes, which
    can be drawn again, or its config is unknown)."""
    record = stored_record(folder)
    if record is None or record["config"].get("dataset") not in data.BUILT_IN_SHAPES:
        return math.nan
    cfg = configs.from_dict(record["config"])
    key = (cfg.image_size, cfg.heldout_size, cfg.seed, cfg.eval_images)
    if key not in _HELDOUT_VARIANCE:
        _, heldout, _ = data.build_datasets(cfg)
        _HELDOUT_VARIANCE[key] = quality.heldout_pixel_variance(heldout, cfg)
    return quality.explained_share(mse, _HELDOUT_VARIANCE[key])


def probe_stem(name, row):
    """The start of a factor probe's metric names ("r2_x" of r2_x_from_core): each factor is
    scored by its own measure (R², or balanced accuracy for a category)."""
    return f"{row.get('measure', 'r2')}_{name}"


def run_metrics(folder):
    """The study's numbers for one finished run, from final_metrics.json and metrics.jsonl."""
    results = json.loads((folder / "final_metrics.json").read_text())
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    rec, behaviour = results["reconstruction"], results["behaviour"]
    if "variance_explained" not in rec:  # evaluated before it was measured
        rec["variance_explained"] = recomputed_share(folder, rec["mse"])
    # As evaluate.py withholds them (a no-op for runs evaluated since).
    split_measures.withhold_split_measures(results)
    swap = behaviour["swap"]
    m = {"mse": rec["mse"], "psnr": rec["psnr"], "ssim": rec["ssim"],
         "variance_explained": rec["variance_explained"],
         "core_specificity": behaviour["core_specificity"],
         "detail_specificity": behaviour["detail_specificity"],
         "swap_structure_error": swap["structure_error_vs_x1"],
         "swap_structure_chance": swap["structure_chance"],
         "swap_appearance_error": swap["appearance_error_vs_x2"],
         "swap_appearance_chance": swap["appearance_chance"],
         # min(structure, appearance) bounded transfer; absent from runs evaluated before it
         "swap_split_score": swap.get("split_score", math.nan)}
    for part in ("structure", "appearance"):  # the controls a constant decoder cannot beat
        for control in ("floor", "ceiling", "mean_image", "transfer"):
            m[f"swap_{part}_{control}"] = swap[f"{part}_{control}"]
        # against the two reconstructions, in [0, 1]; absent from runs evaluated before it
        m[f"swap_{part}_transfer_bounded"] = swap.get(f"{part}_transfer_bounded", math.nan)
    drawn = results.get("drawn_shapes") or {}  # on the built-in shapes, evaluated since
    if "drawn_split" in drawn:
        m["drawn_split"] = drawn["drawn_split"]
        for name, value in drawn["swap_factors"].items():
            m[f"swap_placement_{name}"] = value
    factors = results.get("factors")
    if factors:
        m["mig"], m["sap"] = factors["mig"], factors.get("sap", math.nan)
        for key in ("disentanglement", "completeness", "informativeness"):
            m[f"dci_{key}"] = factors["dci"][key]
        for name, row in factors["probes"].items():
            # Each factor by its own measure (R², or balanced accuracy for a category), full
            # part and the equal-capacity best k dims of each part.
            for part in ("core", "detail", "core_best_k", "detail_best_k"):
                m[f"{probe_stem(name, row)}_from_{part}"] = row.get(part, math.nan)
    steps = sum(r["steps"] for r in history)
    m["epochs"] = len(history)
    m["rollback_rate"] = sum(r["rollbacks"] + r["rejected"] for r in history) / steps \
        if steps else math.nan
    accepted = sum(r["accepted"] for r in history if r["steps"])
    for group in history[-1]["bottleneck"]:
        m[f"bottleneck_{group}"] = sum(r["bottleneck"][group] * r["accepted"] for r in history
                                       if r["steps"]) / accepted if accepted else math.nan
        # The squeeze: a group binds when it is the bottleneck of >= 5 % of one epoch's
        # accepted steps; its largest share in any epoch says whether it ever did.
        m[f"bottleneck_most_in_an_epoch_{group}"] = max(
            (r["bottleneck"][group] for r in history if r["accepted"]), default=math.nan)
    # Convergence: the held-out MSE's gain over the last fifth of the epochs (summary.py).
    gain = history[-1].get("heldout_recent_gain")
    m["heldout_mse_recent_gain"] = gain if gain is not None else math.nan
    record = folder / "study_run.json"
    seconds = json.loads(record.read_text()).get("seconds") if record.exists() else None
    m["run_minutes"] = seconds / 60 if seconds is not None else math.nan  # with evaluation
    last = history[-1]
    stop = last["decision"].split(":")[0] if last["stop"] else "epoch budget"
    return m, stop


def made_at(folder):
    """The commit a run was made at, '+dirty' when the tree had uncommitted changes."""
    if not (folder / "study_run.json").exists():
        return "unknown"  # made before runs kept a record
    return commit_label(json.loads((folder / "study_run.json").read_text()))


def factor_columns(folder):
    """{factor: {"kind", "key"}} of a run on data with known factors, in the data's order:
    its kind, and the probe_stem of its metrics in run_metrics."""
    factors = json.loads((folder / "final_metrics.json").read_text()).get("factors")
    if not factors:
        return {}
    kinds = probes.factor_kinds(factors)
    return {name: {"kind": kinds[name], "key": probe_stem(name, row)}
            for name, row in factors["probes"].items()}


def collect(args):
    """{variant: {"seeds": [...], "metrics": {name: [value per seed]}, "stops": [...],
    "commits": [...], "factors": factor_columns of its first run}}"""
    table = {}
    for variant in args.variants:
        folders = {s: run_folder(args.out, variant, s) for s in args.seeds[variant]}
        rows = [(s, *run_metrics(f)) for s, f in folders.items()
                if (f / "final_metrics.json").exists()]
        names = sorted({k for _, m, _ in rows for k in m})
        table[variant] = {"seeds": [s for s, _, _ in rows],
                          "metrics": {k: [m.get(k, math.nan) for _, m, _ in rows]
                                      for k in names},
                          "stops": [stop for _, _, stop in rows],
                          "commits": [made_at(run_folder(args.out, variant, s))
                                      for s, _, _ in rows],
                          "factors": factor_columns(folders[rows[0][0]]) if rows else {}}
    return table


# --- writing -------------------------------------------------------------------------------
CONTROL = "elbo_beta1"  # what every variant is compared with in the verdict table
# Paired tables: the beta-VAE, and LBO's own goals summed (what the min-barrier adds).
PAIRED_CONTROLS = (CONTROL, "sum")


def spread(half):
    """' ± half-width' of a 95 % interval, '' when it has none (fewer than two values)."""
    return f" ± {half:.2g}" if math.isfinite(half) else ""


def failed(values, control):
    """'– (k/n failed)' when seeds of the variant (or else of the control) have no finite
    value, '' when none: such a seed is a failure of the run on that measure (e.g. a decoder
    drawing one image for every input), and judged on the seeds that worked alone, a variant
    that fails often could come out better."""
    for who, seeds in (("", values), ("control ", control)):
        bad = sum(not is_finite(v) for v in seeds)
        if bad:
            return f"– ({who}{bad}/{len(seeds)} failed)"
    return ""


def compare(values, control, better):
    """A variant's metric against the control's: "better" or "worse" when the two 95 %
    intervals do not overlap, "overlap" when they do, "–" when either has under two values
    or (with the count) a failed seed."""
    why = failed(values, control)
    if why:
        return why
    (mean, half, _), (c_mean, c_half, _) = interval(values), interval(control)
    if not (math.isfinite(half) and math.isfinite(c_half)):
        return "–"
    if mean - half > c_mean + c_half or mean + half < c_mean - c_half:
        return "better" if (mean > c_mean) == (better == "higher") else "worse"
    return "overlap"


def paired(row, control_row, name):
    """interval() of variant − control per seed, over the seeds in both (interval() leaves out
    the NaN differences): the same seed of both shares the data order, so the spread from
    seed to seed that both share cancels."""
    mine = dict(zip(row["seeds"], row["metrics"].get(name, [])))
    theirs = dict(zip(control_row["seeds"], control_row["metrics"].get(name, [])))
    return interval([mine[s] - theirs[s] for s in mine if s in theirs])


def compare_paired(row, control_row, name, better):
    """The mean paired difference ± its 95 % interval, n pairs and the verdict: better /
    worse only when the interval excludes 0, "includes 0" when not."""
    mean, half, n = paired(row, control_row, name)
    verdict = failed(row["metrics"].get(name, []), control_row["metrics"].get(name, []))
    if not n:
        return verdict or "–"
    if not verdict:
        verdict = ("–" if not math.isfinite(half) else "includes 0" if abs(mean) <= half else
                   "better" if (mean > 0) == (better == "higher") else "worse")
    return f"{mean:+.3g}{spread(half)} (n={n} pairs) {verdict}"


def verdict_table(table, intro, judge, control=CONTROL):
    """The headline metrics of every variant against the control, one cell each from
    judge(variant's row, control's row, metric, better)."""
    if control not in table:
        return []
    variants = [v for v in table if v != control]
    lines = [intro, "", "| metric (better is) | " + " | ".join(variants) + " |",
             "|---|" + "---|" * len(variants)]
    for name, better in HEADLINE.items():
        lines.append(f"| {name} ({better}) | " + " | ".join(
            judge(table[v], table[control], name, better) for v in variants) + " |")
    return lines + [""]


def verdict_lines(table):
    """The headline metrics of every variant against the control, interval against interval."""
    return verdict_table(
        table, f"Against the control (`{CONTROL}`): better / worse = the 95 % intervals do "
        "not overlap; overlap = no difference shown.",
        lambda row, control_row, name, better: compare(
            row["metrics"].get(name, []), control_row["metrics"].get(name, []), better))


def paired_lines(table, controls=PAIRED_CONTROLS):
    """The same, paired by seed, against each of the controls in the study."""
    return [line for control in controls for line in verdict_table(
        table, f"Paired with the control (`{control}`), seed by seed (the same seed shares the "
        "data order): mean of variant − control over the seeds finite in both ± its 95 % "
        "interval (Student's t), n pairs; better / worse = the interval excludes 0.",
        compare_paired, control)]


def cell(values):
    """mean ± half-width (n = finite values / seeds)."""
    mean, half, n = interval(values)
    if not n:
        return f"– (n=0/{len(values)})" if values else "–"
    return f"{mean:.4g}{spread(half)} (n={n}/{len(values)})"


def mean_text(values, digits=2):
    """The mean over the finite values; "(k/n)" after it when only k of n seeds have one,
    "n/a" when none does (a withheld split measure)."""
    mean, _, n = interval(values)
    if not n:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ({n}/{len(values)})" if n < len(values) else "")


def glance_lines(table, control):
    """The table the grid is read by, a variant a row: its reconstruction (SSIM, paired with
    the control; the variance share), its split score (and on the built-in shapes the drawn
    split), and what each part predicts of each factor (core / detail's best k dims: a
    structure factor should come from core, an appearance factor from detail), with where the
    swap places it when the runs measured that ("–": evaluated before it was)."""
    factors = next((row["factors"] for row in table.values() if row.get("factors")), {})
    order = sorted(factors, key=lambda f: factors[f]["kind"] != "structure")
    paired_head = f" SSIM − `{control}`, paired |" if control in table else ""
    drawn = any("drawn_split" in row["metrics"] for row in table.values())
    lines = ["At a glance: the mean over seeds (± half-width of the 95 % interval where "
             "shown); \"n/a\" where every seed's split measures were withheld, \"(k/n)\" where "
             "only k of n seeds have the number. Each factor: what core / what detail's best k "
             "dims predict of it (R², or balanced accuracy for a category)"
             + ("; after \"swap\", where the swap places it between the true swap image with "
                "that factor from the wrong image (0) and the true swap image (1), about 0.5 "
                "when drawn the same whatever the images. Drawn split: the min of the swap's "
                "mean placement of the structure and of the appearance factors "
                "(docs/outputs.md)." if drawn else "."), "",
             "| variant | seeds | SSIM |" + paired_head + " variance explained | split score | "
             + ("drawn split | " if drawn else "")
             + " | ".join(f"{f} ({factors[f]['kind']})" for f in order) + " |",
             "|---|" + "---|" * (4 + bool(paired_head) + drawn + len(order))]
    for variant, row in table.items():
        metric = row["metrics"]
        mean, half, n = interval(metric.get("ssim", []))
        ssim = f"{mean:.3f}{spread(half)}" if n else "–"
        cells = [variant, str(len(row["seeds"])), ssim]
        if paired_head:
            mean, half, n = paired(row, table[control], "ssim")
            cells.append("–" if variant == control or not n else
                         f"{mean:+.3f}{spread(half)}")
        cells += [mean_text(metric.get("variance_explained", [])),
                  mean_text(metric.get("swap_split_score", []))]
        if drawn:
            cells.append(mean_text(metric["drawn_split"]) if "drawn_split" in metric else "–")
        for f in order:
            key = factors[f]["key"]
            placement = metric.get(f"swap_placement_{f}")
            cells.append(f"{mean_text(metric.get(key + '_from_core', []))} / "
                         f"{mean_text(metric.get(key + '_from_detail_best_k', []))}"
                         + (f" · swap {mean_text(placement)}" if placement is not None
                            else " · swap –" if drawn else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(table, args, seconds):
    variants = list(table)
    names = sorted({k for v in table.values() for k in v["metrics"]},
                   key=lambda k: (k not in HEADLINE,
                                  k.startswith(("r2_", "balanced_accuracy_", "bottleneck_")), k))
    lines = ["# Study: LBO against its control, several seeds", "",
             f"- command: `python study.py {shlex.join(args.argv)}`",
             f"- preset `{args.preset}`, seeds {seeds_line(args)}, device {args.device}; "
             f"{datetime.date.today()}; machine: {machine(args.device)}; report written at commit "
             f"{commit_label(git_state())}",
             commits_line(table),
             f"- wall time: {seconds / 60:.1f} min with {args.jobs} run(s) at a time, for the "
             "runs not already finished" if seconds is not None else
             "- report only: the runs were made earlier",
             "- each cell: mean ± half-width of the 95 % interval over seeds (Student's t), "
             "n = seeds with a finite value / seeds run; held-out numbers; swap errors: lower "
             "is better, beside an arbitrary image's (chance) error",
             "- a seed without a finite value (NaN: the measure is undefined for that run, e.g. "
             "a transfer where the decoder draws one image for all inputs) counts as a failed "
             "seed: a metric on which the variant or the control has one gets no verdict, its "
             "verdict cells say \"– (k/n failed)\"",
             "- variance_explained: the share of the held-out images' pixel variance (around "
             "their mean image) that the reconstructions explain; below "
             f"{split_measures.MIN_VARIANCE_EXPLAINED:g} every split measure (specificity, "
             "swap transfers, split score, what core and detail predict of each factor) is "
             "withheld (NaN: a failed seed), as evaluate.py withholds it: a model that does not "
             "reconstruct has no split to measure. For runs evaluated before it was measured, "
             "it is recomputed from the run's MSE and its held-out images, drawn again", "",
             *glance_lines(table, (args.paired_with or [None])[0]), *verdict_lines(table),
             *paired_lines(table, args.paired_with),
             "| metric | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants),
             "| seeds | " + " | ".join(str(len(table[v]["seeds"])) for v in variants) + " |"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(table[v]["metrics"].get(name, []))
                                                 for v in variants) + " |")
    lines.append("| why it stopped | " + " | ".join(
        ", ".join(sorted(set(table[v]["stops"]))) or "–" for v in variants) + " |")
    lines += ["", "![study](study.png)", "",
              "Variants: " + "; ".join(f"`{v}` = `{' '.join(VARIANTS[v]) or '(defaults)'}`"
                                       for v in variants)]
    return "\n".join(lines) + "\n"


def seeds_line(args):
    counts = {v: len(args.seeds[v]) for v in args.variants}
    if len(set(counts.values())) == 1:
        return f"0..{next(iter(counts.values())) - 1} for every variant"
    return ", ".join(f"{v} 0..{n - 1}" for v, n in counts.items())


def machine(device):
    if device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name()
    return cpu_machine()


def git_state():
    """{"commit": HEAD, "dirty": whether tracked files differ from it}; unknown outside git."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT,
                           capture_output=True).returncode == 1
    return {"commit": head.stdout.strip() or "unknown", "dirty": dirty}


def commit_label(record):
    return record["commit"][:7] + ("+dirty" if record["dirty"] else "")


def commits_line(table):
    """Which commits the runs come from, so that runs of several are never mixed silently."""
    runs = {}  # commit: {variant: [seeds]}
    for variant, row in table.items():
        for seed, commit in zip(row["seeds"], row["commits"]):
            runs.setdefault(commit, {}).setdefault(variant, []).append(seed)
    if len(runs) <= 1:
        return f"- every run made at commit {next(iter(runs), '–')}"
    return "- runs made at several commits: " + "; ".join(
        f"{commit}: " + ", ".join(f"{v} seeds {seeds}" for v, seeds in by_variant.items())
        for commit, by_variant in runs.items())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(DEFAULT_GRID),
                        help="comma-separated names from VARIANTS (default: DEFAULT_GRID), "
                        "each optionally NAME:N for seeds 0 .. N-1 of that variant")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (each variant "
                        "without its own :N)")
    parser.add_argument("--preset", default="study")
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--keep", default="", help="a folder for each finished run's small "
                        "files (no checkpoints); runs found there count as finished")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paired_with", default=",".join(PAIRED_CONTROLS),
                        help="comma-separated variants each of which gets a table of the "
                        "others' paired differences from it (e.g. add lbo: what a switch adds "
                        "to the method)")
    parser.add_argument("--report_only", action="store_true",
                        help="write study.md from the finished runs, run nothing")
    parser.add_argument("--rerun_changed", action="store_true",
                        help="run again, from scratch (their outputs deleted), the finished "
                             "runs whose stored config differs from what the grid runs now")
    args, extra = parser.parse_known_args(argv)
    args.extra = extra  # any further train.py settings, for every run
    args.argv = list(argv)
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be at least 1")
    if args.keep and Path(args.keep).resolve() == Path(args.out).resolve():
        parser.error("--keep must be another folder than --out (it holds copies of its runs)")
    seeds = {}
    for item in (v.strip() for v in args.variants.split(",") if v.strip()):
        name, _, count = item.partition(":")
        if name not in VARIANTS:
            parser.error(f"unknown variant {name}; known: {', '.join(VARIANTS)}")
        if count and not (count.isdigit() and int(count) >= 1):
            parser.error(f"variant {item}: the seed count after ':' must be a whole number "
                         ">= 1")
        seeds[name] = list(range(int(count) if count else args.seeds))
    args.variants, args.seeds = list(seeds), seeds
    args.paired_with = [v.strip() for v in args.paired_with.split(",") if v.strip()]
    unknown = [v for v in args.paired_with if v not in VARIANTS]
    if unknown:
        parser.error(f"--paired_with {', '.join(unknown)}: unknown variant; known: "
                     f"{', '.join(VARIANTS)}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    restore_kept(args)
    if not args.report_only:
        run_grid(args)
    seconds = None if args.report_only else time.monotonic() - started
    table = collect(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(table, indent=1))
    plots.save_study(out / "study.png", table, HEADLINE, interval)
    (out / "study.md").write_text(markdown(table, args, seconds))
    print(f"wrote {out / 'study.md'}, study.json and study.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
