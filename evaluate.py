"""Evaluate a trained BOM VAE v15: reconstruction quality, whether core carries structure and
detail carries appearance, the pictures (SPEC §8) and a report.md that gathers them.

    python evaluate.py outputs_bom_v15/checkpoint.pt [--output_dir DIR]

Runs automatically at the end of training; run it by hand to redraw everything from a
checkpoint (after an interrupted run, say).
"""
import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import torch

import configs
import disentanglement
import plots
from checkpoint import read_checkpoint
from configs import GROUPS, UserError
from data import SyntheticShapes, build_datasets, make_loader
from losses import color_histogram, edges, mean_color, ssim_per_image
from models import VAE

TRAVERSAL_DIMS = 15
TRAVERSAL_VALUES = torch.linspace(-3, 3, 11)
PICTURE_IMAGES = 8
BEHAVIOUR_IMAGES = 64      # held-out images for the traversal and swap tests
EFFECT_STEP = 2.0          # a dim is moved to mu - 2 and mu + 2 to measure what it controls
GPU_FID_IMAGES, CPU_FID_IMAGES = 10000, 1000  # LPIPS/FID images when fid_images = 0 (auto)
SWAP_SPAN_EPSILON = 1e-9   # below this the floor and ceiling of the swap test are the same


# --------------------------------------------------------------------------- reconstruction
@torch.no_grad()
def reconstruction_metrics(vae, dataset, cfg, device, amp=contextlib.nullcontext):
    """MSE, PSNR and SSIM of eval-mode reconstructions (decode(mu)) on up to cfg.eval_images."""
    squared, ssims, seen = [], [], 0
    for x in make_loader(dataset, cfg, train=False):
        x = x[: cfg.eval_images - seen].to(device)
        with amp():
            recon = vae.reconstruct(x).float()
        squared.append((recon - x).pow(2).flatten(1).mean(1).cpu())
        ssims.append(ssim_per_image(recon, x).cpu())
        seen += len(x)
        if seen >= cfg.eval_images:
            break
    mse = torch.cat(squared)
    psnr = (10 * torch.log10(1 / mse.clamp(min=1e-10))).mean().item()
    return {"images": seen, "mse": mse.mean().item(), "psnr": psnr,
            "ssim": torch.cat(ssims).mean().item()}


def perceptual_image_count(cfg, device, available):
    """How many held-out images LPIPS and FID use: fid_images, or by default 10,000 on a GPU
    (SPEC §7.6; FID from a few hundred samples is strongly biased upward) and 1,000 on a CPU
    (Inception on 10,000 images takes most of an hour there); never more than there are."""
    wanted = cfg.fid_images or (GPU_FID_IMAGES if device.type == "cuda" else CPU_FID_IMAGES)
    return min(wanted, available)


