"""What an epoch reports: running statistics, the metrics.jsonl record and the console summary."""
import math
from collections import Counter

import torch

from configs import ACTIVE_VARIANCE, GROUPS
from losses import describe_bounds

# Groups whose starvation means the reconstruction gets no gradient at all.
RECONSTRUCTION_GROUPS = ("recon", "core", "swap")
KL_PER_DIM_GOALS = ("kl_core_dim", "kl_detail_dim")
WARMUP_MEASURES = ("mse", "ssim", "kl_core_dim", "kl_detail_dim")


class EpochStats:
    """Accumulates host-side floats (already fetched by the step) and one device vector."""

    def __init__(self):
        self.measure_sums, self.measured = Counter(), 0
        # The plain-MSE warm-up (calibration) of epoch 1 is another objective: its measures
        # are kept apart, so that the epoch's means describe the LBO steps alone.
        self.warmup_sums = Counter()
        self.group_sums, self.min_group_sum, self.loss_sum = Counter(), 0.0, 0.0
        self.goal_sums = Counter()
        # Bottlenecks of accepted steps (the groups that got gradient) and of refused ones
        # (whose gradient was never applied), counted apart.
        self.bottlenecks, self.refused_bottlenecks = Counter(), Counter()
        self.evaluated = self.accepted = self.rollbacks = self.rejected = 0
        # Refusals for realism alone by the first evaluation after a discriminator update:
        # the discriminator's own training may have caused them (they count as refusals).
        self.refused_after_disc_update = 0
        self.calibration_batches = self.bad_batches = 0
        self.mu_variance_sum = None
        self.disc_loss_sum, self.disc_steps = None, 0
        self.seconds = 0.0  # training time spent in this epoch before an interruption

    def add_measures(self, measures, mu_variance):
        self.measure_sums.update(measures)
        self.measured += 1
        self.mu_variance_sum = mu_variance if self.mu_variance_sum is None \
            else self.mu_variance_sum + mu_variance

    def add_warmup(self, measures):
        """A calibration batch: plain MSE, no goals, no guard."""
        self.warmup_sums.update(measures)
        self.calibration_batches += 1

    def add_accepted(self, evaluation, mu_variance):
        """An LBO step whose update was kept: its forward's numbers make the epoch's means."""
        self.add_measures(evaluation.measures, mu_variance)
        self.evaluated += 1
        self.accepted += 1
        self.loss_sum += evaluation.barrier
        self.group_sums.update(dict(zip(GROUPS, evaluation.group_scores)))
        self.goal_sums.update(evaluation.goal_scores)
        self.min_group_sum += min(evaluation.group_scores)
        self.bottlenecks[GROUPS[evaluation.bottleneck]] += 1

    def add_refused(self, evaluation, rolled_back, after_disc_update=False):
        """A batch rejected before the step, or a step rolled back: it counts toward the
        refusal rate only; its measures (possibly NaN) stay out of the epoch's means."""
        self.evaluated += 1
        self.refused_after_disc_update += after_disc_update
        if rolled_back:
            self.rollbacks += 1
        else:
            self.rejected += 1
        self.refused_bottlenecks[GROUPS[evaluation.bottleneck]] += 1

    def add_elbo_step(self, loss_value):
        """A control step: its loss; its measures, when logged, come through add_measures."""
        self.accepted += 1
        self.loss_sum += loss_value

    def add_disc_loss(self, loss):
        self.disc_loss_sum = loss.detach() if self.disc_loss_sum is None \
            else self.disc_loss_sum + loss.detach()
        self.disc_steps += 1

    _COUNTERS = ("measure_sums", "warmup_sums", "group_sums", "goal_sums", "bottlenecks",
                 "refused_bottlenecks")

    def state_dict(self):
        """Plain data on the CPU, for a checkpoint taken in the middle of an epoch."""
        return {k: dict(v) if k in self._COUNTERS else v.cpu() if torch.is_tensor(v) else v
                for k, v in vars(self).items()}

    def load_state_dict(self, state, device="cpu"):
        """From a checkpoint read on the CPU: the running sums back on the training device."""
        for key, value in state.items():
            if torch.is_tensor(value):
                value = value.to(device)
            setattr(self, key, Counter(value) if key in self._COUNTERS else value)

    @property
    def failed(self):
        return self.rollbacks + self.rejected

    @property
    def rollback_rate(self):
        return self.failed / self.evaluated if self.evaluated else 0.0

    def record(self, epoch, core_dim, goals=()):
        """The epoch's metrics.jsonl line (plain floats, ints, strings, dicts). Means and
        bottleneck shares are over accepted steps: what the optimizer actually did."""
        mean = {k: v / self.measured for k, v in self.measure_sums.items()} if self.measured else {}
        nan = float("nan")
        accepted = self.accepted if self.evaluated else 0  # the ELBO control has no goals
        variance = (self.mu_variance_sum / max(self.measured, 1)).float().cpu() \
            if self.mu_variance_sum is not None else torch.zeros(0)
        record = {
            "epoch": epoch,
            "loss": self.loss_sum / self.accepted if self.accepted else nan,
            "min_group": self.min_group_sum / accepted if accepted else nan,
            "groups": {g: self.group_sums[g] / accepted if accepted else nan for g in GROUPS},
            "bottleneck": {g: self.bottlenecks[g] / accepted if accepted else 0.0
                           for g in GROUPS},
            "refused_bottleneck": {g: self.refused_bottlenecks[g] for g in GROUPS},
            "goal_scores": {k: v / accepted for k, v in self.goal_sums.items()} if accepted
            else {},
            "steps": self.evaluated, "accepted": self.accepted, "rollbacks": self.rollbacks,
            "rejected": self.rejected, "rollback_rate": self.rollback_rate,
            "refused_after_disc_update": self.refused_after_disc_update,
            "calibration_batches": self.calibration_batches, "bad_batches": self.bad_batches,
            "disc_loss": (self.disc_loss_sum / self.disc_steps).item() if self.disc_steps else nan,
        }
        for name in ("mse", "ssim", "swap_structure", "swap_appearance", "kl_core", "kl_detail",
                     "kl_core_dim", "kl_detail_dim", "traversal_core_structure",
                     "traversal_detail_appearance"):
            record[name] = mean.get(name, nan)
        record["core_var"] = mean.get("core_var_health", nan)
        record["detail_var"] = mean.get("detail_var_health", nan)
        # The KL-per-dim goals as they stood this epoch (tightening may move them): their
        # bounds and mean score, so the summary never quotes a fixed band.
        record["kl_goals"] = {g["name"]: {"bounds": describe_bounds(g), "upper": g.get("upper"),
                                          "score": record["goal_scores"].get(g["name"], nan)}
                              for g in goals if g["name"] in KL_PER_DIM_GOALS}
        for part, dims in (("core", variance[:core_dim]), ("detail", variance[core_dim:])):
            record[f"{part}_active"] = int((dims > ACTIVE_VARIANCE).sum())
            record[f"{part}_dims"] = len(dims)
            record[f"{part}_effective"] = effective_dims(dims)
        record["measures"] = mean
        if self.calibration_batches:
            record["warmup"] = {name: self.warmup_sums[name] / self.calibration_batches
                                for name in WARMUP_MEASURES}
        return record


