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

import numpy as np
import torch

import benchmarks
import celeba
import configs
import disentanglement
import imagesets
import plots
from checkpoint import read_checkpoint
from configs import GROUPS, UserError
from data import build_datasets, make_loader
from losses import color_histogram, edges, mean_color, ssim_per_image
from models import VAE

TRAVERSAL_DIMS = 15
TRAVERSAL_VALUES = torch.linspace(-3, 3, 11)
PICTURE_IMAGES = 8
BEHAVIOUR_IMAGES = 64      # held-out images for the traversal and swap tests
EFFECT_STEP = 2.0          # a dim is moved to mu - 2 and mu + 2 to measure what it controls
GPU_FID_IMAGES, CPU_FID_IMAGES = 10000, 1000  # LPIPS/FID images when fid_images = 0 (auto)
SWAP_SPAN_EPSILON = 1e-9   # below this the floor and ceiling of the swap test are the same
# The bounded swap transfer is n/a when the swap is this close to both reconstructions
# (summed distances below this fraction of an arbitrary pair of images' difference): the
# decoder draws one image for both, so there is nothing to tell apart.
SWAP_NULL_FRACTION = 1e-6
# Below this the reconstructions of different images do not differ: traversals are undefined.
RECONSTRUCTION_SPREAD_EPSILON = 1e-9
# The split measures (specificity, swap transfers, split score, the per-factor split) are
# withheld below this share of the held-out pixel variance explained by the reconstructions:
# a swap between two reconstructions that draw nothing (a black frame, the mean image)
# "transfers" structure and appearance by tiny differences, and would read as a split.
MIN_VARIANCE_EXPLAINED = 0.5


# --------------------------------------------------------------------------- reconstruction
@torch.no_grad()
def reconstruction_metrics(vae, dataset, cfg, device, amp=contextlib.nullcontext):
    """MSE, PSNR and SSIM of eval-mode reconstructions (decode(mu)) on up to cfg.eval_images,
    and the share of the images' pixel variance (around their mean image) that the
    reconstructions explain: 1 - MSE / that variance (0 for a decoder drawing the mean image,
    below 0 for one drawing worse)."""
    squared, ssims, variance = [], [], PixelVariance()
    for x in evaluated_batches(dataset, cfg):
        x = x.to(device)
        with amp():
            recon = vae.reconstruct(x)
        squared.append((recon - x).pow(2).flatten(1).mean(1).cpu())
        ssims.append(ssim_per_image(recon, x).cpu())
        variance.add(x)
    mse = torch.cat(squared)
    psnr = (10 * torch.log10(1 / mse.clamp(min=1e-10))).mean().item()
    return {"images": variance.count, "mse": mse.mean().item(), "psnr": psnr,
            "ssim": torch.cat(ssims).mean().item(), "pixel_variance": variance.value,
            "variance_explained": explained_share(mse.mean().item(), variance.value)}


def evaluated_batches(dataset, cfg):
    """The held-out batches reconstruction_metrics measures: the first cfg.eval_images."""
    seen = 0
    for x in make_loader(dataset, cfg, train=False):
        x = x[: cfg.eval_images - seen]
        yield x
        seen += len(x)
        if seen >= cfg.eval_images:
            return


class PixelVariance:
    """The images' pixel variance around their mean image, gathered batch by batch (float64)."""

    def __init__(self):
        self.count, self.pixel_sum, self.square_sum = 0, 0.0, 0.0

    def add(self, x):
        x = x.detach().double()
        self.count += len(x)
        self.pixel_sum = self.pixel_sum + x.sum(0).cpu()
        self.square_sum += x.pow(2).sum().item()

    @property
    def value(self):
        squares = self.pixel_sum.pow(2).sum().item() / self.count
        return (self.square_sum - squares) / (self.count * self.pixel_sum.numel())


def heldout_pixel_variance(dataset, cfg):
    """The pixel variance of the held-out images reconstruction_metrics measures."""
    variance = PixelVariance()
    for x in evaluated_batches(dataset, cfg):
        variance.add(x)
    return variance.value


def explained_share(mse, pixel_variance):
    """1 - MSE / the originals' pixel variance around their mean image; NaN without variance."""
    return 1 - mse / pixel_variance if pixel_variance > 0 else math.nan


def split_withheld(reconstruction):
    """Why the split measures mean nothing for this model (one line), or None when they do."""
    share = reconstruction.get("variance_explained", math.nan)
    if math.isfinite(share) and share >= MIN_VARIANCE_EXPLAINED:
        return None
    said = f"{share:.2f}" if math.isfinite(share) else "none (the images do not vary)"
    return (f"withheld: the reconstructions explain {said} of the held-out images' pixel "
            f"variance (1 = all of it, 0 = no more than their mean image), under "
            f"{MIN_VARIANCE_EXPLAINED:g}; a model that does not reconstruct has no split to "
            "measure")


# What split_withheld withholds: behaviour's specificities and the swap's transfers and
# split score, and each factor probe's core and detail scores (the per-factor split).
WITHHELD_SWAP = ("structure_transfer", "appearance_transfer", "structure_transfer_bounded",
                 "appearance_transfer_bounded", "split_score")
WITHHELD_PROBE = ("core", "detail", "core_best_k", "detail_best_k", "core_r2", "detail_r2")