def perceptual_metrics(vae, dataset, cfg, device, amp=contextlib.nullcontext):
    """LPIPS and FID through torchmetrics on perceptual_image_count images, batch by batch,
    when it is installed and its weights load; else a reason. Both need weights from the
    internet on first use."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    except ImportError as err:
        return {"skipped": f"torchmetrics (with torch-fidelity) is not installed ({err.name}); "
                           "pip install torchmetrics torch-fidelity"}
    wanted, seen = perceptual_image_count(cfg, device, len(dataset)), 0
    try:
        lpips = LearnedPerceptualImagePatchSimilarity(net_type="vgg", normalize=True).to(device)
        fid = FrechetInceptionDistance(normalize=True).to(device)
        with torch.no_grad():
            for x in make_loader(dataset, cfg, train=False):
                x = x[:wanted - seen].to(device)
                with amp():
                    recon = vae.reconstruct(x).float().clamp(0, 1)
                lpips.update(recon, x)
                fid.update(x, real=True)
                fid.update(recon, real=False)
                seen += len(x)
                if seen >= wanted:
                    break
            return {"lpips": lpips.compute().item(), "fid": fid.compute().item(),
                    "images": seen}
    except Exception as err:  # a download refused offline, most often
        return {"skipped": f"LPIPS/FID weights could not be loaded ({type(err).__name__}: "
                           f"{str(err)[:120]})"}


def perceptual_line(perceptual):
    """LPIPS and FID with the number of images they were computed on, or why they were not."""
    if "skipped" in perceptual:
        return f"LPIPS/FID skipped: {perceptual['skipped']}"
    return (f"LPIPS {perceptual['lpips']:.4f}, FID {perceptual['fid']:.2f} "
            f"(on {perceptual['images']} held-out images)")


# ----------------------------------------------------------------------------- behaviour
def image_differences(a, b):
    """Per-image differences in structure (MSE of Sobel edge maps) and appearance (MSE of mean
    colours, MSE of colour histograms): the raw statistics the goals use."""
    def per_image(u, v):
        return (u - v).pow(2).flatten(1).mean(1)
    return {"structure": per_image(edges(a), edges(b)),
            "color": per_image(mean_color(a), mean_color(b)),
            "histogram": per_image(color_histogram(a), color_histogram(b))}


def _chance(x):
    """What two arbitrary images differ by: each image against the next one."""
    return {k: v.mean().item() for k, v in image_differences(x, x.roll(1, 0)).items()}


@torch.no_grad()
def traversal_effects(vae, x, chance):
    """(D, 2): for every latent dim, how much moving it from mu - 2 to mu + 2 changes the
    decoded image's structure and appearance, relative to the chance difference."""
    mu = vae.encode(x)[0].float()
    effects = []
    for d in range(mu.shape[1]):
        low, high = mu.clone(), mu.clone()
        low[:, d] -= EFFECT_STEP
        high[:, d] += EFFECT_STEP
        diff = image_differences(vae.decode(low).float(), vae.decode(high).float())
        appearance = (diff["color"].mean().item() / chance["color"]
                      + diff["histogram"].mean().item() / chance["histogram"]) / 2
        effects.append([diff["structure"].mean().item() / chance["structure"], appearance])
    return torch.tensor(effects)


@torch.no_grad()
def swap_test(vae, x, chance):
    """decode(core of x1, detail of x2): its structure error against x1 and its appearance
    error against x2, beside controls that a decoder ignoring its input cannot beat (beating
    an arbitrary image is not enough: one constant image does):

      floor       the decoder's own reconstruction of the image the part comes from
      ceiling     the reconstruction of the other image (a swap that kept the wrong part)
      mean_image  the held-out batch's mean image (a constant decoder)
      transfer    (ceiling - error) / (ceiling - floor): 1 when the swap carries the part as
                  well as a reconstruction does, 0 when no better than the wrong image; NaN
                  when floor = ceiling, i.e. the decoder draws the same image for both"""
    half = len(x) // 2
    x1, x2 = x[:half], x[half:2 * half]
    mu = vae.encode(torch.cat([x1, x2]))[0].float()
    core = vae.core_dim
    cross = torch.cat([mu[:half, :core], mu[half:, core:]], 1)
    decoded = vae.decode(torch.cat([cross, mu])).float()  # eval mode: image by image
    swapped, recon1, recon2 = decoded[:half], decoded[half:2 * half], decoded[2 * half:]
    mean_image = x.mean(0, keepdim=True).expand_as(x1)
    result = {}
    for part, target, own, other, key, stat in (
            ("structure", x1, recon1, recon2, "structure_error_vs_x1", "structure"),
            ("appearance", x2, recon2, recon1, "appearance_error_vs_x2", "color")):
        errors = [image_differences(images, target)[stat].mean().item()
                  for images in (swapped, own, other, mean_image)]
        result.update(dict(zip((key, f"{part}_floor", f"{part}_ceiling", f"{part}_mean_image"),
                               errors)))
        result[f"{part}_chance"] = chance[stat]
        span = result[f"{part}_ceiling"] - result[f"{part}_floor"]
        result[f"{part}_transfer"] = (result[f"{part}_ceiling"] - result[key]) / span \
            if span > SWAP_SPAN_EPSILON else math.nan
    return result


