"""What an evaluation says in words: report.md (the numbers, explained, with the pictures and
the configuration) and the lines printed at the end of a run. The numbers come from
quality.py, split_measures.py and probes.py; final_metrics.json holds them raw.
"""
import json
import math
from pathlib import Path

import numpy as np

import configs
import disentanglement
from probes import CATEGORICAL_MAX_CLASSES, MEASURE_LABELS, factor_kinds
from quality import perceptual_line
from split_measures import MIN_VARIANCE_EXPLAINED


def number_text(value, digits=4):
    """A number to `digits` significant digits, or n/a for a missing or NaN one."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}g}"


def _skipped_or(result, text):
    """text, or n/a with the reason when the metric was skipped."""
    return f"n/a ({result['skipped']})" if "skipped" in result else text


def factor_vae_text(result):
    """The FactorVAE score with its counts beside disentanglement_lib's, or why it is n/a."""
    if "skipped" in result:
        return f"FactorVAE score n/a ({result['skipped']})"
    counts = result.get("counts", {})
    return (f"FactorVAE score {number_text(result['eval_accuracy'], 3)} (train "
            f"{number_text(result['train_accuracy'], 3)}; {result['num_active_dims']} active "
            "dims; "
            f"{counts.get('train_votes')} / {counts.get('eval_votes')} votes of "
            f"{counts.get('batch')} images, variances from {counts.get('variance_images')} "
            "images: disentanglement_lib uses 10000 / 5000 votes of 64, variances from 10000)")


# ------------------------------------------------------------------- report.md, by section
def history_lines(history):
    """report.md's opening line on the training: epochs, the last decision and its numbers."""
    if not history:
        return []
    last = history[-1]
    kl_goals = "".join(f"; {name} goal {goal['bounds']}, score {number_text(goal['score'])}"
                       for name, goal in last.get("kl_goals", {}).items())
    return [f"{len(history)} epochs; last: {last['decision']}. Final epoch: loss "
            f"{number_text(last['loss'])}, min group {number_text(last['min_group'])}, "
            f"rollback rate {last['rollback_rate']:.1%}, KL/dim core "
            f"{number_text(last['kl_core_dim'])} detail "
            f"{number_text(last['kl_detail_dim'])}{kl_goals}.", ""]


def reconstruction_lines(rec, perceptual):
    """report.md's section on held-out reconstruction quality (quality.py)."""
    return ["## Held-out reconstruction", "",
            "| images | MSE | PSNR (dB) | SSIM | pixel variance explained |",
            "|---|---|---|---|---|",
            f"| {rec['images']} | {number_text(rec['mse'])} | {number_text(rec['psnr'])} | "
            f"{number_text(rec['ssim'])} | {number_text(rec.get('variance_explained'), 3)} |",
            "",
            "Pixel variance explained: 1 − MSE / the held-out images' pixel variance around "
            "their mean image (0 = no better than drawing the mean image). Below "
            f"{MIN_VARIANCE_EXPLAINED:g} every split measure below is withheld (n/a).", "",
            perceptual_line(perceptual), ""]


