"""The LBO objective of BOM VAE v15.

Raw measures are computed once per forward pass by `forward_measures`; the same
numbers feed calibration, goal scoring and the logs. Goals turn a raw value into a *log*-score
(docs/design.md): the barrier is -log(min_g S_g) = max_g -(mean log-score of g), evaluated without
ever forming a score that could underflow, so which steps are rejected does not depend on the
floating-point precision in use.
"""
import contextlib
import dataclasses
import functools
import math
import statistics

import torch
import torch.nn.functional as F

from configs import ACTIVE_VARIANCE, BOX_STEEPNESS, BOX_WALL_SCORE, GROUPS, LOG_SCORE_FLOOR
from models import frozen_batchnorm_stats

# ---------------------------------------------------------------------------------------------
# Image statistics
# ---------------------------------------------------------------------------------------------
HIST_BINS = 16
HIST_BANDWIDTH = 0.01  # Gaussian bin weights exp(-d^2 / 0.01)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
PIXEL_SSIM_WEIGHT = 0.1  # the pixel goal: squared error + this x (1 - SSIM)
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
# RGB to YIQ, and back: the hue rotation's frame. Inverted once, here, on the CPU.
_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]])
_FROM_YIQ = torch.linalg.inv(_TO_YIQ)


@functools.lru_cache(maxsize=None)
def on_device(constant, device, dtype):
    """A constant tensor, copied to a device once: on a GPU every copy from the host waits
    for the device, and the hot path would make one per call."""
    return constant.to(device, dtype)


def _mse(a, b):
    return F.mse_loss(a, b)


_SOBEL = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1)


def edges(images):
    """Sobel gradient magnitude of the channel-mean image, (B, 1, H, W)."""
    gray = F.pad(images.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    grad = F.conv2d(gray, on_device(_SOBEL, images.device, images.dtype))
    # The tiny constant keeps the gradient of sqrt finite on perfectly flat regions.
    return torch.sqrt(grad.pow(2).sum(1, keepdim=True) + 1e-12)


def mean_color(images):
    return images.mean((2, 3))


def color_histogram(images):
    """Soft 16-bin histogram per channel on [0, 1], normalised to sum 1: (B, 3, 16)."""
    centres = (torch.arange(HIST_BINS, device=images.device, dtype=images.dtype) + 0.5) / HIST_BINS
    values = images.flatten(2).unsqueeze(-1)
    weights = torch.exp(-(values - centres) ** 2 / HIST_BANDWIDTH).sum(2)
    return weights / weights.sum(-1, keepdim=True)


def _gaussian_window(device, dtype):
    coords = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-coords ** 2 / (2 * SSIM_SIGMA ** 2))
    return g / g.sum()


def ssim_per_image(a, b):
    """SSIM (11x11 Gaussian window, sigma 1.5, data range 1) averaged over valid windows and
    channels, one value per image; matches skimage's gaussian_weights=True definition."""
    g = _gaussian_window(a.device, a.dtype)
    channels = a.shape[1]
    wx = g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)

    def blur(t):  # separable 'valid' Gaussian filter, per channel
        return F.conv2d(F.conv2d(t, wx, groups=channels), wy, groups=channels)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------
# Per-step randomness: drawn once, shared by the step and its look-ahead
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class StepDraws:
    eps: torch.Tensor            # reparameterisation noise, (B, latent)
    perm: torch.Tensor           # swap permutation of the batch
    core_noise: torch.Tensor     # perturbation of z_core for the colour-leak goal
    detail_noise: torch.Tensor   # perturbation of z_detail for the edge-leak goal
    augmented: torch.Tensor      # what the consistency goals encode (consistency_inputs)


