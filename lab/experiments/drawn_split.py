"""Does the swap test's split score agree with what the pictures draw, factor by factor?

For each finished run on the built-in shapes, the split score its evaluation wrote
(final_metrics.json) beside drawn_shapes_report's placements of the swap, factor by factor:
the evaluation's own where the run was evaluated with them, else measured from the run's
checkpoint at this commit (the table says how many of each):
    python lab/experiments/drawn_split.py RUN_FOLDER [RUN_FOLDER ...] --out lab/results/NAME
RUN_FOLDER is a study's VARIANT/seed_N; the runs are grouped by dataset and VARIANT (the
factors of the first run's dataset head the table: one kind of data per call). Writes
NAME.json (every run) and NAME.md (the mean over seeds per variant)."""
import argparse
import json
import math
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from data import build_datasets  # noqa: E402
from evaluate import load_checkpoint  # noqa: E402
from machine import cpu_machine, short_commit  # noqa: E402
import study  # noqa: E402
from split_measures import drawn_shapes_report, split_withheld  # noqa: E402


def measured_again(folder, final):
    """drawn_shapes_report from the run's checkpoint, withheld by the evaluation's rule."""
    cfg, vae, _ = load_checkpoint(folder / "checkpoint.pt", torch.device("cpu"))
    vae.eval()
    _, heldout, _ = build_datasets(cfg)
    with torch.no_grad():
        drawn = drawn_shapes_report(vae, heldout, torch.device("cpu"))
    if split_withheld(final["reconstruction"]):
        drawn = {**drawn, "swap_structure": math.nan, "swap_appearance": math.nan,
                 "drawn_split": math.nan,
                 "swap_factors": {name: math.nan for name in drawn["swap_factors"]}}
    return drawn


def evaluated_with_it(final):
    """Whether the run's evaluation measured the placements (older ones drew the kind only)."""
    return "drawn_split" in final.get("drawn_shapes", {})


def measurable(folder):
    """A finished run whose evaluation has the drawn split, or that kept its checkpoint."""
    final = folder / "final_metrics.json"
    return final.exists() and (evaluated_with_it(json.loads(final.read_text()))
                               or (folder / "checkpoint.pt").exists())


def measure_run(folder):
    final = json.loads((folder / "final_metrics.json").read_text())
    source = "evaluation" if evaluated_with_it(final) else "checkpoint"
    drawn = final["drawn_shapes"] if source == "evaluation" else measured_again(folder, final)
    dataset = json.loads((folder / "study_run.json").read_text())["config"]["dataset"]
    return {"variant": folder.parent.name, "seed": folder.name, "dataset": dataset,
            "source": source,
            "split_score": final["behaviour"]["swap"].get("split_score", math.nan),
            "variance_explained": final["reconstruction"].get("variance_explained", math.nan),
            **{k: drawn[k] for k in ("swap_factors", "recon_factors", "swap_structure",
                                     "swap_appearance", "drawn_split")}}


def markdown(runs, command, commit, machine):
    factors = list(runs[0]["swap_factors"])
    lines = ["# The split score against the drawn split, factor by factor", "",
             f"`{command}` at commit {commit}, on {machine}. Each cell: the mean over the "
             "variant's seeds, with (k/n) after it when only k of its n seeds have a value. "
             "A factor's placement: where the swap decode(core of x1, detail of x2) lies between "
             "the true swap image with that factor from the wrong image (0) and the true swap "
             "image (1); about 0.5 when the decoder draws the factor the same whatever the "
             "images. In brackets, the reconstruction's own placement (does the model draw the "
             "factor at all). Drawn split: the min of the structure and appearance factors' "
             "mean placements. Split score: the swap test's, from the run's evaluation. Both "
             "withheld (n/a) from a run whose reconstructions explain under half the pixel "
             "variance. The placements: the run's evaluation's for "
             f"{sum(r['source'] == 'evaluation' for r in runs)} runs, measured again from the "
             f"checkpoint at this commit for {sum(r['source'] == 'checkpoint' for r in runs)}.",
             "",
             "| dataset | variant | seeds | split score | drawn split | " + " | ".join(factors)
             + " |", "|---|" + "---|" * (4 + len(factors))]
    for dataset, variant in dict.fromkeys((r["dataset"], r["variant"]) for r in runs):
        rows = [r for r in runs if (r["dataset"], r["variant"]) == (dataset, variant)]
        cells = [dataset, variant, str(len(rows)),
                 study.mean_text([r["split_score"] for r in rows]),
                 study.mean_text([r["drawn_split"] for r in rows])]
        cells += [f"{study.mean_text([r['swap_factors'][f] for r in rows])} "
                  f"({study.mean_text([r['recon_factors'][f] for r in rows])})" for f in factors]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", *paired_lines(runs)]) + "\n"


def paired_lines(runs):
    """The drawn split of each variant minus the first variant's, paired by seed (same data):
    mean ± half-width of the 95 % interval, as study.py pairs its runs."""
    by_variant = {}
    for r in runs:
        by_variant.setdefault(r["variant"], {})[r["seed"]] = r["drawn_split"]
    first, *others = by_variant
    lines = [f"Drawn split minus `{first}`'s, paired by seed (mean ± half-width of the 95 % "
             "interval; seeds both have):", ""]
    for variant in others:
        seeds = sorted(set(by_variant[variant]) & set(by_variant[first]))
        mean, half, n = study.interval([by_variant[variant][s] - by_variant[first][s]
                                        for s in seeds])
        lines.append(f"- {variant}: " + (f"{mean:+.3f}{study.spread(half)} ({n} seeds)"
                                         if n else "no seed in common"))
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    folders = [f for f in args.runs if measurable(f)]
    skipped = sorted(set(args.runs) - set(folders))
    if skipped:
        print("skipped (unfinished, or evaluated before the drawn split and without its "
              f"checkpoint): {', '.join(map(str, skipped))}")
    runs = [measure_run(f) for f in tqdm(folders, unit="run")]
    commit = short_commit()
    command = "python lab/experiments/drawn_split.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(runs, indent=1))
    args.out.with_suffix(".md").write_text(markdown(runs, command, commit, cpu_machine()))
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
