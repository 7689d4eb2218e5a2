"""The pictures an evaluation draws into the output folder (docs/outputs.md, "The output
folder"): reconstructions, core and detail traversals, the cross-reconstruction, prior
samples, each dim's effect, the training curves, and the heat maps of the factor and face
probes. plots.py draws each figure; this module chooses what goes in it.
"""
import math
from pathlib import Path

import torch

import plots
from configs import GROUPS
from data import first_images
from probes import MEASURE_LABELS

TRAVERSAL_DIMS = 15
TRAVERSAL_VALUES = torch.linspace(-3, 3, 11)
PICTURE_IMAGES = 8
PRIOR_SAMPLES = 16


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
    """The model's pictures on the first held-out images (reconstructions, traversals,
    cross-reconstruction), prior samples, each dim's effect (`effects`, when given) and the
    training curves (when there is a history); returns their paths."""
    out = Path(out)
    x = first_images(dataset, 2 * PICTURE_IMAGES).to(device)
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
    prior = vae.decode_latent(torch.randn(PRIOR_SAMPLES, mu.shape[1], device=device,
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


def factor_heatmap(out, factors):
    """factor_probes.png: each factor's held-out score from core, detail, detail's best k
    dims and all (probes.factor_report)."""
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
    """face_probes.png: the landmarks' R² and the attributes' balanced accuracy from core,
    detail and all (probes.face_report)."""
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
