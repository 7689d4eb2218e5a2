"""README.md quotes measured numbers only, and says what a newcomer needs on its first screen:
its demo table is the one lab/experiments/demo_numbers.py wrote into lab/results/demo_cpu.md, its
study line is what lab/results/study_cpu.md says, its test command is the one CI runs, and every
link in it (and in docs/ and lab/) leads somewhere; its model snippet runs."""
import re
import sys
from pathlib import Path

import pytest
import torch

import configs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab" / "experiments"))
import demo_numbers  # noqa: E402

README = ROOT / "README.md"
DOCS = ROOT / "docs"
LAB = ROOT / "lab"
FIRST_SCREEN = 50  # lines
MAX_LINES = 150
# The demo picture the README shows; it must come from a real demo run, never be drawn.
DEMO_PICTURE = "docs/demo_reconstructions.png"


def block(text):
    return text.split(demo_numbers.START, 1)[1].split(demo_numbers.END, 1)[0].strip()


def test_the_readme_demo_table_is_the_measured_one():
    readme = README.read_text()
    assert readme.count(demo_numbers.START) == readme.count(demo_numbers.END) == 1
    table = block(readme)
    assert f"Measured by `python {demo_numbers.COMMAND}` on " in table, table
    assert "commit " in table
    assert demo_numbers.RESULTS == ROOT / "lab" / "results" / "demo_cpu.md"
    assert table in demo_numbers.RESULTS.read_text()


def test_replacing_the_block_keeps_the_rest_of_the_file():
    text = f"intro\n{demo_numbers.START}\nold\n{demo_numbers.END}\nrest\n"
    assert demo_numbers.replace_block(text, "new") == \
        f"intro\n{demo_numbers.START}\nnew\n{demo_numbers.END}\nrest\n"


# --- short, with set-up, run and test on the first screen ------------------------------------

def ci_test_command():
    """The command .ci/run runs after its '# The README's test command:' line."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    after = lines[lines.index("# The README's test command:") + 1:]
    return next(line.strip() for line in after if line.strip() and not line.startswith("#"))


def section(text, title):
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def code_lines(text):
    """Lines inside ``` fences, comments after '#' dropped."""
    return [line.split("  #")[0].strip()
            for chunk in text.split("```")[1::2] for line in chunk.splitlines()[1:]
            if line.strip()]


def test_the_readme_test_command_is_the_one_ci_runs():
    assert ci_test_command() == "python -m pytest -q"
    assert code_lines(section(README.read_text(), "Test")) == [ci_test_command()]


def test_set_up_run_and_test_are_on_the_first_screen():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; at most {MAX_LINES}"
    first = "\n".join(lines[:FIRST_SCREEN])
    for command in ("python3 -m venv .venv && . .venv/bin/activate",
                    "pip install -r requirements-dev.txt",
                    "python train.py --preset demo",
                    "python celeba_setup.py", "python train.py",
                    "bom_vae_v15.ipynb",
                    ci_test_command()):
        assert command in first, f"{command!r} is not in README.md's first {FIRST_SCREEN} lines"


# --- the study's one line ---------------------------------------------------------------------

def introduced_tables(path):
    """Each markdown table of `path`, in order, as (the text line before it, {row name:
    {column: cell}})."""
    tables, columns, intro = [], None, ""
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            if columns is not None:  # a table ended: the next one needs its own introduction
                columns, intro = None, ""
            intro = line.strip() or intro
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if columns is None:
            columns = cells
            tables.append((intro, {}))
        elif not set(cells[0]) <= set("-"):
            tables[-1][1][cells[0]] = dict(zip(columns[1:], cells[1:]))
    return tables


def table_blocks(path):
    """Each markdown table of `path`, in order, as {row name: {column: cell}}."""
    return [block for _, block in introduced_tables(path)]


STUDY = ROOT / "lab" / "results" / "study_cpu.md"


def paired_tables(path):
    """{control: its paired table} of a study report, each found by its introduction."""
    return {control: block for intro, block in introduced_tables(path)
            for control in re.findall(r"^Paired with the control \(`(\w+)`\)", intro)}