def withhold_split_measures(results, reason):
    """Replace every split measure in results by NaN (n/a in the report), in place, and
    record why."""
    results["split_withheld"] = reason
    behaviour = results["behaviour"]
    behaviour["core_specificity"] = behaviour["detail_specificity"] = math.nan
    behaviour["structure_share"] = [math.nan] * len(behaviour.get("structure_share", []))
    behaviour["swap"].update({k: math.nan for k in WITHHELD_SWAP})
    for row in (results.get("factors") or {}).get("probes", {}).values():
        row.update({k: math.nan for k in WITHHELD_PROBE if k in row})


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
                    recon = vae.reconstruct(x).clamp(0, 1)
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
def traversal_effects(vae, x, spread):
    """(D, 2): for every latent dim, how much moving it from mu - 2 to mu + 2 changes the
    decoded image's structure and appearance, in units of `spread` (see behaviour_report)."""
    mu = vae.posterior(x).mu
    effects = []
    for d in range(mu.shape[1]):
        low, high = mu.clone(), mu.clone()
        low[:, d] -= EFFECT_STEP
        high[:, d] += EFFECT_STEP
        diff = image_differences(vae.decode_latent(low), vae.decode_latent(high))
        appearance = (diff["color"].mean().item() / spread["color"]
                      + diff["histogram"].mean().item() / spread["histogram"]) / 2
        effects.append([diff["structure"].mean().item() / spread["structure"], appearance])
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
                  when floor = ceiling, i.e. the decoder draws the same image for both.
                  Unbounded: the span is a small part of the error, so it is noisy.

    and, measured against the two reconstructions r1 = recon(x1), r2 = recon(x2) instead of the
    images (see bounded_transfer), the bounded scores

      structure_transfer_bounded   d(sw, r2) / (d(sw, r1) + d(sw, r2)), d the edge MSE: 1 when
                                   the swap's structure is r1's, 0 when it is r2's
      appearance_transfer_bounded  d(sw, r1) / (d(sw, r1) + d(sw, r2)), d the mean-colour MSE:
                                   1 when the swap's appearance is r2's
      split_score                  min of the two: high only if core carries structure AND
                                   detail carries appearance (a decoder that ignores core gets
                                   appearance 1, structure 0, split 0)

    with the four distances as structure_vs_recon1 ... appearance_vs_recon2."""
    half = len(x) // 2
    x1, x2 = x[:half], x[half:2 * half]
    mu = vae.posterior(torch.cat([x1, x2])).mu
    core = vae.core_dim
    cross = torch.cat([mu[:half, :core], mu[half:, core:]], 1)
    decoded = vae.decode_latent(torch.cat([cross, mu]))  # eval mode: image by image
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
    for part, stat, own, other in (("structure", "structure", "1", "2"),
                                   ("appearance", "color", "2", "1")):
        recons = {"1": recon1, "2": recon2}
        for k in ("1", "2"):
            result[f"{part}_vs_recon{k}"] = \
                image_differences(swapped, recons[k])[stat].mean().item()
        result[f"{part}_transfer_bounded"] = bounded_transfer(
            result[f"{part}_vs_recon{own}"], result[f"{part}_vs_recon{other}"], chance[stat])
    result["split_score"] = split_score(result["structure_transfer_bounded"],
                                        result["appearance_transfer_bounded"])
    return result


def bounded_transfer(to_own, to_other, chance):
    """d(sw, other) / (d(sw, own) + d(sw, other)) in [0, 1]: 1 when the swap sw matches the
    reconstruction of the image its part came from ("own"), 0 when it matches the other one,
    0.5 when it is as far from both (a decoder that splits nothing). NaN when both distances
    are below SWAP_NULL_FRACTION of `chance` (how much two arbitrary images differ): the two
    reconstructions are then one image."""
    total = to_own + to_other
    if not total > SWAP_NULL_FRACTION * chance or total <= 0:
        return math.nan
    return to_other / total


def split_score(structure, appearance):
    """min(structure transfer, appearance transfer); NaN when either is."""
    if math.isnan(structure) or math.isnan(appearance):
        return math.nan
    return min(structure, appearance)


def behaviour_report(vae, dataset, device):
    """Traversal specificity and the swap test on the first held-out images.

    A traversal's effect is measured against the reconstruction's own change: how much the
    reconstructions of two different held-out images differ (in structure, in appearance).
    Against the data's spread instead, a decoder that draws nearly one image for every input
    could still show a "specific" share; here such a decoder's effects are undefined, and so
    is its specificity (reported as n/a). Specificity weights each dim by its effect, and a
    part whose traversals together change less than disentanglement.MIN_PART_EFFECT of that
    spread is n/a (see disentanglement.specificity)."""
    x = _first_images(dataset, BEHAVIOUR_IMAGES).to(device)
    chance = _chance(x)
    mu = vae.posterior(x).mu
    spread = _chance(vae.decode_latent(mu))
    if min(spread.values()) > RECONSTRUCTION_SPREAD_EPSILON:
        effects = traversal_effects(vae, x, spread)
        report = disentanglement.specificity(effects.numpy(), vae.core_dim)
    else:
        effects = torch.full((mu.shape[1], 2), math.nan)
        report = {"structure_share": [math.nan] * mu.shape[1],
                  "core_specificity": math.nan, "detail_specificity": math.nan,
                  "core_effect": math.nan, "detail_effect": math.nan}
    report["min_part_effect"] = disentanglement.MIN_PART_EFFECT
    report["reconstruction_spread"] = spread
    report["effects"] = effects.tolist()
    report["swap"] = swap_test(vae, x, chance)
    return report


# Held-out built-in shapes whose drawings are scored against renderings of their factors.
DRAWN_IMAGES = 512


def _kind_distances(shapes, images, factors, image_size):
    """(N, kinds): MSE of each image against the rendering (by `shapes`, the dataset's class)
    of its factors with the shape's kind set to each kind in turn (the other factors as
    given)."""
    distances = np.empty((len(images), len(shapes.SHAPES)))
    for k in range(len(shapes.SHAPES)):
        variant = factors.copy()
        variant[:, 0] = shapes.kind_factor(k)
        renders = shapes.render_all(variant, image_size)
        distances[:, k] = (images - renders).pow(2).flatten(1).mean(1).numpy()
    return distances


@torch.no_grad()
def drawn_shapes_report(vae, dataset, device, amp=contextlib.nullcontext):
    """What the pictures draw, on the built-in shapes (None for other data): each decode is
    scored against renderings of the factors it should show, the true images.

      recon_kind  balanced accuracy of the kind the reconstruction draws (the kind whose
                  rendering, the image's other factors unchanged, is nearest in MSE); a blob
                  nearest one kind for every image scores chance, 1 / kinds
      swap_kind   the same for the swap decode(core of x1, detail of x2), against x1's kind,
                  rendered with x1's structure factors and x2's appearance factors
      swap_mse    MSE of the swap against the true swap image (that rendering, x1's kind)
      recon_mse   MSE of the reconstructions of the same x1: a swap as good as a
                  reconstruction scores this
    The first DRAWN_IMAGES held-out images; x1 the first half, x2 the second."""
    if not isinstance(dataset, imagesets.SyntheticShapes):
        return None
    shapes = type(dataset)
    n = min(DRAWN_IMAGES, len(dataset)) // 2 * 2
    half, size = n // 2, dataset.image_size
    factors = np.stack([dataset.factors(i) for i in range(n)])
    images = shapes.render_all(factors, size)
    mu = torch.cat([torch.from_numpy(_encode(vae, batch, device, amp))
                    for batch in images.split(ENCODE_BATCH)])
    core = vae.core_dim
    cross = torch.cat([mu[:half, :core], mu[half:, core:]], 1)
    recon, swapped = _decode(vae, mu, device, amp), _decode(vae, cross, device, amp)
    kinds = shapes.kind_index(factors[:, 0])
    swap_factors = np.concatenate([factors[:half, :len(shapes.STRUCTURE_FACTORS)],
                                   factors[half:, len(shapes.STRUCTURE_FACTORS):]], 1)
    recon_distances = _kind_distances(shapes, recon, factors, size)
    swap_distances = _kind_distances(shapes, swapped, swap_factors, size)
    rows = np.arange(half)
    return {"images": n, "chance": 1 / len(shapes.SHAPES),
            "recon_kind": disentanglement.balanced_accuracy(recon_distances.argmin(1), kinds),
            "swap_kind": disentanglement.balanced_accuracy(swap_distances.argmin(1),
                                                           kinds[:half]),
            "swap_mse": float(swap_distances[rows, kinds[:half]].mean()),
            "recon_mse": float(recon_distances[rows, kinds[:half]].mean())}


ENCODE_BATCH = 256         # images per encoder call in the factor and face probes
FACTOR_SEED_OFFSET, FACTOR_VAE_SEED_OFFSET, FACE_SEED_OFFSET = 7, 11, 13


def _encode(vae, x, device, amp):
    with amp():
        return vae.posterior(x.to(device)).mu.cpu().numpy()


def _decode(vae, z, device, amp):
    with amp():
        return torch.cat([vae.decode_latent(batch.to(device)).cpu()
                          for batch in z.split(ENCODE_BATCH)])


def _encode_rows(vae, images, rows, device, amp):
    """(n, D) float64 codes (mu) of images(rows), batch by batch."""
    return np.concatenate([_encode(vae, images(rows[i:i + ENCODE_BATCH]), device, amp)
                           for i in range(0, len(rows), ENCODE_BATCH)]).astype(np.float64)


def _metric(function, *args, **kwargs):
    """A metric's result, or why it could not be computed (a constant factor, say)."""
    try:
        return function(*args, **kwargs)
    except ValueError as err:
        return {"skipped": str(err)}


def factor_vae_report(vae, cfg, factor_set, device, amp=contextlib.nullcontext):
    """disentanglement_lib's FactorVAE score, with the (smaller) counts of cfg, or why not."""
    if not factor_set.samplable:
        return {"skipped": "its factors cannot be sampled (no full grid of them)"}
    if not cfg.factor_vae_train or not cfg.factor_vae_eval:
        return {"skipped": "factor_vae_train or factor_vae_eval is 0"}

    def represent(factors):  # each batch's images drawn when it is encoded
        return _encode_rows(vae, factor_set.images_of, factors, device, amp)
    rng = np.random.default_rng(cfg.seed + FACTOR_VAE_SEED_OFFSET)
    result = _metric(disentanglement.factor_vae_score, represent, factor_set.sample_factors,
                     len(factor_set.names), rng,
                     batch_size=cfg.factor_vae_batch, num_train=cfg.factor_vae_train,
                     num_eval=cfg.factor_vae_eval,
                     num_variance_estimate=cfg.factor_vae_variance)
    result["counts"] = {"train_votes": cfg.factor_vae_train, "eval_votes": cfg.factor_vae_eval,
                        "variance_images": cfg.factor_vae_variance,
                        "batch": cfg.factor_vae_batch}
    return result


@torch.no_grad()
def factor_report(vae, cfg, device, amp=contextlib.nullcontext):
    """For a dataset with known factors (the built-in shapes, 3D Shapes, MPI3D, dSprites, a
    folder with --factors): how well each structure and appearance factor is predicted from
    core versus detail, MIG, DCI, SAP and, where factors can be sampled, the FactorVAE score.
    None for a dataset without factors."""
    factor_set = benchmarks.factor_set(cfg)
    if factor_set is None:
        return None
    rng = np.random.default_rng(cfg.seed + FACTOR_SEED_OFFSET)
    n = min(cfg.probe_images, len(factor_set))
    rows = np.arange(n) if factor_set.random_order else rng.permutation(len(factor_set))[:n]
    codes = _encode_rows(vae, factor_set.images, rows, device, amp)
    factors = factor_set.factors[rows]
    fit_n = int(0.8 * n)
    split = (codes[:fit_n], factors[:fit_n], codes[fit_n:], factors[fit_n:])
    # Each factor's kind of value comes from the dataset (benchmarks: class indices; the
    # built-in shapes: shape a class, the rest continuous; a CSV: whole numbers are classes).
    discrete = factor_set.discrete
    classes = factor_classes(factor_set, factors)
    probes = factor_probes(*split, vae.core_dim, factor_set.names, discrete,
                           [classes[name] for name in factor_set.names],
                           rotation_symmetry(cfg, factor_set))
    dci = _metric(disentanglement.dci, *split, discrete=discrete, n_estimators=cfg.dci_trees)
    dci.pop("importance", None)
    dci["trees"] = cfg.dci_trees
    mig = _metric(disentanglement.mutual_information_gap, codes, factors, discrete=discrete)
    sap = _metric(disentanglement.sap, *split, discrete=discrete)
    kinds = dict(zip(factor_set.names, factor_set.kinds))
    return {"dataset": factor_set.title, "note": factor_set.note, "images": n,
            "probes": probes, "kinds": kinds, "probe_k": vae.core_dim,
            "classes": classes,
            "structure_factors": [f for f in factor_set.names if kinds[f] == "structure"],
            "appearance_factors": [f for f in factor_set.names if kinds[f] == "appearance"],
            "mig": mig.get("mig", math.nan), "mig_per_factor": mig.get("per_factor"),
            "dci": dci, "sap": sap.get("sap", math.nan),
            "sap_skipped": sap.get("skipped"),
            "factor_vae": factor_vae_report(vae, cfg, factor_set, device, amp)}


# A discrete factor with at most this many classes is a category (a shape, a colour name):
# scored by the balanced accuracy of a logistic probe against chance (1 / classes), not by the
# R^2 of its class index, whose order means nothing. More classes (dSprites' 32 positions,
# MPI3D's 40 axis steps) are steps of a quantity and keep the R^2.
CATEGORICAL_MAX_CLASSES = 6
MEASURE_LABELS = {"r2": "R²", "balanced_accuracy": "balanced accuracy",
                  "symmetry_r2": "R² within each shape"}


def rotation_symmetry(cfg, factor_set):
    """For a factor set whose rotation factor is defined only up to each shape's symmetry:
    {"factor", "shape_factor", "orders" {shape value: symmetry order, 0 = not visible},
    "span" (radians a factor of 1 stands for)}; None for others. Only the built-in shapes
    say so (imagesets.SyntheticShapes.SYMMETRY_ORDERS)."""
    if cfg.dataset not in imagesets.BUILT_IN_SHAPES or \
            not {"rotation", "shape"} <= set(factor_set.names):
        return None
    shapes = imagesets.BUILT_IN_SHAPES[cfg.dataset]
    return {"factor": "rotation", "shape_factor": "shape",
            "orders": {shapes.kind_factor(k): order
                       for k, order in enumerate(shapes.SYMMETRY_ORDERS)},
            "span": shapes.ROTATION_SPAN,
            "names": {shapes.kind_factor(k): name for k, name in enumerate(shapes.SHAPES)}}


def symmetry_target(angle, order, span):
    """What of a rotation the image shows, per image: nothing when order is 0 (rows False);
    else the angle modulo 2 pi / order. When every drawn angle stays inside one period
    (span * order < 2 pi, as in the built-in shapes) that is the angle itself (one column);
    otherwise sin and cos of order * angle (two columns, continuous across the wrap).
    Returns (rows (N,) bool, target (rows, T))."""
    angle, order = np.asarray(angle, dtype=np.float64), np.asarray(order)
    rows = order > 0
    if not rows.any():
        return rows, np.zeros((0, 1))
    if (order[rows] * span < 2 * math.pi).all():
        return rows, angle[rows, None]
    turned = order[rows] * angle[rows]
    return rows, np.stack([np.sin(turned), np.cos(turned)], 1)


def factor_probes(train_codes, train_factors, test_codes, test_factors, core_dim, names,
                  discrete, classes, symmetry=None):
    """{factor: scores}: what each part of the latent predicts of each factor, by the measure
    its kind calls for, at full width and at equal capacity (disentanglement.part_probes).

    Keeps the old columns core_r2, detail_r2, all_r2 (ridge R^2 of the raw factor value, for
    every factor) and adds "measure" ("r2"; "balanced_accuracy" for a discrete factor of at
    most CATEGORICAL_MAX_CLASSES classes, its classes the labels; "symmetry_r2" for a
    rotation defined up to a shape's symmetry: the R^2 of symmetry_target, fitted and scored
    within each shape that shows rotation, averaged; the shapes that do not are left out),
    "chance" (1 / classes for a category, 0 for an R^2), "core", "detail", "all",
    "core_best_k", "detail_best_k", "k" and the chosen dims, "images_scored" and a "note"."""
    old = disentanglement.part_probe_table(train_codes, train_factors, test_codes,
                                           test_factors, core_dim, names)
    out = {}
    for k, name in enumerate(names):
        row = dict(old[name])
        fit, held = train_factors[:, k], test_factors[:, k]
        if symmetry and name == symmetry["factor"]:
            shape = names.index(symmetry["shape_factor"])
            orders = [np.array([symmetry["orders"].get(float(v), 0) for v in f[:, shape]])
                      for f in (train_factors, test_factors)]
            (fit_rows, fit_target), (held_rows, held_target) = (
                symmetry_target(f[:, k] * symmetry["span"], o, symmetry["span"])
                for f, o in zip((train_factors, test_factors), orders))
            scores = disentanglement.grouped_part_probes(
                train_codes[fit_rows], fit_target, test_codes[held_rows], held_target,
                core_dim, disentanglement.R2, orders[0][fit_rows], orders[1][held_rows])
            scores.pop("groups")
            hidden = [symmetry["names"][v] for v, o in symmetry["orders"].items() if o == 0]
            row.update(scores, measure="symmetry_r2", chance=0.0,
                       images_scored=int(held_rows.sum()),
                       note=f"{', '.join(hidden)} left out (rotation not visible); the angle "
                            "modulo each shape's symmetry, probed within each shape")
        elif discrete[k] and isinstance(classes[k], int) and classes[k] <= \
                CATEGORICAL_MAX_CLASSES:
            values = np.unique(np.concatenate([fit, held]))
            labels = [np.searchsorted(values, f) for f in (fit, held)]
            scores = disentanglement.part_probes(
                train_codes, labels[0], test_codes, labels[1], core_dim,
                disentanglement.BALANCED_ACCURACY)
            row.update(scores, measure="balanced_accuracy", chance=1.0 / classes[k],
                       images_scored=len(held), note="")
        else:
            scores = disentanglement.part_probes(train_codes, fit, test_codes, held, core_dim,
                                                 disentanglement.R2)
            row.update(scores, measure="r2", chance=0.0, images_scored=len(held), note="")
        out[name] = row
    return out


def factor_classes(factor_set, factors):
    """{factor name: its number of classes (the grid size where known, else the distinct values
    among `factors`), or "continuous"}: how MIG, DCI and SAP read each factor."""
    out = {}
    for k, name in enumerate(factor_set.names):
        if not factor_set.discrete[k]:
            out[name] = "continuous"
        else:
            out[name] = int(factor_set.sizes[k]) if factor_set.sizes \
                else int(len(np.unique(factors[:, k])))
    return out


def logistic_balanced_accuracy(train_x, train_y, test_x, test_y, l2=1e-3, max_iter=200):
    """(A,) held-out balanced accuracy of a class-balanced, L2-regularised logistic probe per
    binary target (columns of y, 0/1) from standardised codes; NaN where the training or the
    test set has a single class. Fitted for all targets at once by L-BFGS in float64."""
    train_x, test_x = (np.asarray(a, dtype=np.float64) for a in (train_x, test_x))
    train_y, test_y = (np.asarray(a, dtype=np.float64) for a in (train_y, test_y))
    mean, std = train_x.mean(0), train_x.std(0)
    std = np.where(std > 0, std, 1.0)
    x = torch.from_numpy((train_x - mean) / std)
    y = torch.from_numpy(train_y)
    positive = y.mean(0).clamp(1e-6, 1 - 1e-6)
    weight = torch.where(y > 0.5, 0.5 / positive, 0.5 / (1 - positive))  # balanced classes
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(
            x @ w + b, y, weight=weight, reduction="sum") / len(x) + l2 * w.pow(2).sum())
        loss.backward()
        return loss
    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = (torch.from_numpy((test_x - mean) / std) @ w + b > 0).numpy()
    truth = test_y > 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = (predicted & truth).sum(0) / truth.sum(0)
        tnr = (~predicted & ~truth).sum(0) / (~truth).sum(0)
    accuracy = (tpr + tnr) / 2
    single = (train_y.min(0) == train_y.max(0)) | (truth.all(0)) | (~truth).all(0)
    return np.where(single, np.nan, accuracy)


def _group_means(scores, kinds):
    out = {}
    for kind in ("structure", "appearance", "mixed"):
        values = [row for name, row in scores.items() if kinds.get(name) == kind]
        if values:
            out[kind] = {part: float(np.nanmean([v[part] for v in values]))
                         if any(np.isfinite(v[part]) for v in values) else math.nan
                         for part in values[0]}
    return out


@torch.no_grad()
def face_report(vae, cfg, device, amp=contextlib.nullcontext):
    """CelebA's test partition: R² of the five aligned landmarks (structure) and the balanced
    accuracy of a logistic probe for each of the 40 attributes, from core versus detail
    (docs/benchmarks.md), fitted on 80 % and scored on the rest, split by person when
    identity_CelebA.txt is there (face_probes), else by image. None when the data is not
    CelebA; a reason when the annotation files are missing."""
    if cfg.dataset not in ("celeba", "auto"):
        return None
    root = Path(cfg.data_dir)
    annotations = celeba.read_annotations(root)
    if isinstance(annotations, str):
        return {"skipped": annotations}
    attr_names, attributes, landmark_names, landmarks = annotations
    folder = root / celeba.CELEBA_FOLDER
    all_names = imagesets.list_images(folder, root)
    names = [n for n in all_names if celeba.celeba_partition(celeba.celeba_number(n)) == 2
             and Path(n).name in attributes and Path(n).name in landmarks]
    rng = np.random.default_rng(cfg.seed + FACE_SEED_OFFSET)
    names = [names[i] for i in sorted(rng.permutation(len(names))[:cfg.face_probe_images])]
    if len(names) < 10:
        return {"skipped": f"{len(names)} annotated test-partition images in {folder}; the "
                           "probes need at least 10"}
    dataset, kept = imagesets.folder_images(root, all_names, names, cfg)
    codes = np.concatenate([_encode(vae, x, device, amp)
                            for x in make_loader(dataset, cfg, train=False)])
    return face_probes(codes, [Path(n).name for n in kept], annotations,
                       celeba.read_identities(root), vae.core_dim, rng)


FIT_SHARE = 0.8            # the share of the face probes' images they are fitted on


def split_by_group(groups, fit_share, rng):
    """(N,) bool, True for the fit side: whole groups (people) drawn in random order onto the
    fit side until it holds fit_share of the images, so no group is on both sides."""
    groups = np.asarray(groups)
    unique = rng.permutation(np.unique(groups))
    fit_groups, taken, wanted = [], 0, fit_share * len(groups)
    counts = {g: int(c) for g, c in zip(*np.unique(groups, return_counts=True))}
    for group in unique:
        if taken >= wanted:
            break
        fit_groups.append(group)
        taken += counts[group.item() if hasattr(group, "item") else group]
    return np.isin(groups, fit_groups)


def face_probes(codes, names, annotations, identities, core_dim, rng):
    """The face probes on encoded test-partition images: codes (N, D), names their file
    names, annotations as celeba.read_annotations gives them, identities {name: person} or a
    reason there are none. With identities the fit and held-out sides are split by person
    (split_by_group: nobody on both sides); without, by image, and "split" says so."""
    attr_names, attributes, landmark_names, landmarks = annotations
    order = rng.permutation(len(names))
    codes = np.asarray(codes)[order].astype(np.float64)
    kept = [names[i] for i in order]
    if isinstance(identities, dict) and all(n in identities for n in kept):
        people = np.array([identities[n] for n in kept])
        fit = split_by_group(people, FIT_SHARE, rng)
        split = {"by": "identity", "fit_people": int(len(np.unique(people[fit]))),
                 "held_out_people": int(len(np.unique(people[~fit]))),
                 "shared_people": int(len(np.intersect1d(people[fit], people[~fit]))),
                 "note": f"split by identity ({celeba.IDENTITIES}): nobody is on both sides"}
    else:
        why = identities if isinstance(identities, str) else \
            f"{celeba.IDENTITIES} has no row for some images"
        fit = np.arange(len(kept)) < int(FIT_SHARE * len(kept))
        split = {"by": "image", "note": f"split by image ({why}): the same people (about 20 "
                                        "images each) fall on both sides"}
    # The fit rows first, so every probe below takes [:fit_n] and [fit_n:].
    rows = np.concatenate([np.flatnonzero(fit), np.flatnonzero(~fit)])
    codes, kept, fit_n = codes[rows], [kept[i] for i in rows], int(fit.sum())
    points = np.array([landmarks[n] for n in kept], dtype=np.float64)
    labels = (np.array([attributes[n] for n in kept]) > 0).astype(np.float64)
    coordinate = disentanglement.part_probe_table(
        codes[:fit_n], points[:fit_n], codes[fit_n:], points[fit_n:], core_dim,
        landmark_names)
    landmark_r2 = {}
    for name in benchmarks.CELEBA_LANDMARKS:
        rows = [coordinate[f"{name}_{axis}"] for axis in ("x", "y")]
        landmark_r2[name] = {part: float(np.mean([r[f"{part}_r2"] for r in rows]))
                             for part in ("core", "detail", "all")}
    parts = {"core": slice(0, core_dim), "detail": slice(core_dim, None),
             "all": slice(None)}
    accuracy = {part: logistic_balanced_accuracy(codes[:fit_n, dims], labels[:fit_n],
                                                 codes[fit_n:, dims], labels[fit_n:])
                for part, dims in parts.items()}
    attribute_scores = {name: {part: float(accuracy[part][k]) for part in parts}
                        for k, name in enumerate(attr_names)}
    kinds = {name: benchmarks.CELEBA_ATTRIBUTE_KINDS.get(name, "mixed") for name in attr_names}
    return {"images": len(kept), "fit_images": fit_n, "split": split,
            "landmarks_r2": landmark_r2,
            "landmark_coordinates_r2": coordinate, "attributes": attribute_scores,
            "attribute_kinds": kinds, "attribute_groups": _group_means(attribute_scores, kinds)}


def factor_heatmap(out, factors):
    rows = list(factors["probes"])
    k = factors.get("probe_k", "k")
    labels = [f"{r} ({MEASURE_LABELS.get(factors['probes'][r].get('measure', 'r2'), '')})"
              for r in rows]
    return plots.save_part_heatmap(
        Path(out) / "factor_probes.png", f"{factors['dataset']}: what core and detail predict",
        [{"title": f"held-out score ({factors['images']} images, 80 % fit): R², or balanced "
                   "accuracy for a category",
          "rows": labels, "kinds": [factors["kinds"][r] for r in rows],
          "columns": ["core", "detail", f"detail, best {k}", "all"],
          "values": [[factors["probes"][r].get(p, math.nan)
                      for p in ("core", "detail", "detail_best_k", "all")]
                     for r in rows], "vmin": 0.0, "vmax": 1.0, "label": "score"}])


def face_heatmap(out, faces):
    parts = ("core", "detail", "all")
    landmarks = list(faces["landmarks_r2"])
    attributes = sorted(faces["attributes"], key=lambda a: (
        ("structure", "appearance", "mixed").index(faces["attribute_kinds"][a]), a))
    return plots.save_part_heatmap(
        Path(out) / "face_probes.png", "CelebA test partition: what core and detail predict",
        [{"title": "aligned landmarks: held-out R² of a ridge probe (mean of x and y)",
          "rows": landmarks, "kinds": ["structure"] * len(landmarks), "columns": list(parts),
          "values": [[faces["landmarks_r2"][n][p] for p in parts] for n in landmarks],
          "vmin": 0.0, "vmax": 1.0, "label": "R²"},
         {"title": "attributes: held-out balanced accuracy of a logistic probe (0.5 = chance)",
          "rows": attributes, "kinds": [faces["attribute_kinds"][a] for a in attributes],
          "columns": list(parts),
          "values": [[faces["attributes"][a][p] for p in parts] for a in attributes],
          "vmin": 0.5, "vmax": 1.0, "label": "balanced accuracy"}])


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
        rows.append(vae.decode_latent(z).cpu())
    return torch.stack(rows)


@torch.no_grad()
def draw_pictures(vae, dataset, history, out, device, target_rollback_rate, effects=None):
    """Every picture of SPEC §8, the prior samples, and the training curves."""
    out = Path(out)
    x = _first_images(dataset, 2 * PICTURE_IMAGES).to(device)
    mu = vae.posterior(x).mu
    core = vae.core_dim
    z_core_only = torch.cat([mu[:, :core], torch.zeros_like(mu[:, core:])], 1)
    recon, recon_core = vae.decode_latent(mu), vae.decode_latent(z_core_only)
    half = len(x) // 2
    cross = vae.decode_latent(torch.cat([mu[:half, :core], mu[half:2 * half, core:]], 1))
    # The most variable dims of each part (over this sample) show the most in a traversal.
    spread = mu.var(0) if len(mu) > 1 else torch.ones(mu.shape[1], device=mu.device)
    core_dims = spread[:core].argsort(descending=True)[:TRAVERSAL_DIMS].tolist()
    detail_dims = (spread[core:].argsort(descending=True)[:TRAVERSAL_DIMS] + core).tolist()
    values = TRAVERSAL_VALUES.tolist()
    prior = vae.decode_latent(torch.randn(16, mu.shape[1], device=device,
                                          generator=torch.Generator(device).manual_seed(0)))
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


def _skipped_or(result, text):
    return f"n/a ({result['skipped']})" if "skipped" in result else text


def factor_vae_text(result):
    if "skipped" in result:
        return f"FactorVAE score n/a ({result['skipped']})"
    counts = result.get("counts", {})
    return (f"FactorVAE score {_number(result['eval_accuracy'], 3)} (train "
            f"{_number(result['train_accuracy'], 3)}; {result['num_active_dims']} active dims; "
            f"{counts.get('train_votes')} / {counts.get('eval_votes')} votes of "
            f"{counts.get('batch')} images, variances from {counts.get('variance_images')} "
            "images: disentanglement_lib uses 10000 / 5000 votes of 64, variances from 10000)")


def drawn_text(drawn):
    """One line on what the decodes draw (drawn_shapes_report)."""
    return (f"kind drawn right (balanced accuracy, chance {_number(drawn['chance'], 3)}): "
            f"reconstruction {_number(drawn['recon_kind'], 3)}, swap (x1's kind) "
            f"{_number(drawn['swap_kind'], 3)}; swap MSE against the true swap image "
            f"{_number(drawn['swap_mse'])} (reconstruction MSE {_number(drawn['recon_mse'])})")


def drawn_lines(drawn):
    """report.md's section on what the decodes of the built-in shapes draw."""
    if not drawn:
        return []
    return ["## What the pictures draw (built-in shapes)", "",
            f"Each decode of {drawn['images']} held-out images against renderings of the "
            "factors it should show. The kind it draws is the one whose rendering (its other "
            "factors unchanged) is nearest in MSE; the true swap image is x1's shape at x1's "
            "place, size and rotation in x2's colours and background, rendered:", "",
            f"- {drawn_text(drawn)}.", ""]


def factor_lines(factors, withheld=None):
    """report.md's section on a dataset with known factors; withheld: why the per-factor
    split is n/a (split_withheld), if it is."""
    if not factors:
        return []
    kinds = factors.get("kinds") or {n: ("structure" if n in factors["structure_factors"]
                                         else "appearance") for n in factors["probes"]}
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
    notes = []
    for name, row in factors["probes"].items():
        measure = row.get("measure", "r2")
        if row.get("note"):
            notes.append(f"{name}: {row['note']}")
        lines.append(f"| {name} | {kinds[name]} | {MEASURE_LABELS.get(measure, measure)} | "
                     f"{_number(row.get('chance'), 3)} | {_number(row.get('core'), 3)} | "
                     f"{_number(row.get('detail'), 3)} | "
                     f"{_number(row.get('detail_best_k'), 3)} | {_number(row.get('all'), 3)} | "
                     f"{classes.get(name, '?')} | {_number(row['core_r2'], 3)} / "
                     f"{_number(row['detail_r2'], 3)} / {_number(row['all_r2'], 3)} |")
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    dci = factors["dci"]
    dci_text = _skipped_or(dci, f"disentanglement {_number(dci.get('disentanglement'), 3)}, "
                                f"completeness {_number(dci.get('completeness'), 3)}, "
                                f"informativeness {_number(dci.get('informativeness'), 3)} "
                                f"({dci.get('trees')} trees a factor; disentanglement_lib: 100)")
    sap = "n/a" if factors.get("sap_skipped") else _number(factors.get("sap"), 3)
    lines += ["", f"MIG {_number(factors['mig'], 3)}; DCI {dci_text}; SAP {sap}; "
              f"{factor_vae_text(factors.get('factor_vae') or {'skipped': 'not computed'})}.",
              "", "MIG, DCI and SAP use the classes of a discrete factor (column “classes”) "
              "and "
              "cut a continuous one into 20 equal-width bins, as disentanglement_lib does for "
              "a code dim.", "", "![factor_probes](factor_probes.png)", ""]
    return lines


def face_lines(faces):
    """report.md's section on CelebA's landmarks and attributes."""
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
    lines += [f"| {name} | " + " | ".join(_number(row[p], 3) for p in parts) + " |"
              for name, row in faces["landmarks_r2"].items()]
    lines += ["", "Attributes, held-out balanced accuracy of a logistic probe (0.5 = chance), "
              "mean per group:", "", "| group | from core | from detail | from all |",
              "|---|---|---|---|"]
    lines += [f"| {group} | " + " | ".join(_number(row[p], 3) for p in parts) + " |"
              for group, row in faces["attribute_groups"].items()]
    lines += ["", "| attribute | kind | from core | from detail | from all |",
              "|---|---|---|---|---|"]
    lines += [f"| {name} | {faces['attribute_kinds'][name]} | "
              + " | ".join(_number(row[p], 3) for p in parts) + " |"
              for name, row in faces["attributes"].items()]
    return lines + ["", "![face_probes](face_probes.png)", ""]


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
    lines += ["## Held-out reconstruction", "",
              "| images | MSE | PSNR (dB) | SSIM | pixel variance explained |",
              "|---|---|---|---|---|",
              f"| {rec['images']} | {_number(rec['mse'])} | {_number(rec['psnr'])} | "
              f"{_number(rec['ssim'])} | {_number(rec.get('variance_explained'), 3)} |", "",
              "Pixel variance explained: 1 − MSE / the held-out images' pixel variance around "
              "their mean image (0 = no better than drawing the mean image). Below "
              f"{MIN_VARIANCE_EXPLAINED:g} every split measure below is withheld (n/a).", ""]
    perceptual = results["perceptual"]
    lines += [perceptual_line(perceptual),
              ""]
    swap = behaviour["swap"]
    withheld = results.get("split_withheld")
    lines += ["## Does core carry structure and detail appearance?", "",
              *([f"**Split measures {withheld}.**", ""] if withheld else []),
              "Traversal specificity (share of a part's traversal effect that is of its "
              "kind; 1 = pure, 0.5 = mixed; each effect in units of how much the "
              "reconstructions of two different images differ). Each dim counts by its "
              "effect (the part's summed structure, or appearance, effect over its summed "
              "effect), and a part is n/a when its dims together change the image by less "
              f"than {behaviour.get('min_part_effect', disentanglement.MIN_PART_EFFECT):g} "
              "of that difference (or the reconstructions do not differ at all):", "",
              f"- core → structure: **{_number(behaviour['core_specificity'], 3)}** "
              f"(summed effect {_number(behaviour.get('core_effect'), 3)})",
              f"- detail → appearance: **{_number(behaviour['detail_specificity'], 3)}** "
              f"(summed effect {_number(behaviour.get('detail_effect'), 3)})", "",
              "Swap test, decode(core of x1, detail of x2) = sw, scored against the two "
              "reconstructions r1, r2: structure transfer = d(sw, r2) / (d(sw, r1) + "
              "d(sw, r2)) with d the edge MSE, appearance transfer the same with the "
              "mean-colour MSE and the roles of r1 and r2 exchanged; both in [0, 1], 1 = the "
              "part came across, 0 = the other image's did, 0.5 = split nothing, n/a = the "
              "decoder draws one image for both. "
              f"**Split score = min of the two: {_number(swap.get('split_score'), 3)}** "
              f"(structure {_number(swap.get('structure_transfer_bounded'), 3)}, appearance "
              f"{_number(swap.get('appearance_transfer_bounded'), 3)}).", "",
              "The same swap against the images: error of sw against x1 (structure) and x2 "
              "(appearance). Floor: the reconstruction of the "
              "image the part comes from; ceiling: the reconstruction of the other one; "
              "floor–ceiling transfer = (ceiling − error) / (ceiling − floor), unbounded and "
              "noisy when the span is small against the error, 1 = as good as a "
              "reconstruction, 0 = no better than the wrong image, n/a = the decoder draws "
              "the same image for both (a constant image beats an arbitrary one, so chance alone "
              "proves nothing); bounded transfer as above:", "",
              "| | error | floor | ceiling | mean image | arbitrary image | floor–ceiling "
              "transfer | bounded transfer (vs reconstructions) |",
              "|---|---|---|---|---|---|---|---|",
              *(f"| {label} | {_number(swap[key])} | {_number(swap[part + '_floor'])} | "
                f"{_number(swap[part + '_ceiling'])} | {_number(swap[part + '_mean_image'])} | "
                f"{_number(swap[part + '_chance'])} | {_number(swap[part + '_transfer'], 3)} | "
                f"{_number(swap.get(part + '_transfer_bounded'), 3)} |"
                for label, part, key in (
                    ("structure vs x1 (edge MSE)", "structure", "structure_error_vs_x1"),
                    ("appearance vs x2 (mean-colour MSE)", "appearance",
                     "appearance_error_vs_x2"))), ""]
    lines += drawn_lines(results.get("drawn_shapes"))
    lines += factor_lines(results.get("factors"), withheld) + face_lines(results.get("faces"))
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
        drawn = drawn_shapes_report(vae, heldout, device, amp)
        if drawn is not None:
            results["drawn_shapes"] = drawn
        factors = factor_report(vae, cfg, device, amp)
        if factors is not None:
            results["factors"] = factors
        faces = face_report(vae, cfg, device, amp)
        if faces is not None:
            results["faces"] = faces
        reason = split_withheld(results["reconstruction"])
        if reason:
            withhold_split_measures(results, reason)
        pictures = draw_pictures(vae, heldout, history, out, device, cfg.target_rollback_rate,
                                 results["behaviour"]["effects"])
    finally:
        vae.train()
    # The heat maps are linked from their report sections, not listed among the pictures.
    if factors is not None:  # withheld cells read n/a
        factor_heatmap(out, factors)
    if faces is not None and "skipped" not in faces:
        face_heatmap(out, faces)
    (Path(out) / "final_metrics.json").write_text(json.dumps(results, indent=2))
    results["report"] = write_report(out, cfg, history, results, pictures)
    results["pictures"] = pictures
    return results


def summary_lines(results):
    rec, behaviour = results["reconstruction"], results["behaviour"]
    swap = behaviour["swap"]
    lines = [f"held-out ({rec['images']} images): MSE {rec['mse']:.5f}  PSNR {rec['psnr']:.2f} "
             f"dB  SSIM {rec['ssim']:.4f}  pixel variance explained "
             f"{_number(rec.get('variance_explained'), 3)}",
             *([f"split measures {results['split_withheld']}"]
               if results.get("split_withheld") else []),
             f"specificity: core -> structure {_number(behaviour['core_specificity'], 3)}, "
             f"detail -> appearance {_number(behaviour['detail_specificity'], 3)}; swap split "
             f"score {_number(swap.get('split_score'), 3)} (bounded transfer: structure "
             f"{_number(swap.get('structure_transfer_bounded'), 3)}, appearance "
             f"{_number(swap.get('appearance_transfer_bounded'), 3)})",
             f"swap vs images: "
             f"structure {swap['structure_error_vs_x1']:.4g} (chance "
             f"{swap['structure_chance']:.4g}, floor-ceiling transfer "
             f"{_number(swap['structure_transfer'], 3)}), appearance "
             f"{swap['appearance_error_vs_x2']:.4g} (chance "
             f"{swap['appearance_chance']:.4g}, floor-ceiling transfer "
             f"{_number(swap['appearance_transfer'], 3)})"]
    perceptual = results["perceptual"]
    lines.append(perceptual_line(perceptual))
    if results.get("drawn_shapes"):
        lines.append(drawn_text(results["drawn_shapes"]))
    factors = results.get("factors")
    if factors:
        probes = factors["probes"]

        def mean_score(part, names):  # the R²-scored factors (categories are listed apart)
            values = [probes[n][part] for n in names
                      if probes[n].get("measure", "r2") != "balanced_accuracy"]
            return float(np.mean(values)) if values else math.nan
        mean = {"core": mean_score("core", factors["structure_factors"]),
                "detail": mean_score("detail", factors["appearance_factors"]),
                "detail_k": mean_score("detail_best_k", factors["structure_factors"])}
        categories = [f"{n} {_number(r['core'], 3)} / {_number(r['detail'], 3)} / "
                      f"{_number(r['detail_best_k'], 3)} (chance {_number(r['chance'], 3)})"
                      for n, r in probes.items() if r.get("measure") == "balanced_accuracy"]
        lines.append(f"factors ({factors['dataset']}): mean R² core -> structure "
                     f"{_number(mean['core'], 3)} (detail best {factors.get('probe_k')} -> "
                     f"structure {_number(mean['detail_k'], 3)}), detail -> appearance "
                     f"{_number(mean['detail'], 3)}"
                     + (f"; balanced accuracy core / detail / detail best "
                        f"{factors.get('probe_k')}: " + ", ".join(categories)
                        if categories else "")
                     + f"; MIG {_number(factors['mig'], 3)}; "
                     f"{factor_vae_text(factors['factor_vae']).split(' (')[0]}")
    faces = results.get("faces")
    if faces:
        if "skipped" in faces:
            lines.append(f"faces: not measured ({faces['skipped']})")
        else:
            groups = faces["attribute_groups"]
            lines.append(f"faces (split by {faces.get('split', {}).get('by', 'image')}): "
                         "landmark R² core " + _number(np.mean(
                [r["core"] for r in faces["landmarks_r2"].values()]), 3) + " / detail "
                + _number(np.mean([r["detail"] for r in faces["landmarks_r2"].values()]), 3)
                + "; attribute balanced accuracy core / detail: "
                + ", ".join(f"{g} {_number(r['core'], 3)} / {_number(r['detail'], 3)}"
                            for g, r in groups.items()))
    lines.append(f"report: {results['report']}; pictures: "
                 + ", ".join(p.name for p in results["pictures"]))
    return lines


def load_checkpoint(path, device):
    """Config, VAE and the whole saved state from a checkpoint written by train.py."""
    state = read_checkpoint(path)
    cfg = configs.from_dict(state["config"])
    vae = VAE(cfg).to(device)
    vae.load_state_dict(state["vae"])
    return cfg, vae, state


def with_run_settings(cfg, words):
    """cfg with the run settings given as words (e.g. --probe_images 500 --dci_trees 20): what
    is measured may change at evaluation, the experiment (the checkpoint's settings) may not."""
    given = configs.parse_args(words)  # checks names and values
    names = [w[2:].partition("=")[0].replace("-", "_") for w in words if w.startswith("--")]
    fixed = [n for n in names if n not in configs.RUN_ONLY_FIELDS]
    if fixed:
        raise UserError(f"evaluate.py: --{fixed[0]} is a setting of the experiment, saved in the "
                        f"checkpoint; only these may change here: "
                        f"{', '.join(configs.RUN_ONLY_FIELDS)}")
    for name in names:
        setattr(cfg, name, getattr(given, name))
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--output_dir", help="where to write (default: the checkpoint's folder)")
    parser.add_argument("--device", default="auto")
    args, settings = parser.parse_known_args(argv)
    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
        cfg, vae, state = load_checkpoint(args.checkpoint, device)
        cfg = with_run_settings(cfg, settings)
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