def _hue_rotation(angles):
    """Per-image 3x3 RGB matrices rotating hue by `angles` (radians) in YIQ space."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    rot = torch.zeros(len(angles), 3, 3, device=angles.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    return on_device(_FROM_YIQ, angles.device, rot.dtype) @ rot \
        @ on_device(_TO_YIQ, angles.device, rot.dtype)


def augment(x, flip=True):
    """Random horizontal flip (unless flip is False) and colour jitter (brightness, contrast
    and saturation by 1 +- 0.2, hue by +- 0.05 of the colour wheel), drawn per image.

    Per image, not per batch: one flip for the whole batch made core_consistency jump for
    every image at once and pushed it past the barrier (5 of 8 batches rejected)."""
    b = x.shape[0]

    def factor():  # 1 +- 0.2, per image
        return (1 + 0.2 * (2 * torch.rand(b, 1, 1, 1, device=x.device) - 1))

    out = random_flips(x, horizontal=True, vertical=False) if flip else x
    out = (out * factor()).clamp(0, 1)                                      # brightness
    gray_mean = out.mean((1, 2, 3), keepdim=True)
    out = ((out - gray_mean) * factor() + gray_mean).clamp(0, 1)            # contrast
    gray = out.mean(1, keepdim=True)
    out = ((out - gray) * factor() + gray).clamp(0, 1)                      # saturation
    angles = 2 * math.pi * 0.05 * (2 * torch.rand(b, device=x.device) - 1)  # hue
    out = torch.einsum("bij,bjhw->bihw", _hue_rotation(angles).to(out), out)
    return out.clamp(0, 1)


def random_flips(x, horizontal=True, vertical=True):
    """Each image flipped left-right and/or upside down, each with probability 1/2."""
    for wanted, dim in ((horizontal, 3), (vertical, 2)):
        if wanted:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(dim), x)
    return x


def consistency_inputs(x, cfg):
    """The images the consistency goals encode. core: aug(x) for core. split: colour-jittered
    x for core, then flipped x for detail, stacked (2B rows) so that one encoder pass takes
    both."""
    if cfg.consistency == "core":
        return augment(x)
    return torch.cat([augment(x, flip=False), random_flips(x)])


def draw_step(x, cfg):
    b = x.shape[0]
    eps = torch.randn(b, cfg.latent_dim, device=x.device)
    return StepDraws(
        eps=eps,
        perm=torch.randperm(b, device=x.device),
        core_noise=cfg.noise_std * torch.randn(b, cfg.core_dim, device=x.device),
        detail_noise=cfg.noise_std * torch.randn(b, cfg.detail_dim, device=x.device),
        augmented=consistency_inputs(x, cfg),
    )


@dataclasses.dataclass
class RealStats:
    """Statistics of the real batch: computed once per step, reused by the look-ahead."""
    edges: torch.Tensor
    mean_color: torch.Tensor
    histogram: torch.Tensor
    features: torch.Tensor
    disc_features: list = None  # the discriminator's stages, when realism = "features"
    disc_units: list = None     # per stage: the units of realism_recon and realism_swap


@torch.no_grad()
def real_stats(x, perceptual, amp_context, disc=None):
    """disc: the discriminator, for realism = "features" (None for the original design's score)."""
    with amp_context():
        features = perceptual(x).float()
        disc_features = [f.float() for f in disc.features(x)] if disc is not None else None
    stats = RealStats(edges(x), mean_color(x), color_histogram(x), features, disc_features)
    if disc_features is not None:
        stats.disc_units = [_realism_units(f) for f in disc_features]
    return stats


def _realism_units(features):
    """(unit of realism_recon, unit of realism_swap) for one discriminator stage: the real
    features' mean square, and their batch mean's for swaps."""
    return features.pow(2).mean(), features.mean(0).pow(2).mean()


def realism_measures(disc, recon, swapped, real):
    """realism_recon and realism_swap: how far the discriminator finds the reconstructions and
    swaps from real images.

    The original design's "score" (real.disc_features None): 1 - mean sigmoid(D(image)),
    which never looks at the input: inside a min barrier it alone steers the decoder whenever
    realism is the bottleneck, toward whatever fools the discriminator (docs/design.md,
    "Realism").
    "features" keeps the discriminator, but measures in its features: a reconstruction
    against its own real image, stage by stage (a learned similarity: zero only when the
    discriminator sees no difference), a swap, which has no real counterpart, by the batch
    means of its features against the real batch's (feature matching); both per stage in
    the units real_stats gives them."""
    if real.disc_features is None:
        score = torch.sigmoid(disc(torch.cat([recon, swapped])).float()).flatten(1).mean(1)
        realism_recon, realism_swap = score.chunk(2)
        return 1 - realism_recon.mean(), 1 - realism_swap.mean()
    stages = [f.float().chunk(2) for f in disc.features(torch.cat([recon, swapped]))]
    count = len(stages)
    realism_recon = sum(_mse(r, t) / (unit + 1e-12) for (r, _), t, (unit, _)
                        in zip(stages, real.disc_features, real.disc_units))
    realism_swap = sum(_mse(s.mean(0), t.mean(0)) / (unit + 1e-12) for (_, s), t, (_, unit)
                       in zip(stages, real.disc_features, real.disc_units))
    return realism_recon / count, realism_swap / count


# ---------------------------------------------------------------------------------------------
# Raw measures
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Forward:
    measures: dict          # name -> float32 scalar tensor (goal inputs and logged extras)
    recon: torch.Tensor     # the reconstruction (feeds the discriminator update and pictures)
    mu_variance: torch.Tensor  # per-dim batch variance of mu, detached (active/effective dims)


def _off_diagonal_energy(z):
    """(sum cov^2 - sum diag^2) / sum diag^2 of the batch covariance of z."""
    centred = z - z.mean(0, keepdim=True)
    cov = centred.t() @ centred / (z.shape[0] - 1)
    diag_energy = torch.diagonal(cov).pow(2).sum()
    return (cov.pow(2).sum() - diag_energy) / diag_energy


def kl_per_dim(mu, logvar):
    return 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar)