def test_the_readme_study_line_is_what_the_study_measured():
    """The README quotes lab/results/study_cpu.md: LBO's and the control's SSIM and split
    score (5 seeds each), LBO's paired differences from the beta-VAE and from the sum control
    with their verdicts, the commits, the preset's images per run."""
    readme = " ".join(README.read_text().split())
    text = STUDY.read_text()
    blocks = table_blocks(STUDY)
    metrics = next(b for b in blocks if "seeds" in b)
    paired = paired_tables(STUDY)
    assert set(paired) == {"elbo_beta1", "sum"}
    for variant in ("lbo", "elbo_beta1", "sum"):
        assert metrics["seeds"][variant] == "5", variant
        for name in ("ssim", "swap_split_score"):
            assert metrics[name][variant].split(" (n=")[0] in readme, (name, variant)
    for control in paired:
        for name in ("ssim (higher)", "swap_split_score (higher)"):
            difference, verdict = paired[control][name]["lbo"].split(" (n=5 pairs) ")
            assert f"{difference} (paired, {verdict})" in readme, (control, name)
    commits_line = next(ln for ln in text.splitlines() if "made at" in ln)
    commits = re.findall(r"\b[0-9a-f]{7,40}\b", commits_line)
    assert commits and "+dirty" not in commits_line
    for commit in commits:
        assert f"{commit[:7]}" in readme, commit
    assert "`--preset study`" in text or "preset `study`" in text


CONSISTENCY = ROOT / "lab" / "results" / "study_consistency_cpu.md"


def test_the_readme_consistency_line_is_what_its_study_measured():
    """The README quotes lab/results/study_consistency_cpu.md: the consistency split with the
    asymmetric decoder, under LBO (SSIM, split score) and under the sum (split score), 5 seeds
    each, and its verdicts against LBO's defaults, the beta-VAE and the sum control."""
    readme = " ".join(README.read_text().split())
    blocks = table_blocks(CONSISTENCY)
    metrics = next(b for b in blocks if "seeds" in b)
    lbo, summed = "lbo_consistency_asymmetric", "sum_consistency_asymmetric"
    assert metrics["seeds"][lbo] == metrics["seeds"][summed] == "5"
    quoted = [metrics["ssim"][lbo], metrics["swap_split_score"][lbo],
              metrics["swap_split_score"][summed]]
    for cell in quoted:
        assert cell.split(" (n=")[0] in readme, cell
    # "better than LBO's defaults, the beta-VAE and the sum control (paired)"
    paired = paired_tables(CONSISTENCY)
    for control in ("lbo", "elbo_beta1", "sum"):
        assert paired[control]["swap_split_score (higher)"][lbo].endswith(" better"), control
    assert "better than LBO's defaults, the β-VAE and the sum control (paired)" in readme


SPARSE = ROOT / "lab" / "results" / "study_sparse_cpu.md"
PAPER = ROOT / "lab" / "results" / "study_paper_cpu.md"
DRAWN = ROOT / "lab" / "results" / "drawn_split_paper_cpu.md"
DRAWN_SPARSE = ROOT / "lab" / "results" / "drawn_split_sparse_cpu.md"
LBO = "lbo_consistency_asymmetric"
# The paper grid's rows in the README, in its order, each with the name the README gives it.
PAPER_ROWS = {LBO: "LBO, split switches",
              "sum_consistency_asymmetric": "the sum of the same goals",
              "smooth_max_mu0.01_consistency_asymmetric": "smooth_max μ 0.01 (min-like)",
              "smooth_max_mu0.1_consistency_asymmetric": "smooth_max μ 0.1",
              "smooth_max_mu1_consistency_asymmetric": "smooth_max μ 1 (sum-like)",
              "multipliers_consistency_asymmetric": "multipliers (GECO-style)",
              "elbo_beta1": "β-VAE, β = 1",
              "elbo_beta1_asymmetric": "β-VAE, asymmetric decoder"}


def drawn_rows(path):
    """{variant: {column: cell}} of a lab/experiments/drawn_split.py table."""
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in path.read_text().splitlines() if line.startswith("|")]
    columns = rows[0]
    return {cells[1]: dict(zip(columns, cells)) for cells in rows[2:]}


def paired_cell(report, control, variant, metric):
    """"+0.0432 ± 0.022 better" from a study report's paired table (5 pairs)."""
    difference, verdict = paired_tables(report)[control][f"{metric} (higher)"][variant].split(
        " (n=5 pairs) ")
    return f"{difference} {verdict}"