# Converged: held-out MSE improved by less than this over the last fifth of the epochs run.
CONVERGED_GAIN = 0.02
RECENT_SHARE = 0.2


def recent_gain(values):
    """How much the last fifth of the epochs (at least one) improved on the best value before
    them, as a fraction of it: (best before - best within) / best before, lower-is-better
    values. None until there are epochs both before and within the window."""
    window = max(1, round(RECENT_SHARE * len(values)))
    before, within = values[:-window], values[-window:]
    if not before:
        return None, window
    best_before = min(before)
    return (best_before - min(within)) / best_before, window


def convergence_verdict(gain):
    """What the last fifth's gain says: an MSE that rose by more than CONVERGED_GAIN is not
    convergence but a run moving away from its best epoch (LBO's held-out MSE can rise while
    realism binds)."""
    if gain >= CONVERGED_GAIN:
        return "still improving"
    if gain > -CONVERGED_GAIN:
        return "converged"
    return "worse than its best epoch before them"


def effective_dims(variances):
    """exp(entropy) of the variances normalised to a distribution: 1 when one dim carries all
    the variance, the number of dims when all carry the same."""
    total = variances.sum()
    if not total > 0:
        return 0.0
    p = variances / total
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def _bar(share, width=20):
    filled = round(share * width)
    return "#" * filled + "." * (width - filled)