def forward_measures(nets, x, real, draws, amp_context, update_stats=True):
    """One forward pass of everything the goals need; every raw measure computed once.

    nets[0] is the VAE, or its DistributedDataParallel wrapper (see VAE.forward).
    update_stats=False (the guard's look-ahead) leaves every BatchNorm running statistic
    untouched."""
    vae, disc, perceptual = nets
    core_dim = draws.core_noise.shape[1]
    outer = contextlib.nullcontext() if update_stats else frozen_batchnorm_stats(vae)
    with outer, amp_context():
        out = vae("lbo", x, draws)
        mu, logvar, mu_aug, z = out.mu, out.logvar, out.mu_augmented, out.z
        recon, recon_core, swapped = out.recon, out.core_only, out.swap
        core_moved, detail_moved = out.core_perturbed, out.detail_perturbed
        z_core, z_detail = z[:, :core_dim], z[:, core_dim:]
        realism_recon, realism_swap = realism_measures(disc, recon, swapped, real)
        recon_features = perceptual(recon).float()

    edges_recon, color_recon = edges(recon), mean_color(recon)
    edges_swapped = edges(swapped)
    kl = kl_per_dim(mu, logvar)
    var_mu = mu.var(0)
    var_core, var_detail = var_mu[:core_dim], var_mu[core_dim:]
    mu_detail = mu[:, core_dim:]
    detail_dim = mu.shape[1] - core_dim

    mse = _mse(recon, x)
    ssim = ssim_per_image(recon, x).mean()
    kl_core = kl[:, :core_dim].sum(1).mean()
    kl_detail = kl[:, core_dim:].sum(1).mean()
    m = {
        "mse": mse,
        "ssim": ssim,
        "pixel": mse + PIXEL_SSIM_WEIGHT * (1 - ssim),
        "edge": _mse(edges_recon, real.edges),
        "perceptual": _mse(recon_features, real.features),
        "core_mse": _mse(recon_core, x),
        "core_edge": _mse(edges(recon_core), real.edges),
        "swap_structure": _mse(edges_swapped, real.edges),
        "swap_appearance": _mse(mean_color(swapped), real.mean_color[draws.perm]),
        "swap_color_hist": _mse(color_histogram(swapped), real.histogram[draws.perm]),
        "realism_recon": realism_recon,
        "realism_swap": realism_swap,
        "core_color_leak": _mse(mean_color(core_moved), color_recon),
        "detail_edge_leak": _mse(edges(detail_moved), edges_recon),
        # Logged only: does a core nudge move structure, a detail nudge move appearance?
        "traversal_core_structure": _mse(edges(core_moved), edges_recon).detach(),
        "traversal_detail_appearance": _mse(mean_color(detail_moved), color_recon).detach(),
        "kl_core": kl_core,
        "kl_detail": kl_detail,
        "kl_core_dim": kl_core / core_dim,
        "kl_detail_dim": kl_detail / detail_dim,
        "logvar_core": logvar[:, :core_dim].mean(),
        "logvar_detail": logvar[:, core_dim:].mean(),
        "cov": _off_diagonal_energy(z_core),
        "core_consistency": _mse(mu[:, :core_dim], mu_aug[:len(x), :core_dim]),
        # A soft fraction of weak core dims, so the goal has a gradient: a dim with variance
        # v counts max(0, 1 - v / 0.1); it is 0 exactly when every dim is active.
        "weak": F.relu(1 - var_core / ACTIVE_VARIANCE).mean(),
        "detail_mean": mu_detail.mean(0).abs().mean(),
        "detail_var_mean": var_detail.mean(),
        "detail_cov": _off_diagonal_energy(z_detail),
        "detail_ratio": (recon - recon_core).abs().mean() / recon_core.abs().mean(),
        "core_var_health": var_core.median(),
        "detail_var_health": var_detail.median(),
        "core_var_max": var_core.max(),
        "detail_var_max": var_detail.max(),
    }
    if len(mu_aug) > len(x):  # consistency = split: the flipped images follow the jittered
        m["detail_consistency"] = _mse(mu_detail, mu_aug[len(x):, core_dim:])
    return Forward(m, recon, var_mu.detach())