def split_lines(behaviour, withheld):
    """report.md's section on the traversals and the swap (split_measures.behaviour_report);
    withheld: why they are n/a (split_measures.split_withheld), if they are."""
    swap = behaviour["swap"]
    min_part_effect = behaviour.get("min_part_effect", disentanglement.MIN_PART_EFFECT)
    return ["## Does core carry structure and detail appearance?", "",
            *([f"**Split measures {withheld}.**", ""] if withheld else []),
            "Traversal specificity (share of a part's traversal effect that is of its "
            "kind; 1 = pure, 0.5 = mixed; each effect in units of how much the "
            "reconstructions of two different images differ). Each dim counts by its "
            "effect (the part's summed structure, or appearance, effect over its summed "
            "effect), and a part is n/a when its dims together change the image by less "
            f"than {min_part_effect:g} "
            "of that difference (or the reconstructions do not differ at all):", "",
            f"- core → structure: **{number_text(behaviour['core_specificity'], 3)}** "
            f"(summed effect {number_text(behaviour.get('core_effect'), 3)})",
            f"- detail → appearance: **{number_text(behaviour['detail_specificity'], 3)}** "
            f"(summed effect {number_text(behaviour.get('detail_effect'), 3)})", "",
            "Swap test, decode(core of x1, detail of x2) = sw, scored against the two "
            "reconstructions r1, r2: structure transfer = d(sw, r2) / (d(sw, r1) + "
            "d(sw, r2)) with d the edge MSE, appearance transfer the same with the "
            "mean-colour MSE and the roles of r1 and r2 exchanged; both in [0, 1], 1 = the "
            "part came across, 0 = the other image's did, 0.5 = split nothing, n/a = the "
            "decoder draws one image for both. "
            f"**Split score = min of the two: {number_text(swap.get('split_score'), 3)}** "
            f"(structure {number_text(swap.get('structure_transfer_bounded'), 3)}, appearance "
            f"{number_text(swap.get('appearance_transfer_bounded'), 3)}).", "",
            "The same swap against the images: error of sw against x1 (structure) and x2 "
            "(appearance). Floor: the reconstruction of the "
            "image the part comes from; ceiling: the reconstruction of the other one; "
            "floor–ceiling transfer = (ceiling − error) / (ceiling − floor), unbounded and "
            "noisy when the span is small against the error, 1 = as good as a "
            "reconstruction, 0 = no better than the wrong image, n/a = the decoder draws "
            "the same image for both (a constant image beats an arbitrary one, so chance alone "
            "proves nothing); bounded transfer as above:", "",
            *swap_table_lines(swap), ""]


def swap_table_lines(swap):
    """The swap test against the images: error, its controls and both transfers, per part."""
    lines = ["| | error | floor | ceiling | mean image | arbitrary image | floor–ceiling "
             "transfer | bounded transfer (vs reconstructions) |",
             "|---|---|---|---|---|---|---|---|"]
    for label, part, key in (
            ("structure vs x1 (edge MSE)", "structure", "structure_error_vs_x1"),
            ("appearance vs x2 (mean-colour MSE)", "appearance", "appearance_error_vs_x2")):
        cells = [swap[key], swap[f"{part}_floor"], swap[f"{part}_ceiling"],
                 swap[f"{part}_mean_image"], swap[f"{part}_chance"]]
        transfers = [swap[f"{part}_transfer"], swap.get(f"{part}_transfer_bounded")]
        lines.append(f"| {label} | " + " | ".join([number_text(c) for c in cells]
                                                   + [number_text(t, 3) for t in transfers])
                     + " |")
    return lines


def drawn_text(drawn):
    """One line on what the decodes draw (split_measures.drawn_shapes_report)."""
    return (f"kind drawn right (balanced accuracy, chance {number_text(drawn['chance'], 3)}): "
            f"reconstruction {number_text(drawn['recon_kind'], 3)}, swap (x1's kind) "
            f"{number_text(drawn['swap_kind'], 3)}; swap MSE against the true swap image "
            f"{number_text(drawn['swap_mse'])} (reconstruction MSE "
            f"{number_text(drawn['recon_mse'])}); drawn split "
            f"{number_text(drawn.get('drawn_split'), 3)} (the swap's mean placement of the "
            f"structure factors {number_text(drawn.get('swap_structure'), 3)}, of the "
            f"appearance factors {number_text(drawn.get('swap_appearance'), 3)})")


def drawn_lines(drawn):
    """report.md's section on what the decodes of the built-in shapes draw."""
    if not drawn:
        return []
    return ["## What the pictures draw (built-in shapes)", "",
            f"Each decode of {drawn['images']} held-out images against renderings of the "
            "factors it should show. The kind it draws is the one whose rendering (its other "
            "factors unchanged) is nearest in MSE; the true swap image is x1's shape at x1's "
            "place, size and rotation in x2's colours and background, rendered:", "",
            f"- {drawn_text(drawn)}.", "",
            *placement_lines(drawn)]