def _goal_lines(r):
    """Group scores with bottleneck shares of accepted steps, and the refusals."""
    lines = ["group          score  bottleneck (accepted steps)  refused"]
    # Only under the min does the bottleneck alone get gradient; the controls give every
    # group some on every step.
    only_the_bottleneck_learns = r.get("objective", "lbo") == "lbo"
    for g in GROUPS:
        share, refused = r["bottleneck"][g], r["refused_bottleneck"][g]
        flag = ""
        if only_the_bottleneck_learns and r["accepted"] and share == 0 \
                and g in RECONSTRUCTION_GROUPS:
            flag = "  <- never bottleneck"
        lines.append(f"  {g:<11} {r['groups'][g]:6.3f}  {_bar(share)} {share:4.0%}"
                     f"{refused:8d}{flag}")
    if only_the_bottleneck_learns and r["steps"] and \
            all(r["bottleneck"][g] == 0 for g in RECONSTRUCTION_GROUPS):
        lines.append("  !! recon/core/swap were never the bottleneck of an accepted step: "
                     "reconstruction got no gradient this epoch")
    lines.append(f"rollbacks {r['rollbacks'] + r['rejected']}/{r['steps']} "
                 f"({r['rollback_rate']:.1%}: {r['rollbacks']} rolled back, "
                 f"{r['rejected']} rejected before the step)")
    if r.get("refused_after_disc_update"):
        lines.append(f"  of them {r['refused_after_disc_update']} for realism alone, right "
                     "after a discriminator update (counted in the rate)")
    return lines


def _kl_line(r):
    """KL summed and per dim, with the per-dim goals' bounds and scores as they stood."""
    line = f"KL core {r['kl_core']:.2f} ({r['kl_core_dim']:.3f}/dim)   " \
           f"detail {r['kl_detail']:.2f} ({r['kl_detail_dim']:.3f}/dim)"
    goals = r.get("kl_goals", {})
    if goals:
        line += "\nKL/dim goals: " + "   ".join(
            f"{name.split('_')[1]} {goal['bounds']} score {goal['score']:.3f}"
            for name, goal in goals.items())
    return line


def _heldout_line(r):
    """Held-out numbers (eval mode): the convergence a reader can trust, since the training
    numbers mix batch statistics and, in epoch 1, the warm-up."""
    line = f"held-out ({r['heldout_images']} images): MSE {r['heldout_mse']:.5f}   " \
           f"SSIM {r['heldout_ssim']:.4f}"
    gain, window = r.get("heldout_recent_gain"), r.get("heldout_recent_epochs")
    if gain is not None:
        line += f"\n  MSE gain over the last {window} epoch{'s' * (window > 1)}: " \
                f"{gain:.1%} ({convergence_verdict(gain)}: within ±{CONVERGED_GAIN:.0%} " \
                "counts as converged)"
    return line


def format_summary(r, total_epochs):
    """The console summary of one epoch: fits a narrow (80-column) Colab cell."""
    lines = [f"=== epoch {r['epoch']}/{total_epochs}  ({r['seconds']:.0f}s, lr {r['lr']:.2e}) ==="]
    if r["calibration_batches"]:
        w = r["warmup"]
        lines.append(f"warm-up (calibration): {r['calibration_batches']} plain-MSE batches: "
                     f"SSIM {w['ssim']:.4f}   MSE {w['mse']:.5f}   KL/dim core "
                     f"{w['kl_core_dim']:.3f} detail {w['kl_detail_dim']:.3f}")
        lines.append("the rest of this summary counts the LBO steps after it")
    elbo = r.get("objective") == "elbo"  # the control has no goals and no guard
    loss = f"-ELBO {r['loss']:.4f}" if elbo else \
        f"loss {r['loss']:.4f}   min group {r['min_group']:.4g}"
    lines.append(f"{loss}   SSIM {r['ssim']:.4f}   MSE {r['mse']:.5f}")
    lines.append(f"swap loss: structure {r['swap_structure']:.5f}   "
                 f"appearance {r['swap_appearance']:.5f}")
    lines.append(_kl_line(r))
    if not elbo:
        lines += _goal_lines(r)
    lines.append(f"tightening: {r['decision']}")
    lines.append(f"active dims: core {r['core_active']}/{r['core_dims']} "
                 f"(effective {r['core_effective']:.1f})   detail {r['detail_active']}/"
                 f"{r['detail_dims']} (effective {r['detail_effective']:.1f})")
    if r.get("heldout_mse") is not None:
        lines.append(_heldout_line(r))
    if r["bad_batches"]:
        lines.append(f"skipped {r['bad_batches']} batches with NaN/Inf pixels")
    return "\n".join(lines)