# ---------------------------------------------------------------------------------------------
# Goals: raw value -> log-score
# ---------------------------------------------------------------------------------------------
def _box_log_score(distance):
    """distance: |x - peak| in units of the half-width on that side (1 = at the wall)."""
    inside = torch.clamp(distance, max=1.0)
    overshoot = torch.clamp(distance - 1.0, min=0.0)
    return torch.log(1 - (1 - BOX_WALL_SCORE) * inside ** 2) - BOX_STEEPNESS * overshoot


def log_score(goal, x):
    """log of the goal's score in [0, 1] for raw value x (a float32 tensor)."""
    kind = goal["type"]
    if kind == "MINIMIZE_SOFT":
        return -torch.clamp(x, min=0) / goal["scale"]
    if kind == "MINIMIZE_HARD":
        return -torch.log1p((torch.clamp(x, min=0) / goal["scale"]) ** 2)
    if kind == "LOWER":
        m = goal["margin"]
        return torch.log(torch.clamp((x - m) / m, 0, 1))
    if kind == "UPPER":
        m = goal["margin"]
        return torch.log(torch.clamp((m - x) / m, 0, 1))
    if kind == "BOX":
        centre = (goal["lower"] + goal["upper"]) / 2
        half = (goal["upper"] - goal["lower"]) / 2
        return _box_log_score(torch.abs(x - centre) / half)
    if kind == "BOX_ASYMMETRIC":
        peak = goal["healthy"]
        # Python floats, not tensors made on the CPU: a GPU would wait for each copy.
        side = torch.where(x >= peak, float(goal["upper"] - peak),
                           float(peak - goal["lower"])).to(x.dtype)
        return _box_log_score(torch.abs(x - peak) / side)
    if kind == "AT_MOST":
        # 1 up to the ceiling, then the BOX tail, overshoot in units of the ceiling.
        return -BOX_STEEPNESS * torch.clamp(x - goal["upper"], min=0) / goal["upper"]
    raise ValueError(f"goal '{goal['name']}': unknown type {kind!r}")


def describe_bounds(goal):
    """A goal's current parameters in a few characters, for summaries and reports."""
    kind = goal["type"]
    if kind == "AT_MOST":
        return f"<= {goal['upper']:.4g}"
    if kind.startswith("BOX"):
        peak = f" peak {goal['healthy']:.4g}" if kind == "BOX_ASYMMETRIC" else ""
        return f"[{goal['lower']:.4g}, {goal['upper']:.4g}]{peak}"
    if kind in ("LOWER", "UPPER"):
        return f"{'>=' if kind == 'LOWER' else '<='} {goal['margin']:.4g} (margin)"
    scale = goal["scale"]
    return f"scale {scale}" if isinstance(scale, str) else f"scale {scale:.4g}"  # "auto"