def paper_rows():
    """The README's paper-grid table rows, from the two grids' reports and drawn-split tables:
    LBO's held-out SSIM, every other variant's SSIM paired with LBO's, and the drawn split."""
    grids = [(report, next(b for b in table_blocks(report) if "seeds" in b), drawn_rows(drawn))
             for report, drawn in ((PAPER, DRAWN), (SPARSE, DRAWN_SPARSE))]
    lines = []
    for variant, name in PAPER_ROWS.items():
        cells = [name]
        for report, metrics, drawn in grids:
            assert metrics["seeds"][variant] == "5", (report.name, variant)
            assert drawn[variant]["seeds"] == "5", (report.name, variant)
            cells += [metrics["ssim"][variant].split(" (n=")[0] if variant == LBO
                      else paired_cell(report, LBO, variant, "ssim"), drawn[variant]["drawn split"]]
        lines.append(f"| {' | '.join(cells)} |")
    return lines


def test_the_readme_paper_table_is_what_the_grids_measured():
    readme = README.read_text()
    for line in paper_rows():
        assert line in readme, line


def test_the_readme_paper_answers_are_what_the_grids_measured():
    """The asymmetric decoder's gain for the beta-VAE (paired with the standard one) on both
    kinds of data; on small shapes on black, "within 0.05" only when the sum's mean SSIM is
    less than 0.05 above LBO's; the range of split scores there; the commits the runs name."""
    readme = " ".join(README.read_text().split())
    for report in (PAPER, SPARSE):
        gain = paired_cell(report, "elbo_beta1", "elbo_beta1_asymmetric", "ssim")
        share = paired_cell(report, "elbo_beta1", "elbo_beta1_asymmetric", "variance_explained")
        assert f"SSIM {gain}, variance explained {share}" in readme, report.name
    glance, drawn = table_blocks(PAPER)[0], drawn_rows(DRAWN)
    beta = [glance[v]["split score"] for v in ("elbo_beta1", "elbo_beta1_asymmetric")]
    assert "Its split score rises from {} to {}".format(*beta) in readme
    beta = [drawn[v]["drawn split"] for v in ("elbo_beta1", "elbo_beta1_asymmetric")]
    assert "its drawn split from {} to {}".format(*beta) in readme
    metrics = next(b for b in table_blocks(SPARSE) if "seeds" in b)
    standard = paired_cell(SPARSE, LBO, "lbo_consistency", "ssim")
    share = float(metrics["variance_explained"]["lbo_consistency"].split(" ")[0])
    assert share < 0.5 and f"with the standard decoder SSIM {standard} (paired), variance " \
        f"explained {share:.2f} (its split withheld)" in readme
    summed = "sum_consistency_asymmetric"
    ssim = {v: float(metrics["ssim"][v].split(" ")[0]) for v in (LBO, summed)}
    gap = ssim[summed] - ssim[LBO]
    share = paired_cell(SPARSE, LBO, summed, "variance_explained")
    assert f"on black the sum explains more pixel variance, paired {share}" in readme
    assert share.endswith(" better")
    assert ("within 0.05" in readme) == (gap < 0.05), gap
    scores = [float(row["split score"].split(" ")[0]) for row in table_blocks(SPARSE)[0].values()
              if row["split score"] != "n/a"]
    assert f"split scores {min(scores):.2f}–{max(scores):.2f}" in readme
    on_black = [float(row["drawn split"].split(" ")[0]) for row in drawn_rows(DRAWN_SPARSE).values()
                if row["drawn split"] != "n/a"]
    assert max(on_black) < 0.5 and "drawn splits under 0.5" in readme
    paired = re.search(r"^- smooth_max_mu0.1_consistency_asymmetric: (\S+ ± \S+) \(5 seeds\)$",
                       DRAWN.read_text(), flags=re.M).group(1)
    low, half = (float(v) for v in paired.split(" ± "))
    assert low - half > 0 and f"splits better by the drawn split (paired {paired})" in readme
    for report in (PAPER, SPARSE):  # the commits of the table's runs
        made = next(ln for ln in report.read_text().splitlines() if "made at" in ln)
        for commit, runs in re.findall(r"\b([0-9a-f]{7})(?:\+dirty)?: ([^;]+)", made):
            if set(re.findall(r"(\w[\w.]*) seeds", runs)) & set(PAPER_ROWS):
                assert commit in readme, (report.name, commit)


# --- links ------------------------------------------------------------------------------------

def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text)
            if not re.match(r"[a-z]+:", t)]


def broken_links(path):
    broken = []
    for target in relative_links(path):
        file, _, anchor = target.partition("#")
        where = (path.parent / file).resolve() if file else path
        if file == DEMO_PICTURE and path == README:
            continue  # test_the_demo_picture_is_committed
        if not where.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target} (no such heading)")
    return broken