def behaviour_report(vae, dataset, device):
    x = _first_images(dataset, BEHAVIOUR_IMAGES).to(device)
    chance = _chance(x)
    effects = traversal_effects(vae, x, chance)
    report = disentanglement.specificity(effects.numpy(), vae.core_dim)
    report["effects"] = effects.tolist()
    report["swap"] = swap_test(vae, x, chance)
    return report


@torch.no_grad()
def factor_report(vae, cfg, device):
    """Built-in dataset only (its generating factors are known): how well each structure and
    appearance factor is predicted from core versus detail, plus MIG and DCI."""
    fit_n = int(0.8 * cfg.probe_images)
    data = SyntheticShapes(cfg.probe_images, cfg.image_size, seed=cfg.seed + 7,
                           return_factors=True)
    codes, factors = [], []
    for start in range(0, len(data), 256):
        items = [data[i] for i in range(start, min(start + 256, len(data)))]
        x = torch.stack([image for image, _ in items]).to(device)
        codes.append(vae.encode(x)[0].float().cpu())
        factors.append(torch.stack([f for _, f in items]))
    codes, factors = torch.cat(codes), torch.cat(factors)
    split = (codes[:fit_n], factors[:fit_n], codes[fit_n:], factors[fit_n:])
    names = list(SyntheticShapes.STRUCTURE_FACTORS + SyntheticShapes.APPEARANCE_FACTORS)
    probes = disentanglement.part_probe_table(*split, vae.core_dim, names)
    dci = disentanglement.dci(*split)
    dci.pop("importance")
    return {"probes": probes, "structure_factors": list(SyntheticShapes.STRUCTURE_FACTORS),
            "appearance_factors": list(SyntheticShapes.APPEARANCE_FACTORS),
            "mig": disentanglement.mutual_information_gap(codes, factors)["mig"], "dci": dci}


# ------------------------------------------------------------------------------- pictures
def _first_images(dataset, n):
    return torch.stack([dataset[i] for i in range(min(n, len(dataset)))])


@torch.no_grad()
def _traversal_grid(vae, mu, dims):
    """For one image's mu: each dim in `dims` swept over TRAVERSAL_VALUES around its value."""
    rows = []
    for d in dims:
        z = mu.repeat(len(TRAVERSAL_VALUES), 1)
        z[:, d] += TRAVERSAL_VALUES.to(z)
        rows.append(vae.decode(z).float().cpu())
    return torch.stack(rows)


@torch.no_grad()
def draw_pictures(vae, dataset, history, out, device, target_rollback_rate, effects=None):
    """Every picture of SPEC §8, the prior samples, and the training curves."""
    out = Path(out)
    x = _first_images(dataset, 2 * PICTURE_IMAGES).to(device)
    mu = vae.encode(x)[0].float()
    core = vae.core_dim
    z_core_only = torch.cat([mu[:, :core], torch.zeros_like(mu[:, core:])], 1)
    recon, recon_core = vae.decode(mu).float(), vae.decode(z_core_only).float()
    half = len(x) // 2
    cross = vae.decode(torch.cat([mu[:half, :core], mu[half:2 * half, core:]], 1)).float()
    # The most variable dims of each part (over this sample) show the most in a traversal.
    spread = mu.var(0) if len(mu) > 1 else torch.ones(mu.shape[1], device=mu.device)
    core_dims = spread[:core].argsort(descending=True)[:TRAVERSAL_DIMS].tolist()
    detail_dims = (spread[core:].argsort(descending=True)[:TRAVERSAL_DIMS] + core).tolist()
    values = TRAVERSAL_VALUES.tolist()
    prior = vae.decode(torch.randn(16, mu.shape[1], device=device,
                                   generator=torch.Generator(device).manual_seed(0))).float()
    paths = [
        plots.save_reconstructions(out / "reconstructions.png", x.cpu(), recon.cpu(),
                                   recon_core.cpu()),
        plots.save_traversals(out / "traversals_core.png", _traversal_grid(vae, mu[0], core_dims),
                              core_dims, values, "Core traversals (structure)"),
        plots.save_traversals(out / "traversals_detail.png",
                              _traversal_grid(vae, mu[0], detail_dims), detail_dims, values,
                              "Detail traversals (appearance)"),
        plots.save_cross_reconstruction(out / "cross_reconstruction.png", x[:half].cpu(),
                                        x[half:2 * half].cpu(), cross.cpu()),
        plots.save_prior_samples(out / "prior_samples.png", prior.cpu()),
    ]
    if effects is not None:
        paths.append(plots.save_dim_effects(out / "dim_effects.png", effects, core))
    if history:
        paths += [
            plots.save_group_balance(out / "group_balance.png", history, GROUPS),
            plots.save_training_history(out / "training_history.png", history),
            plots.save_bottleneck_shares(out / "bottleneck_shares.png", history, GROUPS),
            plots.save_rollback_rate(out / "rollback_rate.png", history, target_rollback_rate),
        ]
    return [Path(p) for p in paths]