@dataclasses.dataclass
class GoalEvaluation:
    log_scores: dict        # goal name -> log-score tensor (differentiable)
    measures: dict          # measure name -> float (host copy, for logs and calibration)
    group_log_sums: list    # per group: log of the product of its scores
    group_sizes: list       # per group: the number of its goals
    group_scores: list      # per group: the score S_g (geometric mean of its goal scores)
    goal_scores: dict       # goal name -> score as a float
    violated: list          # names of violated groups (product underflows, or non-finite)
    nonfinite: list         # names of measures that are NaN/Inf
    bottleneck: int         # index in GROUPS of the minimum group

    @property
    def ok(self):
        return not self.violated and not self.nonfinite

    def without_graph(self):
        """The same evaluation with its log-scores detached: what a step keeps for the logs
        once it is decided. Kept with their graph, a refused step's activations (no backward
        freed them) would live on beside the next step's."""
        return dataclasses.replace(
            self, log_scores={k: v.detach() for k, v in self.log_scores.items()})

    @property
    def barrier(self):
        """-log(min S), the loss value (a float; inf when a group is violated)."""
        return -math.log(min(self.group_scores)) if min(self.group_scores) > 0 else math.inf


def measures_to_host(measures):
    """All measures as floats, in one device-to-host copy."""
    values = torch.stack([v.detach().float() for v in measures.values()]).tolist()
    return dict(zip(measures, values))


def evaluate_goals(goals, measures):
    """Scores of every goal and group; violation is decided here, before any loss exists.

    Everything the caller needs on the host comes back in a single device-to-host copy: on a
    GPU this is the step's only synchronisation point besides the look-ahead's."""
    log_scores = {g["name"]: log_score(g, measures[g["name"]]).float() for g in goals}
    members = [[g["name"] for g in goals if g["group"] == group] for group in GROUPS]
    # A group without goals (left out by drop_groups) scores 1 and is never the bottleneck.
    sums = [torch.stack([log_scores[n] for n in names]).sum() if names
            else torch.zeros((), device=next(iter(measures.values())).device)
            for names in members]
    names = list(measures)
    host = torch.stack([*(measures[n].detach().float() for n in names), *sums,
                        *(log_scores[g["name"]].detach() for g in goals)]).tolist()
    host_measures = dict(zip(names, host[:len(names)]))
    host_sums = host[len(names):len(names) + len(GROUPS)]
    goal_scores = {g["name"]: math.exp(v) if math.isfinite(v) else 0.0
                   for g, v in zip(goals, host[len(names) + len(GROUPS):])}
    violated = [group for group, total in zip(GROUPS, host_sums)
                if not math.isfinite(total) or total < LOG_SCORE_FLOOR]
    nonfinite = [n for n, v in host_measures.items() if not math.isfinite(v)]
    # exp of the mean log-score; a violated group counts as 0 (its product underflows).
    sizes = [len(m) for m in members]
    group_scores = [0.0 if group in violated else math.exp(total / n) if n else 1.0
                    for group, total, n in zip(GROUPS, host_sums, sizes)]
    return GoalEvaluation(log_scores, host_measures, host_sums, sizes, group_scores,
                          goal_scores, violated, nonfinite, bottleneck_of(group_scores, sizes))


def bottleneck_of(group_scores, group_sizes):
    """Index of the minimum group among those with goals."""
    return min((i for i, n in enumerate(group_sizes) if n), key=lambda i: group_scores[i])


def barrier_loss(goals, evaluation):
    """-log(min_g S_g), built from the bottleneck group's goals alone.

    The gradient of -log(min) is exactly zero for every other group; building the loss from
    the bottleneck's log-scores only lets backward skip the rest of the graph (the same
    gradient for a fraction of the work). Call only when evaluation.ok."""
    assert evaluation.ok, "barrier_loss on a violated evaluation: reject the batch instead"
    group = GROUPS[evaluation.bottleneck]
    logs = [evaluation.log_scores[g["name"]] for g in goals if g["group"] == group]
    return -torch.stack(logs).mean()


