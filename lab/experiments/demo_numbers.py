"""The numbers README.md quotes about the demo, measured, never typed by hand.

    python lab/experiments/demo_numbers.py   # both runs (~8 min on a 2-core CPU)

Runs the LBO demo and the beta-VAE control on the same data and budget (`python train.py
--preset demo`, the same plus `--objective elbo --decoder standard`), each timed as a whole
command, and writes lab/results/demo_cpu.md: machine, commit, commands, wall times, the
held-out table and the LBO run's last epoch summary. The same table replaces the block
between the `demo-numbers` markers in README.md (a test checks that the two agree), and the
LBO run's reconstructions.png becomes the README's picture, docs/demo_reconstructions.png.
Run it again whenever the training step or the defaults change.
"""
import datetime
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import configs  # noqa: E402
from machine import cpu_machine, short_commit  # noqa: E402
from summary import format_summary  # noqa: E402

COMMAND = "lab/experiments/demo_numbers.py"  # as the table names it
RESULTS = ROOT / "lab" / "results" / "demo_cpu.md"
README = ROOT / "README.md"
PICTURE = ROOT / "docs" / "demo_reconstructions.png"  # the README's picture
START, END = "<!-- demo-numbers:start -->", "<!-- demo-numbers:end -->"
RUNS = {  # column title -> train.py arguments
    "LBO": ["--preset", "demo", "--output_dir", "outputs_demo"],
    # The study's control: the standard decoder (the demo's FiLM decoder is part of its split)
    "β-VAE control (β = 1)": ["--preset", "demo", "--objective", "elbo", "--decoder", "standard",
                              "--output_dir", "outputs_elbo"],
}


def run(arguments):
    started = time.monotonic()
    subprocess.run([sys.executable, "train.py", *arguments], cwd=ROOT, check=True)
    out = ROOT / arguments[arguments.index("--output_dir") + 1]
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    results = json.loads((out / "final_metrics.json").read_text())
    return {"seconds": time.monotonic() - started, "history": history, "results": results}


def rows(runs):
    """(label, one cell per run) for the held-out table."""
    def cell(fn):
        return [fn(r) for r in runs.values()]

    def swap(r, key, chance):
        s = r["results"]["behaviour"]["swap"]
        return f"{s[key]:.4f} (chance {s[chance]:.4f})"

    def stopped(r):
        last = r["history"][-1]
        return f"{len(r['history'])}" + (f" ({last['decision'].split(':')[0]})"
                                          if last["stop"] else "")
    return [
        ("whole command (wall)", cell(lambda r: f"{r['seconds'] / 60:.1f} min")),
        ("epochs run", cell(stopped)),
        ("held-out MSE / PSNR / SSIM", cell(lambda r: "{mse:.4f} / {psnr:.1f} dB / {ssim:.3f}"
                                             .format(**r["results"]["reconstruction"]))),
        ("pixel variance explained (below 0.5 the split measures are withheld: n/a)", cell(
            lambda r: f"{r['results']['reconstruction']['variance_explained']:.3f}")),
        ("specificity core → structure", cell(
            lambda r: _transfer(r['results']['behaviour']['core_specificity']))),
        ("specificity detail → appearance", cell(
            lambda r: _transfer(r['results']['behaviour']['detail_specificity']))),
        ("swap: structure error vs x1", cell(
            lambda r: swap(r, "structure_error_vs_x1", "structure_chance"))),
        ("swap: appearance error vs x2", cell(
            lambda r: swap(r, "appearance_error_vs_x2", "appearance_chance"))),
        ("swap transfer, structure / appearance (floor–ceiling: 1 = as a reconstruction, "
         "0 = the wrong image, n/a = one image for all)", cell(
            lambda r: " / ".join(_transfer(r["results"]["behaviour"]["swap"][f"{p}_transfer"])
                                 for p in ("structure", "appearance")))),
        ("swap transfer against the two reconstructions, structure / appearance (bounded: "
         "1 = from the right source, 0.5 = no split)", cell(
            lambda r: " / ".join(
                _transfer(r["results"]["behaviour"]["swap"][f"{p}_transfer_bounded"])
                for p in ("structure", "appearance")))),
        ("**split score** = min of the two bounded transfers", cell(
            lambda r: _transfer(r["results"]["behaviour"]["swap"]["split_score"]))),
        ("**drawn split**: the swap's placement of each factor against renderings, the min "
         "of the structure / appearance means (1 = from the right image, 0.5 = none)", cell(
            lambda r: "{0} ({1} / {2})".format(*(_transfer(r["results"]["drawn_shapes"][k])
                                                 for k in ("drawn_split", "swap_structure",
                                                           "swap_appearance"))))),
        ("kind drawn right, reconstruction / swap (balanced accuracy, chance 0.33)", cell(
            lambda r: "{recon_kind:.2f} / {swap_kind:.2f}".format(
                **r["results"]["drawn_shapes"]))),
        ("swap MSE against the true swap image (the reconstruction's MSE)", cell(
            lambda r: "{swap_mse:.4f} ({recon_mse:.4f})".format(
                **r["results"]["drawn_shapes"]))),
        ("MIG / DCI disentanglement", cell(
            lambda r: f"{r['results']['factors']['mig']:.3f} / "
                      f"{r['results']['factors']['dci']['disentanglement']:.3f}")),
        ("KL per dim, core / detail (last epoch)", cell(
            lambda r: f"{r['history'][-1]['kl_core_dim']:.2f} / "
                      f"{r['history'][-1]['kl_detail_dim']:.2f}")),
    ]


def _transfer(value):
    return "n/a" if value != value else f"{value:.2f}"  # NaN: the decoder ignores its input


def table(runs, commit, machine):
    lines = ["| (held-out unless said) | " + " | ".join(runs) + " |",
             "|---|" + "---|" * len(runs)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows(runs)]
    commands = "; ".join(f"`python train.py {shlex.join(a)}`" for a in RUNS.values())
    lines += ["", f"Measured by `python {COMMAND}` on {machine}, commit {commit}, "
              f"{datetime.date.today()} ({commands}). One seed each: no verdict on the method."]
    return "\n".join(lines)


def replace_block(text, block):
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} ... {END} markers around the demo table")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main():
    commit = short_commit()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    commit += " (with uncommitted changes)" if dirty else ""
    runs = {name: run(arguments) for name, arguments in RUNS.items()}
    block = table(runs, commit, cpu_machine())
    lbo = runs["LBO"]["history"]
    RESULTS.write_text("\n".join([
        "# The demo, LBO against the β-VAE control", "", block, "",
        "## The LBO run's last epoch", "", "```",
        format_summary(lbo[-1], configs.PRESETS["demo"]["epochs"]), "```", "",
        "## Tightening decisions, epoch by epoch", "",
        *[f"- epoch {r['epoch']}: {r['decision']} (refused {r['rollback_rate']:.1%})"
          for r in lbo], ""]))
    README.write_text(replace_block(README.read_text(), block))
    shutil.copyfile(ROOT / "outputs_demo" / "reconstructions.png", PICTURE)
    print(block)
    print(f"wrote {RESULTS} and the README block")


if __name__ == "__main__":
    main()