# --------------------------------------------------------------------------------- report
def _number(value, digits=4):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}g}"


def write_report(out, cfg, history, results, pictures):
    """report.md: configuration, final metrics, disentanglement numbers and the pictures."""
    rec, behaviour = results["reconstruction"], results["behaviour"]
    lines = [f"# BOM VAE v15 — {cfg.objective.upper()} run", ""]
    if history:
        last = history[-1]
        lines += [f"{len(history)} epochs; last: {last['decision']}. Final epoch: loss "
                  f"{_number(last['loss'])}, min group {_number(last['min_group'])}, "
                  f"rollback rate {last['rollback_rate']:.1%}, KL/dim core "
                  f"{_number(last['kl_core_dim'])} detail {_number(last['kl_detail_dim'])}"
                  + "".join(f"; {name} goal {goal['bounds']}, score {_number(goal['score'])}"
                            for name, goal in last.get("kl_goals", {}).items()) + ".", ""]
    lines += ["## Held-out reconstruction", "", "| images | MSE | PSNR (dB) | SSIM |",
              "|---|---|---|---|",
              f"| {rec['images']} | {_number(rec['mse'])} | {_number(rec['psnr'])} | "
              f"{_number(rec['ssim'])} |", ""]
    perceptual = results["perceptual"]
    lines += [perceptual_line(perceptual),
              ""]
    swap = behaviour["swap"]
    lines += ["## Does core carry structure and detail appearance?", "",
              "Traversal specificity (share of a dim's effect that is of its part's kind; "
              "1 = pure, 0.5 = mixed):", "",
              f"- core → structure: **{_number(behaviour['core_specificity'], 3)}**",
              f"- detail → appearance: **{_number(behaviour['detail_specificity'], 3)}**", "",
              "Swap test, decode(core of x1, detail of x2). Floor: the reconstruction of the "
              "image the part comes from; ceiling: the reconstruction of the other one; "
              "transfer = (ceiling − error) / (ceiling − floor), 1 = as good as a "
              "reconstruction, 0 = no better than the wrong image, n/a = the decoder draws "
              "the same image for both (a constant image beats an arbitrary one, so chance alone "
              "proves nothing):", "",
              "| | error | floor | ceiling | mean image | arbitrary image | transfer |",
              "|---|---|---|---|---|---|---|",
              *(f"| {label} | {_number(swap[key])} | {_number(swap[part + '_floor'])} | "
                f"{_number(swap[part + '_ceiling'])} | {_number(swap[part + '_mean_image'])} | "
                f"{_number(swap[part + '_chance'])} | {_number(swap[part + '_transfer'], 3)} |"
                for label, part, key in (
                    ("structure vs x1 (edge MSE)", "structure", "structure_error_vs_x1"),
                    ("appearance vs x2 (mean-colour MSE)", "appearance",
                     "appearance_error_vs_x2"))), ""]
    factors = results.get("factors")
    if factors:
        lines += ["## Generating factors of the built-in dataset", "",
                  "Held-out R² of a ridge probe from each part of the latent:", "",
                  "| factor | kind | from core | from detail | from all |", "|---|---|---|---|---|"]
        for name, row in factors["probes"].items():
            kind = "structure" if name in factors["structure_factors"] else "appearance"
            lines.append(f"| {name} | {kind} | {_number(row['core_r2'], 3)} | "
                         f"{_number(row['detail_r2'], 3)} | {_number(row['all_r2'], 3)} |")
        dci = factors["dci"]
        lines += ["", f"MIG {_number(factors['mig'], 3)}; DCI disentanglement "
                  f"{_number(dci['disentanglement'], 3)}, completeness "
                  f"{_number(dci['completeness'], 3)}, informativeness "
                  f"{_number(dci['informativeness'], 3)}.", ""]
    lines += ["## Pictures", ""] + [f"![{p.stem}]({p.name})" for p in pictures]
    settings = {k: v for k, v in configs.to_dict(cfg).items() if k != "goals"}
    lines += ["", "## Configuration", "", "```json", json.dumps(settings, indent=1), "```"]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def evaluate_run(vae, cfg, heldout, history, out, device, amp=contextlib.nullcontext):
    """Everything above for one model; writes final_metrics.json, the pictures and report.md."""
    vae.eval()
    try:
        results = {"reconstruction": reconstruction_metrics(vae, heldout, cfg, device, amp),
                   "perceptual": perceptual_metrics(vae, heldout, cfg, device, amp),
                   "behaviour": behaviour_report(vae, heldout, device)}
        if cfg.dataset == "synthetic":
            results["factors"] = factor_report(vae, cfg, device)
        pictures = draw_pictures(vae, heldout, history, out, device, cfg.target_rollback_rate,
                                 results["behaviour"]["effects"])
    finally:
        vae.train()
    (Path(out) / "final_metrics.json").write_text(json.dumps(results, indent=2))
    results["report"] = write_report(out, cfg, history, results, pictures)
    results["pictures"] = pictures
    return results