def group_losses(goals, evaluation):
    """(GROUPS indices, a tensor of their l_g = -log S_g) for the groups with goals:
    -log S_g is minus the mean log-score of g's goals."""
    assert evaluation.ok, "a loss of a violated evaluation: reject the batch instead"
    groups = [[evaluation.log_scores[g["name"]] for g in goals if g["group"] == group]
              for group in GROUPS]
    kept = [i for i, logs in enumerate(groups) if logs]
    return kept, torch.stack([-torch.stack(groups[i]).mean() for i in kept])


def group_sum_loss(goals, evaluation):
    """The sum control's loss: the mean over the groups with goals of -log S_g, so that every
    group gets gradient on every step."""
    return group_losses(goals, evaluation)[1].mean()


def smooth_max_loss(goals, evaluation, temperature):
    """Smooth Tchebycheff scalarisation of the groups' l_g = -log S_g (Lin et al., ICML 2024,
    with equal weights and the ideal point 0, where every score is 1):
    mu * log sum_g exp(l_g / mu). Its gradient is sum_g softmax(l / mu)_g grad l_g: as mu -> 0
    the bottleneck's alone, LBO's -log(min S); as mu grows, every group's alike, the sum's
    direction. logsumexp keeps it finite for any l."""
    return temperature * torch.logsumexp(group_losses(goals, evaluation)[1] / temperature, 0)


def weighted_group_loss(goals, evaluation, multipliers):
    """The multipliers' loss, the sum control's Lagrangian: the mean over groups of
    (1 + lambda_g) l_g (the constraints' constant -lambda_g kappa dropped). With every lambda
    at 0 it is the sum control's loss; a group whose multiplier has grown pulls harder."""
    kept, losses = group_losses(goals, evaluation)
    # Python floats times device tensors: no copy of the weights to the device each step.
    return sum(losses[j] * (1 + multipliers[i]) for j, i in enumerate(kept)) / len(kept)


# ---------------------------------------------------------------------------------------------
# Calibration and tightening
# ---------------------------------------------------------------------------------------------
MIN_SCALE = 0.001
TINY_MEDIAN = 1e-4


class Calibrator:
    """Records every raw measure during the warm-up; sets each "auto" scale once."""

    def __init__(self):
        self.rows = []

    def record(self, host_measures):
        self.rows.append(dict(host_measures))

    def __len__(self):
        return len(self.rows)

    def calibrate(self, goals):
        """Set every "auto" scale in place; return report lines (BOX ranges outside the box)."""
        lines = []
        for goal in goals:
            recorded = [row[goal["name"]] for row in self.rows]
            recorded = [v for v in recorded if math.isfinite(v)]
            if goal.get("scale") == "auto":
                median = statistics.median(recorded) if recorded else 1.0
                scale = max(recorded) if median < TINY_MEDIAN else median
                goal["scale"] = max(scale, MIN_SCALE)
            if goal["type"].startswith("BOX") and recorded:
                low, high = min(recorded), max(recorded)
                if low < goal["lower"] or high > goal["upper"]:
                    lines.append(
                        f"!!! BOX goal '{goal['name']}': calibration values [{low:.4g}, "
                        f"{high:.4g}] fall outside its box [{goal['lower']:.4g}, "
                        f"{goal['upper']:.4g}]")
        return lines


def tighten(goals, rate):
    """Stricter goals, in place: scales x(1 - rate); BOX half-widths x(1 - rate/2) about the
    centre (the healthy point for BOX_ASYMMETRIC). LOWER/UPPER margins and AT_MOST ceilings
    are bounds, not targets, and are left as set."""
    for goal in goals:
        kind = goal["type"]
        if kind in ("MINIMIZE_SOFT", "MINIMIZE_HARD"):
            goal["scale"] *= 1 - rate
        elif kind.startswith("BOX"):
            shrink = 1 - rate / 2
            peak = goal.get("healthy", (goal["lower"] + goal["upper"]) / 2)
            goal["lower"] = peak - (peak - goal["lower"]) * shrink
            goal["upper"] = peak + (goal["upper"] - peak) * shrink
    return goals