def placement_lines(drawn):
    """The per-factor placements of drawn_shapes_report as a table (none from runs evaluated
    before they were measured)."""
    if "swap_factors" not in drawn:
        return []
    lines = ["Each factor's placement: where the decode lies between the true image with that "
             "one factor taken from the wrong image (0) and the true image (1); about 0.5 when "
             "the decoder draws the factor the same whatever the images. The swap should take "
             "the structure factors from x1 and the appearance factors from x2; the "
             "reconstruction of x1 says whether the model draws the factor at all. The drawn "
             "split is the min of the swap's two part means.", "",
             "| placement | " + " | ".join(drawn["swap_factors"]) + " |",
             "|---|" + "---|" * len(drawn["swap_factors"])]
    for label, key in (("swap", "swap_factors"), ("reconstruction of x1", "recon_factors")):
        lines.append(f"| {label} | "
                     + " | ".join(number_text(v, 3) for v in drawn[key].values()) + " |")
    return lines + [""]


def factor_lines(factors, withheld=None):
    """report.md's section on a dataset with known factors (probes.factor_report); withheld:
    why the per-factor split is n/a (split_measures.split_withheld), if it is."""
    if not factors:
        return []
    kinds = factor_kinds(factors)
    lines = [f"## Generating factors: {factors.get('dataset', 'built-in shapes')}", ""]
    if withheld:
        lines += [f"**The per-factor split is {withheld}.**", ""]
    if factors.get("note"):
        lines += [f"{factors['note']}.", ""]
    k = factors.get("probe_k", "k")
    lines += ["What each part of the latent predicts of each factor, on held-out images "
              f"({factors.get('images', '?')} images, 80 % fit; a structure factor should be "
              "predicted from core, an appearance factor from detail). Each factor is scored "
              "by the measure its kind calls for: R² of a ridge probe for a quantity; "
              "balanced accuracy of a class-balanced logistic probe for a category (a "
              f"discrete factor of at most {CATEGORICAL_MAX_CLASSES} classes; chance = 1 / "
              "classes); for a rotation that a shape's symmetry makes ambiguous, the R² of "
              "the angle modulo that symmetry within each shape, leaving out shapes that show "
              "no rotation. Equal capacity: core has "
              f"{k} dims, detail more, so “detail, best {k}” is the same probe on the {k} "
              "detail dims that best predict the factor alone on the fit split (chosen there "
              "only, scored on the held-out images). The last column is the old measure (ridge "
              "R² of the raw factor value from core / detail / all) for comparison:", "",
              f"| factor | kind | measure | chance | from core ({k} dims) | from detail (all) | "
              f"from detail, best {k} | from all | classes | old: ridge R² core / detail / all |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    classes = factors.get("classes", {})
    lines += [factor_row(name, row, kinds[name], classes.get(name, "?"))
              for name, row in factors["probes"].items()]
    notes = [f"{name}: {row['note']}" for name, row in factors["probes"].items()
             if row.get("note")]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    dci = factors["dci"]
    dci_text = _skipped_or(dci, f"disentanglement {number_text(dci.get('disentanglement'), 3)}"
                                f", completeness {number_text(dci.get('completeness'), 3)}, "
                                f"informativeness {number_text(dci.get('informativeness'), 3)} "
                                f"({dci.get('trees')} trees a factor; disentanglement_lib: 100)")
    sap = "n/a" if factors.get("sap_skipped") else number_text(factors.get("sap"), 3)
    lines += ["", f"MIG {number_text(factors['mig'], 3)}; DCI {dci_text}; SAP {sap}; "
              f"{factor_vae_text(factors.get('factor_vae') or {'skipped': 'not computed'})}.",
              "", "MIG, DCI and SAP use the classes of a discrete factor (column “classes”) "
              "and "
              "cut a continuous one into 20 equal-width bins, as disentanglement_lib does for "
              "a code dim.", "", "![factor_probes](factor_probes.png)", ""]
    return lines


def factor_row(name, row, kind, classes):
    """One factor's row of the table: its measure, chance, the part probes and the old R²."""
    measure = row.get("measure", "r2")
    scores = [row.get(key) for key in ("chance", "core", "detail", "detail_best_k", "all")]
    old = " / ".join(number_text(row[key], 3) for key in ("core_r2", "detail_r2", "all_r2"))
    return (f"| {name} | {kind} | {MEASURE_LABELS.get(measure, measure)} | "
            + " | ".join(number_text(score, 3) for score in scores) + f" | {classes} | {old} |")


def face_lines(faces):
    """report.md's section on CelebA's landmarks and attributes (probes.face_report)."""
    if not faces:
        return []
    lines = ["## Faces: CelebA's landmarks and attributes (test partition)", ""]
    if "skipped" in faces:
        return lines + [f"Not measured: {faces['skipped']}.", ""]
    parts = ("core", "detail", "all")
    split = faces.get("split", {"by": "image", "note": "split by image"})
    people = (f" ({split['fit_people']} people on the fit side, {split['held_out_people']} "
              f"held out, {split['shared_people']} on both)" if split["by"] == "identity"
              else "")
    lines += [f"{faces['images']} test-partition images, probes fitted on "
              f"{faces['fit_images']} and scored on the rest; {split['note']}{people}.", "",
              "Landmarks (positions: structure, so core should predict them), held-out R² of a "
              "ridge probe, mean of x and y:", "",
              "| landmark | from core | from detail | from all |", "|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(number_text(row[p], 3) for p in parts) + " |"
              for name, row in faces["landmarks_r2"].items()]
    lines += ["", "Attributes, held-out balanced accuracy of a logistic probe (0.5 = chance), "
              "mean per group:", "", "| group | from core | from detail | from all |",
              "|---|---|---|---|"]
    lines += [f"| {group} | " + " | ".join(number_text(row[p], 3) for p in parts) + " |"
              for group, row in faces["attribute_groups"].items()]
    lines += ["", "| attribute | kind | from core | from detail | from all |",
              "|---|---|---|---|---|"]
    lines += [f"| {name} | {faces['attribute_kinds'][name]} | "
              + " | ".join(number_text(row[p], 3) for p in parts) + " |"
              for name, row in faces["attributes"].items()]
    return lines + ["", "![face_probes](face_probes.png)", ""]


def write_report(out, cfg, history, results, pictures):
    """report.md: configuration, final metrics, disentanglement numbers and the pictures."""
    withheld = results.get("split_withheld")
    lines = [f"# BOM VAE v15 — {cfg.objective.upper()} run", ""]
    lines += history_lines(history)
    lines += reconstruction_lines(results["reconstruction"], results["perceptual"])
    lines += split_lines(results["behaviour"], withheld)
    lines += drawn_lines(results.get("drawn_shapes"))
    lines += factor_lines(results.get("factors"), withheld) + face_lines(results.get("faces"))
    lines += ["## Pictures", ""] + [f"![{p.stem}]({p.name})" for p in pictures]
    settings = {k: v for k, v in configs.to_dict(cfg).items() if k != "goals"}
    lines += ["", "## Configuration", "", "```json", json.dumps(settings, indent=1), "```"]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------- the console
def summary_lines(results):
    """The lines printed at the end of a run (or of python evaluate.py): the headline numbers
    of every section of report.md, and where the report and the pictures are."""
    rec, behaviour = results["reconstruction"], results["behaviour"]
    swap = behaviour["swap"]
    lines = [f"held-out ({rec['images']} images): MSE {rec['mse']:.5f}  PSNR {rec['psnr']:.2f} "
             f"dB  SSIM {rec['ssim']:.4f}  pixel variance explained "
             f"{number_text(rec.get('variance_explained'), 3)}",
             *([f"split measures {results['split_withheld']}"]
               if results.get("split_withheld") else []),
             f"specificity: core -> structure {number_text(behaviour['core_specificity'], 3)}, "
             f"detail -> appearance {number_text(behaviour['detail_specificity'], 3)}; swap "
             f"split score {number_text(swap.get('split_score'), 3)} (bounded transfer: "
             f"structure {number_text(swap.get('structure_transfer_bounded'), 3)}, appearance "
             f"{number_text(swap.get('appearance_transfer_bounded'), 3)})",
             f"swap vs images: "
             f"structure {swap['structure_error_vs_x1']:.4g} (chance "
             f"{swap['structure_chance']:.4g}, floor-ceiling transfer "
             f"{number_text(swap['structure_transfer'], 3)}), appearance "
             f"{swap['appearance_error_vs_x2']:.4g} (chance "
             f"{swap['appearance_chance']:.4g}, floor-ceiling transfer "
             f"{number_text(swap['appearance_transfer'], 3)})",
             perceptual_line(results["perceptual"])]
    if results.get("drawn_shapes"):
        lines.append(drawn_text(results["drawn_shapes"]))
    if results.get("factors"):
        lines.append(factor_summary_line(results["factors"]))
    if results.get("faces"):
        lines.append(face_summary_line(results["faces"]))
    lines.append(f"report: {results['report']}; pictures: "
                 + ", ".join(p.name for p in results["pictures"]))
    return lines


def factor_summary_line(factors):
    """The factor probes in one line: mean R² of core for the structure factors and of detail
    for the appearance ones, each category's balanced accuracy, MIG and the FactorVAE score."""
    probes, k = factors["probes"], factors.get("probe_k")

    def mean_score(part, names):  # the R²-scored factors (categories are listed apart)
        values = [probes[n][part] for n in names
                  if probes[n].get("measure", "r2") != "balanced_accuracy"]
        return float(np.mean(values)) if values else math.nan
    core = mean_score("core", factors["structure_factors"])
    detail = mean_score("detail", factors["appearance_factors"])
    detail_k = mean_score("detail_best_k", factors["structure_factors"])
    categories = [f"{n} {number_text(r['core'], 3)} / {number_text(r['detail'], 3)} / "
                  f"{number_text(r['detail_best_k'], 3)} (chance {number_text(r['chance'], 3)})"
                  for n, r in probes.items() if r.get("measure") == "balanced_accuracy"]
    accuracy = (f"; balanced accuracy core / detail / detail best {k}: " + ", ".join(categories)
                if categories else "")
    return (f"factors ({factors['dataset']}): mean R² core -> structure "
            f"{number_text(core, 3)} (detail best {k} -> structure {number_text(detail_k, 3)}), "
            f"detail -> appearance {number_text(detail, 3)}{accuracy}; "
            f"MIG {number_text(factors['mig'], 3)}; "
            f"{factor_vae_text(factors['factor_vae']).split(' (')[0]}")


def face_summary_line(faces):
    """The face probes in one line: the landmarks' mean R² from core and from detail, and each
    attribute group's mean balanced accuracy; or why they were not measured."""
    if "skipped" in faces:
        return f"faces: not measured ({faces['skipped']})"
    landmarks = faces["landmarks_r2"].values()
    core = number_text(np.mean([r["core"] for r in landmarks]), 3)
    detail = number_text(np.mean([r["detail"] for r in landmarks]), 3)
    groups = ", ".join(f"{g} {number_text(r['core'], 3)} / {number_text(r['detail'], 3)}"
                       for g, r in faces["attribute_groups"].items())
    return (f"faces (split by {faces.get('split', {}).get('by', 'image')}): landmark R² core "
            f"{core} / detail {detail}; attribute balanced accuracy core / detail: {groups}")