def summary_lines(results):
    rec, behaviour = results["reconstruction"], results["behaviour"]
    swap = behaviour["swap"]
    lines = [f"held-out ({rec['images']} images): MSE {rec['mse']:.5f}  PSNR {rec['psnr']:.2f} "
             f"dB  SSIM {rec['ssim']:.4f}",
             f"specificity: core -> structure {_number(behaviour['core_specificity'], 3)}, "
             f"detail -> appearance {_number(behaviour['detail_specificity'], 3)}; swap: "
             f"structure {swap['structure_error_vs_x1']:.4g} (chance "
             f"{swap['structure_chance']:.4g}, transfer {_number(swap['structure_transfer'], 3)}"
             f"), appearance {swap['appearance_error_vs_x2']:.4g} (chance "
             f"{swap['appearance_chance']:.4g}, transfer "
             f"{_number(swap['appearance_transfer'], 3)})"]
    perceptual = results["perceptual"]
    lines.append(perceptual_line(perceptual))
    lines.append(f"report: {results['report']}; pictures: "
                 + ", ".join(p.name for p in results["pictures"]))
    return lines


def load_checkpoint(path, device):
    """Config, VAE and the whole saved state from a checkpoint written by train.py."""
    state = read_checkpoint(path, device)
    cfg = configs.from_dict(state["config"])
    vae = VAE(cfg).to(device)
    vae.load_state_dict(state["vae"])
    return cfg, vae, state


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--output_dir", help="where to write (default: the checkpoint's folder)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
        cfg, vae, state = load_checkpoint(args.checkpoint, device)
        _, heldout, description = build_datasets(cfg)
        out = Path(args.output_dir or Path(args.checkpoint).parent)
        out.mkdir(parents=True, exist_ok=True)
        print(f"{description}: evaluating {args.checkpoint}")
        for line in summary_lines(evaluate_run(vae, cfg, heldout, state["history"], out,
                                               device)):
            print(line)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