def test_every_readme_link_resolves():
    assert broken_links(README) == []


def test_every_docs_page_link_resolves():
    for page in sorted(DOCS.glob("*.md")):
        assert broken_links(page) == [], page.name


def test_every_lab_page_link_resolves():
    for page in (LAB / "README.md", LAB / "notebook.md"):
        assert broken_links(page) == [], page.name


def test_the_readme_links_every_docs_page_and_each_exists():
    linked = {t.partition("#")[0] for t in relative_links(README)
              if t.startswith(("docs/", "lab/")) and t.partition("#")[0].endswith(".md")}
    assert {"docs/design.md", "docs/benchmarks.md", "docs/speed.md", "docs/outputs.md",
            "docs/settings.md", "lab/README.md"} <= linked
    for target in linked:
        assert (ROOT / target).is_file(), target
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")}
    assert pages <= linked, "a docs page nobody links"


def test_docs_pages_named_in_plain_text_exist():
    for page in [README, *DOCS.glob("*.md"), LAB / "README.md", LAB / "notebook.md"]:
        for name in re.findall(r"docs/[\w.-]+\.md", page.read_text()):
            assert (ROOT / name).is_file(), f"{page.name} names {name}"


def test_no_page_sends_the_reader_to_a_file_not_in_the_repository():
    for page in [README, *DOCS.glob("*.md")]:
        assert "SPEC.md" not in page.read_text(), page.name
    assert "docs/design.md" in README.read_text()


def test_the_demo_picture_is_committed():
    assert f"]({DEMO_PICTURE})" in README.read_text()
    if not (ROOT / DEMO_PICTURE).is_file():
        pytest.skip(f"{DEMO_PICTURE} is not committed yet: copy outputs_demo/reconstructions.png "
                    "(or cross_reconstruction.png) from a fresh `python train.py --preset demo`")


def test_the_readme_states_the_images_each_preset_sees_per_run():
    """A count, not a timing: synthetic_size x epochs of each preset, as the README says."""
    readme = " ".join(README.read_text().split())
    for name in ("demo", "study"):
        cfg = configs.parse_args(["--preset", name])
        found = re.search(rf"{name} ([\d,]+) \(([\d,]+) × (\d+) epochs, (\d+)×(\d+)", readme)
        assert found, f"README.md does not say how many images the {name} preset sees"
        total, per_epoch, epochs, side, _ = (int(g.replace(",", "")) for g in found.groups())
        assert (per_epoch, epochs, side) == (cfg.synthetic_size, cfg.epochs, cfg.image_size)
        assert total == per_epoch * epochs


def test_the_readme_states_the_demo_model_and_schedule_the_preset_runs():
    """The demo paragraph names the split switches, the gradient clip and the tightening
    schedule: all from PRESETS["demo"], so a changed preset makes the text wrong until it is
    rewritten."""
    readme = " ".join(README.read_text().split())
    cfg = configs.parse_args(["--preset", "demo"])
    assert f"`--consistency {cfg.consistency} --decoder {cfg.decoder}`" in readme
    assert f"`--lbo_grad_clip {cfg.lbo_grad_clip:g}`" in readme
    assert f"It tightens at ×{1 - cfg.tighten_rate:g} an epoch from epoch " \
        f"{cfg.tighten_start_epoch}," in readme


def test_the_readme_model_snippet_runs_on_a_checkpoint(trained_checkpoint, monkeypatch):
    """The README's "Use a trained model" lines, run as they are on a train.py checkpoint
    (its path swapped in): codes, images in [0, 1], swaps and samples of the sizes it says."""
    trained, path = trained_checkpoint
    code = README.read_text().split("## Use a trained model", 1)[1]
    code = code.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"outputs_demo/checkpoint.pt"' in code
    names = {}
    exec(code.replace('"outputs_demo/checkpoint.pt"', repr(str(path))), names)
    images, vae = names["images"], names["vae"]
    assert not vae.training
    assert names["core"].shape == (len(images), vae.core_dim)
    assert names["detail"].shape == (len(images), vae.latent_dim - vae.core_dim)
    assert names["again"].shape == images.shape and 0 <= names["again"].min() <= 1
    assert torch.equal(names["again"], trained.reconstruct(images).detach())
    assert names["swapped"].shape == (len(images) // 2, *images.shape[1:])
    assert names["samples"].shape == (16, *images.shape[1:])
