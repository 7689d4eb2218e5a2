"""Does core carry structure and detail appearance? The measures of the split on held-out
images, and the rule that withholds them from a model that does not reconstruct.

    behaviour_report     traversal specificity (what moving each dim changes) and swap_test
    swap_test            decode(core of x1, detail of x2) against its controls: the transfers
                         and the split score
    drawn_shapes_report  on the built-in shapes: the kind the reconstruction and the swap draw,
                         scored against renderings of the true factors
    withhold_split_measures  the split measures set to n/a when the reconstructions explain
                         under MIN_VARIANCE_EXPLAINED of the held-out pixel variance
                         (docs/outputs.md, "Split measures that refuse")

Structure is compared through Sobel edge maps, appearance through mean colours and colour
histograms (image_differences): the raw statistics the training goals use.
"""
import contextlib
import math

import numpy as np
import torch

import disentanglement
import imagesets
from data import first_images
from latents import ENCODE_BATCH, decode_latents, encode_means
from losses import color_histogram, edges, mean_color

BEHAVIOUR_IMAGES = 64      # held-out images for the traversal and swap tests
EFFECT_STEP = 2.0          # a dim is moved to mu - 2 and mu + 2 to measure what it controls
SWAP_SPAN_EPSILON = 1e-9   # below this the floor and ceiling of the swap test are the same
# The bounded swap transfer is n/a when the swap is this close to both reconstructions
# (summed distances below this fraction of an arbitrary pair of images' difference): the
# decoder draws one image for both, so there is nothing to tell apart.
SWAP_NULL_FRACTION = 1e-6
# Below this the reconstructions of different images do not differ: traversals are undefined.
RECONSTRUCTION_SPREAD_EPSILON = 1e-9
DRAWN_IMAGES = 512         # held-out built-in shapes whose decodes are scored against renderings
# A factor whose change moves the renderings by less than this (summed squared difference per
# image) changes no image: its placement is undefined (a circle's rotation).
PLACEMENT_NULL = 1e-6
# The split measures (specificity, swap transfers, split score, the per-factor split) are
# withheld below this share of the held-out pixel variance explained by the reconstructions:
# a swap between two reconstructions that draw nothing (a black frame, the mean image)
# "transfers" structure and appearance by tiny differences, and would read as a split.
MIN_VARIANCE_EXPLAINED = 0.5


# ---------------------------------------------------------------------- comparing images
def image_differences(a, b):
    """Per-image differences in structure (MSE of Sobel edge maps) and appearance (MSE of mean
    colours, MSE of colour histograms): the raw statistics the goals use."""
    def per_image(u, v):
        return (u - v).pow(2).flatten(1).mean(1)
    return {"structure": per_image(edges(a), edges(b)),
            "color": per_image(mean_color(a), mean_color(b)),
            "histogram": per_image(color_histogram(a), color_histogram(b))}


def chance_differences(x):
    """What two arbitrary images of x differ by, on average: each image against the next."""
    return {k: v.mean().item() for k, v in image_differences(x, x.roll(1, 0)).items()}


# ----------------------------------------------------------------- traversals and the swap
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
    x = first_images(dataset, BEHAVIOUR_IMAGES).to(device)
    chance = chance_differences(x)
    mu = vae.posterior(x).mu
    spread = chance_differences(vae.decode_latent(mu))
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


# ---------------------------------------------------------- what the built-in shapes draw
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
      swap_factors   {factor: where the swap lies between the true swap image with that one
                     factor from the wrong image (0) and the true swap image (1)}, see
                     factor_placement: about 0.5 when the decoder draws the factor the same
                     whatever the images
      recon_factors  the same for the reconstruction of x1 (x1 with the factor from x2 as 0):
                     which factors the model draws at all
      swap_structure, swap_appearance  the mean of swap_factors over the part's factors
      drawn_split    min of the two: the split as the pictures show it, factor by factor. The
                     swap test's split score compares whole-image edges and mean colours, so a
                     decoder that transfers the background but draws every object one colour
                     passes it; here the object's hue counts as much as the background's
    The first DRAWN_IMAGES held-out images; x1 the first half, x2 the second."""
    if not isinstance(dataset, imagesets.SyntheticShapes):
        return None
    shapes = type(dataset)
    n = min(DRAWN_IMAGES, len(dataset)) // 2 * 2
    half, size = n // 2, dataset.image_size
    factors = np.stack([dataset.factors(i) for i in range(n)])
    images = shapes.render_all(factors, size)
    mu = torch.cat([torch.from_numpy(encode_means(vae, batch, device, amp))
                    for batch in images.split(ENCODE_BATCH)])
    core = vae.core_dim
    cross = torch.cat([mu[:half, :core], mu[half:, core:]], 1)
    recon = decode_latents(vae, mu, device, amp)
    swapped = decode_latents(vae, cross, device, amp)
    kinds = shapes.kind_index(factors[:, 0])
    swap_factors = np.concatenate([factors[:half, :len(shapes.STRUCTURE_FACTORS)],
                                   factors[half:, len(shapes.STRUCTURE_FACTORS):]], 1)
    recon_distances = _kind_distances(shapes, recon, factors, size)
    swap_distances = _kind_distances(shapes, swapped, swap_factors, size)
    rows = np.arange(half)
    placements = _factor_placements(shapes, factors, swap_factors, images[:half], recon[:half],
                                    swapped, size)
    return {"images": n, "chance": 1 / len(shapes.SHAPES), **placements,
            "recon_kind": disentanglement.balanced_accuracy(kinds, recon_distances.argmin(1)),
            "swap_kind": disentanglement.balanced_accuracy(kinds[:half],
                                                           swap_distances.argmin(1)),
            "swap_mse": float(swap_distances[rows, kinds[:half]].mean()),
            "recon_mse": float(recon_distances[rows, kinds[:half]].mean())}


def factor_placement(drawn, right, wrong):
    """Where the decodes `drawn` lie on the way from the renderings `wrong` to `right`, which
    differ in one factor, pooled over images: sum <drawn - wrong, right - wrong> / sum
    |right - wrong|^2. 1 when they draw `right`, 0 when they draw `wrong`; a decoder that draws
    that factor one way whatever the image lands, on average over independent images, halfway
    (0.5). Images in which the factor changes nothing weigh nothing; NaN when it changes no
    image (a circle's rotation)."""
    step = (right - wrong).flatten(1)
    size = step.pow(2).sum().item()
    if size <= PLACEMENT_NULL * len(step):
        return math.nan
    return ((drawn - wrong).flatten(1) * step).sum().item() / size


def _factor_placements(shapes, factors, swap_factors, x1_images, recon, swapped, image_size):
    """drawn_shapes_report's per-factor placements of the swap and of the reconstruction of
    x1 (factors: x1 then x2, each half; swap_factors: x1's structure, x2's appearance;
    x1_images: x1 rendered)."""
    half, structure = len(swap_factors), len(shapes.STRUCTURE_FACTORS)
    x1, x2 = factors[:half], factors[half:2 * half]
    # Every factor of the swap from the image it should not come from.
    wrong_swap = np.concatenate([x2[:, :structure], x1[:, structure:]], 1)
    truth = {"swap": shapes.render_all(swap_factors, image_size),
             "recon": x1_images}
    result = {"swap_factors": {}, "recon_factors": {}}
    for j, name in enumerate(shapes.FACTORS):
        for what, drawn, right, other in (("swap", swapped, swap_factors, wrong_swap),
                                          ("recon", recon, x1, x2)):
            wrong = right.copy()
            wrong[:, j] = other[:, j]
            result[f"{what}_factors"][name] = factor_placement(
                drawn, truth[what], shapes.render_all(wrong, image_size))
    for part, names in (("structure", shapes.STRUCTURE_FACTORS),
                        ("appearance", shapes.APPEARANCE_FACTORS)):
        values = [result["swap_factors"][f] for f in names
                  if math.isfinite(result["swap_factors"][f])]
        result[f"swap_{part}"] = float(np.mean(values)) if values else math.nan
    result["drawn_split"] = split_score(result["swap_structure"], result["swap_appearance"])
    return result


# ----------------------------------------------------------------- withheld when unmeasurable
# What withhold_split_measures withholds: behaviour's specificities and the swap's transfers
# and split score, each factor probe's core and detail scores (the per-factor split), and on
# the built-in shapes the swap's placements of the factors and the drawn split.
WITHHELD_SWAP = ("structure_transfer", "appearance_transfer", "structure_transfer_bounded",
                 "appearance_transfer_bounded", "split_score")
WITHHELD_PROBE = ("core", "detail", "core_best_k", "detail_best_k", "core_r2", "detail_r2")
WITHHELD_DRAWN = ("swap_structure", "swap_appearance", "drawn_split")


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


def withhold_split_measures(results):
    """When split_withheld gives a reason (results["reconstruction"] explains too little),
    replace every split measure in results by NaN (n/a in the report), in place, and record
    the reason as results["split_withheld"]; a model that reconstructs keeps them all."""
    reason = split_withheld(results["reconstruction"])
    if reason is None:
        return
    results["split_withheld"] = reason
    behaviour = results["behaviour"]
    behaviour["core_specificity"] = behaviour["detail_specificity"] = math.nan
    behaviour["structure_share"] = [math.nan] * len(behaviour.get("structure_share", []))
    behaviour["swap"].update({k: math.nan for k in WITHHELD_SWAP})
    for row in (results.get("factors") or {}).get("probes", {}).values():
        row.update({k: math.nan for k in WITHHELD_PROBE if k in row})
    drawn = results.get("drawn_shapes")
    if drawn and "swap_factors" in drawn:
        drawn.update({k: math.nan for k in WITHHELD_DRAWN})
        drawn["swap_factors"] = {name: math.nan for name in drawn["swap_factors"]}
