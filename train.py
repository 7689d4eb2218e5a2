"""Train BOM VAE v15 with the LBO barrier, the rollback guard and the adaptive tightener.

    python train.py                         # CelebA (set up with: python celeba_setup.py)
    python train.py --preset demo           # built-in procedural dataset, small model, CPU
    python train.py --epochs 3 --batch_size=128 --output_dir runs/a

Every setting is a field of Config in configs.py. Per epoch: a summary on the console, a line
in <output_dir>/metrics.jsonl and <output_dir>/checkpoint.pt. At the end: evaluation and the
pictures (see evaluate.py).
"""
import contextlib
import copy
import dataclasses
import functools
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

import configs
from checkpoint import FORMAT, previous_path, read_checkpoint, save_checkpoint
from configs import GROUPS, UserError
import distributed
from control import GroupMultipliers, RollbackGuard, Tightener
from data import build_datasets, first_images, make_loader
from evaluate import evaluate_run
from losses import (Calibrator, GoalEvaluation, RealStats, StepDraws, barrier_loss, draw_step,
                    evaluate_goals, forward_measures, group_sum_loss, kl_per_dim,
                    measures_to_host, real_stats, smooth_max_loss, weighted_group_loss)
from models import build_models, compile_networks
from precision import choose_precision, resolve_device
from quality import reconstruction_metrics
from report import summary_lines
from summary import EpochStats, format_summary, recent_gain

# The discriminator's optimizer takes no step during calibration, so its scheduler's first
# step comes "before optimizer.step()"; that is intended, and the warning would only confuse.
warnings.filterwarnings(
    "ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))

FAILING_GOAL_SCORE = 0.01  # a goal this low is named in a [ROLLBACK] line
DANGER_GROUP_SCORE = 0.05  # a group this low is in the danger zone


class TrainingStalled(UserError):
    pass


def learning_rate_schedule(optimizer, cfg):
    """The optimizer's per-epoch rate: a cosine from its own rate to min_lr at the last epoch,
    or its own rate throughout."""
    if cfg.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs, cfg.min_lr)


@dataclasses.dataclass
class PendingUpdate:
    """An optimizer step the guard has not checked yet: the snapshot from before it, what its
    look-ahead needs (the batch, its perceptual features and random draws), and what is done
    only once it is accepted (the epoch's statistics, the discriminator's update)."""
    guard: RollbackGuard
    x: torch.Tensor
    real: RealStats
    real_disc_version: int  # the discriminator that took real's features (Trainer.disc_version)
    draws: StepDraws
    evaluation: GoalEvaluation
    mu_variance: torch.Tensor
    recon: torch.Tensor
    discriminator_due: bool
    where: str


class Trainer:
    def __init__(self, cfg, device, context=None):
        context = context or distributed.Context()  # a single process by default
        self.cfg, self.device, self.context = cfg, device, context
        self.vae, self.disc, self.perceptual = build_models(cfg, device)
        # NHWC lets cuDNN use tensor-core convolutions without transposes; oneDNN on a CPU
        # gains from it too (docs/speed.md).
        self.memory_format = torch.channels_last if cfg.channels_last \
            else torch.contiguous_format
        for net in (self.vae, self.disc, self.perceptual):
            net.to(memory_format=self.memory_format)
        if cfg.compile:
            compile_networks(self.vae, self.disc, self.perceptual)
        self.vae_parallel, self.disc_parallel = self.vae, self.disc
        if context.active:
            ids = [device.index] if device.type == "cuda" else None
            # Only the bottleneck group is back-propagated, so some parameters get no
            # gradient in a step. BatchNorm statistics stay per rank; the discriminator's
            # spectral-norm vectors follow rank 0 so that every rank scores alike.
            self.vae_parallel = DistributedDataParallel(
                self.vae, ids, find_unused_parameters=True, broadcast_buffers=False)
            self.disc_parallel = DistributedDataParallel(self.disc, ids)
        # The discriminator scores for the VAE frozen and in eval mode (spectral-norm state
        # untouched); only discriminator_step switches it to training.
        self.disc.requires_grad_(False).eval()
        # Counts the discriminator's updates, so that features taken before one are not
        # compared with features taken after it, and a refusal right after one is told apart.
        self.disc_version = self._evaluated_disc_version = 0
        self.first_evaluation_since_disc_update = False
        self.log = tqdm.write if context.main else (lambda line: None)
        self.writer = None  # a TensorBoard SummaryWriter, set by train() when available
        self.opt = torch.optim.AdamW(self.vae.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
        self.opt_disc = torch.optim.AdamW(self.disc.parameters(), cfg.disc_lr)
        self.schedulers = [learning_rate_schedule(o, cfg) for o in (self.opt, self.opt_disc)]
        self.goals = configs.goal_table(cfg)  # less the ablations' groups, with the switches
        self.calibrator, self.calibrated = Calibrator(), False
        # Under DDP, every rank's calibration records so far and its statistics of the epoch
        # under way, gathered when an interrupt stops the run: a resume gives each rank back
        # its own (rank 0 writes them all).
        self.calibration_rows_by_rank = self.epoch_stats_by_rank = None
        self.guards = (RollbackGuard(self.vae, self.opt), RollbackGuard(self.vae, self.opt))
        self.pending = None  # a PendingUpdate: an optimizer step not yet checked by the guard
        self.tightener = Tightener(cfg)
        self.multipliers = GroupMultipliers(cfg)  # used by objective = multipliers
        self.history, self.lbo_batches, self.failed_in_a_row = [], 0, 0
        self.timer = None  # a PhaseTimer while benchmarking (bench/step_speed.py)
        self.precision = choose_precision(cfg.amp, device)
        self.amp = self.precision.autocast

    def phase(self, name):
        return self.timer.phase(name) if self.timer else contextlib.nullcontext()

    @property
    def nets(self):
        return self.vae_parallel, self.disc, self.perceptual

    def _evaluate(self, measures):
        self.first_evaluation_since_disc_update = \
            self.disc_version != self._evaluated_disc_version
        self._evaluated_disc_version = self.disc_version
        return distributed.global_evaluation(
            self.context, evaluate_goals(self.goals, measures), self.device)

    def _refused_for_the_discriminator(self, evaluation):
        """Refused for realism alone, by the first evaluation after a discriminator update:
        the discriminator moved, perhaps more than the VAE did."""
        return self.first_evaluation_since_disc_update and evaluation.violated == ["realism"] \
            and not evaluation.nonfinite

    def real_stats(self, x):
        """The real batch's statistics; the discriminator's features when realism measures
        the distance in them."""
        disc = self.disc if self.cfg.realism == "features" else None
        return real_stats(x, self.perceptual, self.amp, disc)

    def _forward(self, x):
        draws, real = self.step_inputs(x)
        return draws, real, forward_measures(self.nets, x, real, draws, self.amp)

    # --- calibration (epoch 1): plain MSE, every raw measure recorded -----------------------
    def calibration_step(self, x, stats):
        _, _, fwd = self._forward(x)
        host = measures_to_host(fwd.measures)
        self.calibrator.record(host)
        stats.add_warmup(host)
        self.opt.zero_grad(set_to_none=True)
        fwd.measures["mse"].backward()
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), self.cfg.calibration_grad_clip)
        self.opt.step()

    def finish_calibration(self):
        self.calibrator.rows = distributed.gather_rows(self.context, self.calibrator.rows)
        box_reports = self.calibrator.calibrate(self.goals)
        self.calibrated = True
        scales = ", ".join(f"{g['name']}={g['scale']:.4g}" for g in self.goals
                           if g["name"] in self._auto_goal_names())
        self.log(f"calibrated on {len(self.calibrator)} batches; scales: {scales}")
        for line in box_reports:
            self.log(line)

    def _auto_goal_names(self):
        return [g["name"] for g in configs.goal_table(self.cfg) if g.get("scale") == "auto"]

    # --- the control: a plain beta-VAE step --------------------------------------------------
    def elbo_step(self, x, stats):
        """The ordinary beta-VAE step: encode, reparameterise, decode the reconstruction
        alone (so BatchNorm normalises, and keeps statistics of, reconstructions only);
        -ELBO with a Gaussian likelihood of standard deviation elbo_sigma per pixel: summed
        squared error / (2 sigma^2) plus beta * KL, per image.

        On every control_measure_every-th step LBO's measures are then logged from a forward
        without gradients in eval mode, which leaves every statistic alone: both objectives
        are read alike, and the control's training numbers describe the model that
        evaluation sees."""
        draws = draw_step(x, self.cfg)
        with self.amp():
            mu, logvar, _, recon = self.vae_parallel("elbo", x, draws.eps)
        loss = (recon - x).pow(2).flatten(1).sum(1).mean() / (2 * self.cfg.elbo_sigma ** 2) \
            + self.cfg.beta * kl_per_dim(mu, logvar).sum(1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        # Counted within the epoch, which a checkpoint keeps: a resumed run measures the
        # same steps, and every rank the same ones.
        measured = stats.accepted % self.cfg.control_measure_every == 0
        stats.add_elbo_step(loss.item())
        if measured:
            self.vae.eval()
            with torch.no_grad():
                fwd = forward_measures(self.nets, x, self.real_stats(x), draws, self.amp)
            self.vae.train()
            stats.add_measures(measures_to_host(fwd.measures), fwd.mu_variance)

    # --- the LBO step ------------------------------------------------------------------------
    def lbo_step(self, x, stats, where, log):
        """One LBO step on batch x, guarded (docs/design.md, "The method in a page"); returns
        its evaluation, without graph. With guard_check = next-batch, next_batch_step."""
        self.lbo_batches += 1
        if self.cfg.guard_check == "next-batch":
            return self.next_batch_step(x, stats, where, log)
        guard = self.guards[0]
        self.snapshot(guard)  # before the forward: a refused batch leaves no trace at all
        draws, real = self.step_inputs(x)
        fwd, before = self.forward_and_score(x, real, draws)
        if not before.ok:
            return self.refuse(guard, before, before, stats, f"[REJECTED] {where}", log)
        self.backward_and_step(before)
        after = self.look_ahead(x, real, draws)
        if not after.ok:
            return self.refuse(guard, before, after, stats, f"[ROLLBACK] {where}", log)
        self.accept(before, fwd.mu_variance, stats)
        if self.discriminator_due():
            self.discriminator_step(x, fwd.recon, stats)
        return before.without_graph()

    def next_batch_step(self, x, stats, where, log):
        """lbo_step with guard_check = next-batch (docs/speed.md, "A faster guard"): this
        batch's forward is also the check of the pending update, the previous step's, and
        this step's update stays pending until the next forward, or settle_pending, checks
        it. Two snapshot slots: the pending update's and this batch's."""
        guard = self._free_guard()
        self.snapshot(guard)
        real_disc_version = self.disc_version
        draws, real = self.step_inputs(x)
        fwd, before = self.forward_and_score(x, real, draws)
        if self.pending:
            checked = self.pending.guard
            if not self._settle(before, stats, log, f" (checked on {where})"):
                # Back at the state before that update, which its guard holds: take this
                # batch from there, with the same draws.
                guard = checked
                del fwd, before  # the failed forward's graph: not kept beside the new one
                fwd, before = self.forward_and_score(x, real, draws, phase="re-forward")
        if not before.ok:
            return self.refuse(guard, before, before, stats, f"[REJECTED] {where}", log)
        self.backward_and_step(before)
        self.pending = PendingUpdate(
            guard, x, real, real_disc_version, draws, before.without_graph(), fwd.mu_variance,
            fwd.recon.detach(), self.discriminator_due(), where)
        return self.pending.evaluation

    def discriminator_due(self):
        """Whether the discriminator trains after this LBO batch: every disc_every-th one."""
        return self.lbo_batches % self.cfg.disc_every == 0

    # --- the step's parts, each timed as its phase (bench/step_speed.py) ---------------------
    def snapshot(self, guard):
        with self.phase("snapshot"):
            guard.snapshot()

    def step_inputs(self, x):
        """The step's random draws, shared by its look-ahead, and the real batch's
        statistics."""
        with self.phase("forward"):
            return draw_step(x, self.cfg), self.real_stats(x)

    def forward_and_score(self, x, real, draws, phase="forward"):
        """The step's forward pass and its goals' evaluation (global under DDP)."""
        with self.phase(phase):
            fwd = forward_measures(self.nets, x, real, draws, self.amp)
            return fwd, self._evaluate(fwd.measures)

    def backward_and_step(self, evaluation):
        with self.phase("backward"):
            loss = self.goal_loss(evaluation)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            zero_fill_missing_grads(self.vae)
            if self.cfg.lbo_grad_clip:
                torch.nn.utils.clip_grad_norm_(self.vae.parameters(), self.cfg.lbo_grad_clip)
        with self.phase("optimizer"):
            self.opt.step()

    @torch.no_grad()
    def look_ahead(self, x, real, draws):
        """The update's check: the same batch and draws through the new weights. Every
        BatchNorm statistic is left alone, so an accepted step's buffers are those of its own
        forward pass, as if there had been no look-ahead."""
        with self.phase("look-ahead"):
            fwd = forward_measures(self.nets, x, real, draws, self.amp, update_stats=False)
            return self._evaluate(fwd.measures)

    def accept(self, evaluation, mu_variance, stats):
        stats.add_accepted(evaluation, mu_variance)
        self.failed_in_a_row = 0
        if self.cfg.objective == "multipliers":
            self.multipliers.update(evaluation.group_scores, evaluation.group_sizes)

    def refuse(self, guard, evaluation, judged, stats, prefix, log):
        """Restore the snapshot and count the refusal of the step whose forward gave
        `evaluation`, refused on `judged` (the same evaluation when rejected before any
        step, the check's when rolled back). Returns the step's evaluation, without graph."""
        with self.phase("restore"):
            guard.restore()
        stats.add_refused(evaluation, rolled_back=judged is not evaluation,
                          after_disc_update=self._refused_for_the_discriminator(judged))
        self._count_failure(judged, prefix, log)
        return evaluation.without_graph()

    def goal_loss(self, evaluation):
        """The step's loss from the groups' scores, as the objective says (configs.py)."""
        objective = self.cfg.objective
        if objective == "lbo":
            return barrier_loss(self.goals, evaluation)
        if objective == "smooth_max":
            return smooth_max_loss(self.goals, evaluation, self.cfg.smooth_max_temperature)
        if objective == "multipliers":
            return weighted_group_loss(self.goals, evaluation, self.multipliers.values)
        return group_sum_loss(self.goals, evaluation)

    # --- next-batch mode: the pending update ---------------------------------------------------
    def _free_guard(self):
        """The snapshot slot not holding the pending update's state, each allocated once."""
        return self.guards[1] if self.pending and self.pending.guard is self.guards[0] \
            else self.guards[0]

    def settle_pending(self, stats, log):
        """Check the pending update, if any, by the look-ahead. Called at the end of an epoch
        and before an interrupt's checkpoint, so that no checkpoint holds an unchecked
        update."""
        if self.pending:
            update, real = self.pending, self.pending.real
            if real.disc_features is not None and update.real_disc_version != self.disc_version:
                # The discriminator learnt after this batch's forward (on the previous step's
                # acceptance): measure both sides with it.
                with torch.no_grad():
                    real = self.real_stats(update.x)
            self._settle(self.look_ahead(update.x, real, update.draws), stats, log)

    def _settle(self, after, stats, log, checked_on=""):
        """Accept the pending update, or roll it back, on `after`, an evaluation of its new
        weights. Returns whether it was accepted."""
        update, self.pending = self.pending, None
        if not after.ok:
            self.refuse(update.guard, update.evaluation, after, stats,
                        f"[ROLLBACK] {update.where}{checked_on}", log)
            return False
        self.accept(update.evaluation, update.mu_variance, stats)
        if update.discriminator_due:
            self.discriminator_step(update.x, update.recon, stats)
        return True

    def _count_failure(self, evaluation, prefix, log):
        log(f"{prefix}: {describe_violation(self.goals, evaluation)}")
        self.failed_in_a_row += 1
        if self.failed_in_a_row >= self.cfg.max_consecutive_rejections:
            raise TrainingStalled(
                f"{self.failed_in_a_row} batches in a row were rejected or rolled back; the "
                f"last one: {describe_violation(self.goals, evaluation)}. The goals cannot be "
                "met from here: lower the learning rate (--lr), widen the failing goals in "
                "configs.py, or raise max_consecutive_rejections")

    # --- the discriminator: only after an accepted step, so a refused batch teaches it nothing
    def discriminator_step(self, x, recon, stats):
        with self.phase("discriminator"):
            self.disc.train().requires_grad_(True)
            with self.amp():
                logits = self.disc_parallel(torch.cat([x, recon.detach()])).float()
            target = torch.zeros_like(logits)
            target[:len(x)] = 1.0  # real -> 1, reconstructions -> 0, averaged over both
            loss = F.binary_cross_entropy_with_logits(logits, target)
            self.opt_disc.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), self.cfg.disc_grad_clip)
            self.opt_disc.step()
            self.disc.eval().requires_grad_(False)
            self.disc_version += 1
            stats.add_disc_loss(loss)

    # --- one epoch -------------------------------------------------------------------------
    def train_epoch(self, loader, epoch, stats, start_batch, interrupt):
        """Train on `loader` (the epoch's batches from `start_batch` on). Returns the epoch's
        record, or None when an interrupt was requested (self.position = batches done)."""
        started = time.time()
        self.vae.train()
        bar = tqdm(loader, desc=f"epoch {epoch}/{self.cfg.epochs}", dynamic_ncols=True,
                   initial=start_batch, total=start_batch + len(loader), leave=False,
                   file=sys.stdout, disable=not self.context.main)
        for i, x in enumerate(bar, start_batch + 1):
            # Decided alike on every rank: a rank skipping a batch alone would wait in another
            # collective operation than the others. isfinite runs on the CPU: no device sync.
            interrupted, bad = distributed.any_rank(
                self.context, [interrupt.requested, not torch.isfinite(x).all()], self.device)
            if interrupted:
                bar.close()
                self.settle_pending(stats, self.log)
                if self.context.active and not self.calibrated:
                    self.calibration_rows_by_rank = distributed.rows_by_rank(
                        self.context, self.calibrator.rows)
                stats.seconds += time.time() - started
                if self.context.active:
                    self.epoch_stats_by_rank = distributed.rows_by_rank(
                        self.context, stats.state_dict())
                self.position = i - 1
                return None
            if bad:
                stats.bad_batches += 1
                continue
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            if self.cfg.objective == "elbo":
                self.elbo_step(x, stats)
                continue
            if not self.calibrated:
                self.calibration_step(x, stats)
                if len(self.calibrator) == self.cfg.calibration_batches:
                    self.finish_calibration()
                continue
            evaluation = self.lbo_step(x, stats, f"epoch {epoch} batch {i}", self.log)
            if self.writer and self.lbo_batches % self.cfg.log_every == 0:
                self._log_step(evaluation, stats)
            bar.set_postfix(loss=f"{evaluation.barrier:.3f}",
                            min=f"{min(evaluation.group_scores):.3f}",
                            neck=GROUPS[evaluation.bottleneck],
                            ssim=f"{evaluation.measures['ssim']:.3f}",
                            rb=stats.failed, refresh=False)
        bar.close()
        self.settle_pending(stats, self.log)
        if configs.scores_goals(self.cfg) and not self.calibrated:
            if not len(self.calibrator):
                raise UserError("epoch 1 had no usable batch to calibrate on (all had NaN/Inf "
                                "pixels?); check the dataset")
            self.log(f"epoch 1 ended after {len(self.calibrator)} of the "
                     f"{self.cfg.calibration_batches} calibration batches; calibrating now")
            self.finish_calibration()
        distributed.sum_over_ranks(self.context, stats, self.device)
        record = stats.record(epoch, self.cfg.core_dim,
                              self.goals if configs.scores_goals(self.cfg) else ())
        record["lr"] = self.opt.param_groups[0]["lr"]
        record["objective"] = self.cfg.objective
        if self.cfg.objective == "multipliers":  # each group weighs 1 + its multiplier
            record["multipliers"] = dict(zip(GROUPS, self.multipliers.values))
        record["decision"], record["stop"] = self.tightener.end_epoch(
            epoch, stats.rollback_rate, self.goals) if configs.scores_goals(self.cfg) \
            else ("none (elbo control)", False)
        record["tightening_rate"] = self.tightener.rate
        for scheduler in self.schedulers:
            scheduler.step()
        record["seconds"] = stats.seconds + time.time() - started
        self.history.append(record)
        return record

    def _log_step(self, evaluation, stats):
        step, add = self.lbo_batches, self.writer.add_scalar
        add("step/loss", evaluation.barrier, step)
        add("step/min_group", min(evaluation.group_scores), step)
        add("step/ssim", evaluation.measures["ssim"], step)
        add("step/refused_this_epoch", stats.failed, step)
        for group, score in zip(GROUPS, evaluation.group_scores):
            add(f"step_group/{group}", score, step)

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self, next_epoch, next_batch=0, stats=None):
        """Everything needed to continue exactly from (next_epoch, next_batch); plain tensors,
        numbers, strings, lists and dicts, so it loads with torch.load(weights_only=True)."""
        assert self.pending is None, "settle_pending() first: a checkpoint holds checked steps"
        return {
            "format": FORMAT, "config": configs.to_dict(self.cfg),
            "next_epoch": next_epoch, "next_batch": next_batch,
            "epoch_stats": stats.state_dict() if stats else None,
            "epoch_stats_by_rank": self.epoch_stats_by_rank if stats else None,
            "vae": self.vae.state_dict(), "disc": self.disc.state_dict(),
            "opt_vae": self.opt.state_dict(), "opt_disc": self.opt_disc.state_dict(),
            "schedulers": [s.state_dict() for s in self.schedulers],
            "goals": copy.deepcopy(self.goals), "calibrated": self.calibrated,
            "calibration_rows": copy.deepcopy(self.calibrator.rows),
            "calibration_rows_by_rank": copy.deepcopy(self.calibration_rows_by_rank),
            "tightener": self.tightener.state_dict(), "history": copy.deepcopy(self.history),
            "multipliers": self.multipliers.state_dict(),
            "lbo_batches": self.lbo_batches, "failed_in_a_row": self.failed_in_a_row,
            "disc_updated_since_evaluation": self.disc_version != self._evaluated_disc_version,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    def load_state_dict(self, state):
        self.vae.load_state_dict(state["vae"])
        self.disc.load_state_dict(state["disc"])
        for optimizer, saved in ((self.opt, state["opt_vae"]), (self.opt_disc, state["opt_disc"])):
            optimizer.load_state_dict(saved)
            match_parameter_layouts(optimizer)
        for scheduler, saved in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        self.goals = copy.deepcopy(state["goals"])
        self.calibrated = state["calibrated"]
        self.calibrator.rows = copy.deepcopy(self._own_calibration_rows(state))
        self.tightener.load_state_dict(state["tightener"])
        if "multipliers" in state:  # (absent from earlier checkpoints: none was used)
            self.multipliers.load_state_dict(state["multipliers"])
        self.history = copy.deepcopy(state["history"])
        self.lbo_batches, self.failed_in_a_row = state["lbo_batches"], state["failed_in_a_row"]
        # (absent from checkpoints of earlier versions: they resume as if it were not)
        self.disc_version = int(state.get("disc_updated_since_evaluation", False))
        self._evaluated_disc_version = 0
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])


    def _own_calibration_rows(self, state):
        """This rank's calibration records: its own from a DDP run stopped in calibration,
        else the checkpoint's (a single process's, or every rank's once calibrated)."""
        return self._own_share(state, "calibration_rows", "during calibration")

    def own_epoch_stats(self, state):
        """This rank's statistics of the epoch under way at a mid-epoch checkpoint: its own
        from a DDP run, so that the epoch's sums over ranks count every shard once."""
        return self._own_share(state, "epoch_stats", "in the middle of an epoch")

    def _own_share(self, state, key, when):
        by_rank = state.get(f"{key}_by_rank")  # (absent from earlier checkpoints)
        if not by_rank:
            return state[key]
        if len(by_rank) != self.context.world:
            raise UserError(f"the checkpoint was interrupted {when} with {len(by_rank)} "
                            f"processes; resume it with {len(by_rank)} "
                            f"(torchrun --nproc_per_node={len(by_rank)}), or start afresh")
        return by_rank[self.context.rank]


def zero_fill_missing_grads(module):
    """Give every parameter outside the back-propagated graph an exact zero gradient.

    Only the bottleneck group is back-propagated, so parameters outside its graph (the whole
    decoder when `latent` is the bottleneck) have no .grad, and AdamW would skip them. The
    full -log(min S) gives them a zero gradient and AdamW still moves them (momentum, weight
    decay): with the zero, the update is exactly that of the full loss."""
    for param in module.parameters():
        if param.grad is None and param.requires_grad:
            param.grad = torch.zeros_like(param)


def match_parameter_layouts(optimizer):
    """Give each optimizer state tensor its parameter's memory format. load_state_dict keeps
    the saved layout (and shares the saved tensors); Adam's moments in NCHW beside
    channels-last parameters made every optimizer step about twice as slow."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape \
                    and value.stride() != param.stride():
                state[key] = torch.empty_like(param).copy_(value)


def describe_violation(goals, evaluation):
    """Why a step was refused: non-finite measures, violated groups, failing goals (score <=
    0.01), the bottleneck and the groups in the danger zone (score <= 0.05)."""
    parts = []
    if evaluation.nonfinite:
        parts.append("non-finite " + ", ".join(evaluation.nonfinite))
    if evaluation.violated:
        parts.append("violated " + ", ".join(evaluation.violated))
    failing = [f"{g['name']} {evaluation.goal_scores[g['name']]:.2e}" for g in goals
               if evaluation.goal_scores[g["name"]] <= FAILING_GOAL_SCORE]
    if failing:
        parts.append("failing goals: " + ", ".join(failing))
    parts.append(f"bottleneck {GROUPS[evaluation.bottleneck]}")
    danger = [f"{g} {s:.3f}" for g, s in zip(GROUPS, evaluation.group_scores)
              if s <= DANGER_GROUP_SCORE]
    if danger:
        parts.append("danger zone: " + ", ".join(danger))
    return "; ".join(parts)


def prepare_output_dir(name):
    out = Path(name)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_test.{os.getpid()}"  # one per process: ranks run this at once
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise UserError(f"output_dir = {name!r} is not writable ({err.strerror}); "
                        "choose another with --output_dir PATH") from None
    return out


def print_header(cfg, trainer, device, data_description, batches, world):
    def millions(module):
        return sum(p.numel() for p in module.parameters()) / 1e6

    switches = [name for name, on in (
        ("channels-last", cfg.channels_last), ("torch.compile", cfg.compile),
        ("guard checks on the next batch", cfg.guard_check == "next-batch")) if on]
    modes = f" ({', '.join(switches)})" if switches else ""
    ranks = f" x {world} processes (DDP)" if world > 1 else ""
    print(f"BOM VAE v15 | device {device}{modes}{ranks}")
    print(f"data: {data_description}; {batches} batches of {cfg.batch_size} per epoch"
          + (" per process" if world > 1 else ""))
    print(f"model: VAE {millions(trainer.vae):.2f} M params (latent {cfg.latent_dim} = "
          f"{cfg.core_dim} core + {cfg.detail_dim} detail), discriminator "
          f"{millions(trainer.disc):.2f} M")
    print(f"precision: {trainer.precision.description}")
    print(f"perceptual: {trainer.perceptual.description}")
    print(f"output: {cfg.output_dir}")


def open_tensorboard(cfg, out):
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("TensorBoard logs off: `pip install tensorboard` to have them "
              "(metrics.jsonl is written regardless)")
        return None
    return SummaryWriter(str(out / "tensorboard"))


EPOCH_PICTURE_IMAGES = 8  # held-out images in each epoch's picture


@torch.no_grad()
def epoch_picture(vae, heldout, device):
    """One grid, on the CPU: the first held-out images, their reconstructions, and their swaps
    (each image's core with the next one's detail), a row each. Eval mode, one small batch."""
    x = first_images(heldout, EPOCH_PICTURE_IMAGES).to(device)
    vae.eval()
    core, detail = vae.encode(x)
    recon = vae.decode(core, detail)
    swap = vae.decode(core, detail.roll(-1, 0))
    vae.train()
    return make_grid(torch.cat([x, recon, swap]).clamp(0, 1).cpu(), nrow=len(x))


def log_epoch(writer, record, picture):
    """The epoch's numbers as scalars, and its picture (epoch_picture) as an image."""
    epoch = record["epoch"]
    for key, value in record.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f"epoch/{key}", value, epoch)
    for key in ("groups", "bottleneck"):
        for group, value in record[key].items():
            writer.add_scalar(f"epoch_{key}/{group}", value, epoch)
    writer.add_image("originals_reconstructions_swaps", picture, epoch)
    writer.flush()


class InterruptRequest:
    signum = None

    @property
    def requested(self):
        return self.signum is not None


@contextlib.contextmanager
def interrupt_requests():
    """SIGINT (Ctrl-C, Colab's stop button) and SIGTERM ask the loop to finish the current
    step, save a checkpoint and exit; a second Ctrl-C quits at once."""
    request = InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request  # signal handlers can only be installed from the main thread
        return

    def handle(signum, frame):
        if request.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.signum = signum
        tqdm.write(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step "
                   "(Ctrl-C again to quit at once)")
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Interrupted(Exception):
    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + signum


def read_or_fall_back(path, say):
    """The checkpoint at `path`, or, when it is missing or cannot be read, the one saved before
    it (checkpoint.prev.pt), with one line saying so."""
    previous = previous_path(path)
    if not path.exists() and not previous.exists():
        raise UserError(f"--resume: no checkpoint at {path}; run without --resume to start "
                        "afresh, or pass --resume PATH")
    try:
        return path, read_checkpoint(path)
    except UserError as err:
        if not previous.exists():
            raise
        state = read_checkpoint(previous)
        say(f"{err}; using the checkpoint saved before it, {previous}")
        return previous, state


def read_resume_checkpoint(cfg, out, say):
    path = out / "checkpoint.pt" if cfg.resume == "latest" else Path(cfg.resume)
    path, state = read_or_fall_back(path, say)
    saved = configs.from_dict(state["config"])
    # epochs may change: the run is extended (or cut short), its schedule re-planned.
    changed = [k for k in configs.differing_fields(cfg, saved) if k != "epochs"]
    if changed:
        what = ", ".join(f"{k} (checkpoint {getattr(saved, k)!r}, now {getattr(cfg, k)!r})"
                         if k != "goals" else "goals (the goal table in configs.py)"
                         for k in changed)
        raise UserError(f"checkpoint {path} was trained with other settings: {what}. Resume "
                        "with the same settings, or start a fresh run in another --output_dir")
    done, started = state["next_epoch"] - 1, state["next_batch"] > 0
    if cfg.epochs < done + started:  # an epoch under way is finished first
        under_way = f" and is in epoch {done + 1}" if started else ""
        raise UserError(f"--epochs {cfg.epochs}: checkpoint {path} has already trained {done} "
                        f"epochs{under_way}; resume with --epochs {done + started} or more "
                        f"(it was planned for {saved.epochs})")
    return path, state


# Kept on the schedulers, whose state_dict holds every attribute: a later resume, and every
# later epoch's metrics.jsonl record, still say that the schedule was re-planned, and where.
REPLANNED = "schedule_replanned_at_epoch"


def replan_epochs(trainer, state, say):
    """Continue a run for cfg.epochs instead of the checkpoint's epochs. CosineAnnealingLR's
    recursive form multiplies lr - min_lr by (1 + cos(pi t / T)) / (1 + cos(pi (t-1) / T))
    each epoch, so with T_max = the new total it goes on from the current lr (no jump) and
    lands exactly on min_lr at the new last epoch (the factor there is 0); left at the old
    T_max, an extended run would restart the cosine and climb back towards lr. A run at its
    old end (lr = min_lr) so stays at min_lr."""
    cfg, planned = trainer.cfg, state["config"]["epochs"]
    done = state["next_epoch"] - 1
    if cfg.epochs == planned:
        return
    if trainer.history and trainer.history[-1]["stop"]:
        say(f"--epochs {cfg.epochs} (was {planned}): the run already stopped after epoch "
            f"{done} ({trainer.history[-1]['decision']}); epochs is a maximum, so nothing more "
            "is trained: the stopped run is evaluated as it is")
        return
    if cfg.epochs == done and not state["next_batch"]:
        say(f"--epochs {cfg.epochs} (was {planned}): all {done} epochs are trained; nothing "
            "more to train: the run is evaluated as it is")
        return
    lr = trainer.opt.param_groups[0]["lr"]
    if cfg.lr_schedule == "constant":
        say(f"--epochs {cfg.epochs} (was {planned}): the lr stays at {lr:.3g} (constant "
            "schedule) to the new last epoch")
        return
    for scheduler in trainer.schedulers:
        scheduler.T_max = cfg.epochs
        setattr(scheduler, REPLANNED, state["next_epoch"])
    course = f"stays at min_lr {lr:.3g} to epoch {cfg.epochs}" if lr == cfg.min_lr else \
        f"goes on from {lr:.3g} along a cosine to min_lr {cfg.min_lr:.3g} at epoch {cfg.epochs}"
    say(f"--epochs {cfg.epochs} (was {planned}): learning-rate schedule re-planned at epoch "
        f"{state['next_epoch']}: the lr {course}; from here on the run is not bit-identical "
        "to a straight one")


def heldout_record(trainer, heldout):
    """Held-out MSE and SSIM after an epoch (eval mode, decode(mu), epoch_eval_images images),
    and how much the last fifth of the epochs improved the MSE."""
    cfg = dataclasses.replace(trainer.cfg, eval_images=trainer.cfg.epoch_eval_images)
    trainer.vae.eval()
    with torch.no_grad():
        result = reconstruction_metrics(trainer.vae, heldout, cfg, trainer.device, trainer.amp)
    trainer.vae.train()
    mses = [r["heldout_mse"] for r in trainer.history[:-1] if "heldout_mse" in r]
    gain, window = recent_gain(mses + [result["mse"]])
    return {"heldout_images": result["images"], "heldout_mse": result["mse"],
            "heldout_ssim": result["ssim"], "heldout_recent_gain": gain,
            "heldout_recent_epochs": window}


def save_mid_epoch(trainer, epoch, stats, path):
    save_checkpoint(trainer.state_dict(epoch, trainer.position, stats), path)


def write_epoch_outputs(trainer, record, heldout, out):
    """The end of an epoch on disk: its metrics.jsonl line, the summary, the checkpoint, and
    epochs/epoch_NNN.png, so that a long run can be watched learning without TensorBoard."""
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(format_summary(record, trainer.cfg.epochs), flush=True)
    save_checkpoint(trainer.state_dict(record["epoch"] + 1), out / "checkpoint.pt")
    picture = epoch_picture(trainer.vae, heldout, trainer.device)
    (out / "epochs").mkdir(exist_ok=True)
    save_image(picture, out / "epochs" / f"epoch_{record['epoch']:03d}.png")
    if trainer.writer:
        log_epoch(trainer.writer, record, picture)


def on_rank_zero(context, device, work):
    """Rank 0's writes (checkpoint, logs), and every rank told whether they failed: a rank
    left waiting in the next collective for a rank 0 that has stopped would hang until the
    process group times out (30 minutes) instead of stopping with the reason."""
    error = None
    if context.main:
        try:
            work()
        except Exception as err:  # raised below, once the other ranks know
            error = err
    if distributed.any_rank(context, [error is not None], device)[0]:
        if error is not None:
            try:
                raise error
            finally:
                # The error's traceback holds this frame, whose `error` holds the error: a
                # cycle that would keep the callers' trainer (its DDP wrapper, the process
                # group's work) alive into the interpreter's teardown, where gloo can abort.
                del error
        raise UserError("rank 0 could not write the run's outputs and stopped (its message "
                        "says why); this rank stops too")


def train(cfg):
    context = distributed.init(cfg.device)
    device = resolve_device(cfg.device)
    if context.active and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    train_set, heldout, data_description = build_datasets(cfg)
    out = prepare_output_dir(cfg.output_dir)
    trainer = Trainer(cfg, device, context)
    say = print if context.main else (lambda *args, **kwargs: None)
    checkpoint_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    next_epoch, next_batch, stats_state = 1, 0, None
    if cfg.resume:
        path, state = read_resume_checkpoint(cfg, out, say)
        trainer.load_state_dict(state)
        next_epoch, next_batch, stats_state = (state["next_epoch"], state["next_batch"],
                                               trainer.own_epoch_stats(state))
        say(f"resuming from {path}: epoch {next_epoch}, batch {next_batch + 1}")
        replan_epochs(trainer, state, say)
    elif checkpoint_path.exists():
        say(f"starting afresh: {checkpoint_path} will be replaced (--resume continues it)")
    if context.active:  # each rank its own random draws (rank 0 as in a single process)
        torch.manual_seed(cfg.seed + 1000003 * context.rank + 7919 * next_epoch + next_batch)
    shard = (context.rank, context.world)
    if context.main:
        # metrics.jsonl always matches the history being continued (lines of epochs after
        # the checkpoint, from a run that crashed, are dropped).
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in trainer.history))
        print_header(cfg, trainer, device, data_description,
                     len(make_loader(train_set, cfg, train=True, shard=shard)), context.world)
    trainer.writer = open_tensorboard(cfg, out) if context.main else None
    finished = bool(trainer.history) and trainer.history[-1]["stop"]
    with interrupt_requests() as interrupt:
        for epoch in range(next_epoch, cfg.epochs + 1):
            if finished:
                break
            loader = make_loader(train_set, cfg, train=True, epoch=epoch, start_batch=next_batch,
                                 shard=shard)
            stats = EpochStats()
            if stats_state:
                stats.load_state_dict(stats_state, device)
            record = trainer.train_epoch(loader, epoch, stats, next_batch, interrupt)
            if record is None:
                on_rank_zero(context, device, functools.partial(
                    save_mid_epoch, trainer, epoch, stats, checkpoint_path))
                raise Interrupted(f"interrupted in epoch {epoch} after batch "
                                  f"{trainer.position}; checkpoint saved to {checkpoint_path}. "
                                  "Continue with the same command plus --resume",
                                  interrupt.signum or signal.SIGTERM)
            next_batch, stats_state = 0, None
            if context.main and cfg.epoch_eval_images:
                record.update(heldout_record(trainer, heldout))
            replanned_at = getattr(trainer.schedulers[0], REPLANNED, None)
            if replanned_at:  # in the record (and so in history and metrics.jsonl) from then on
                record[REPLANNED] = replanned_at
            on_rank_zero(context, device, functools.partial(
                write_epoch_outputs, trainer, record, heldout, out))
            finished = record["stop"]
            if finished:
                say(f"STOPPING after epoch {epoch}: {record['decision']}")
    if trainer.writer:
        trainer.writer.close()
    if not context.main:
        return trainer
    try:
        finish(trainer, heldout, out)
    except Exception as err:  # the model is safe on disk: say so rather than only crash
        traceback.print_exc()
        raise UserError(f"evaluation or pictures failed ({type(err).__name__}: {err}); the "
                        f"trained model is safe in {checkpoint_path}: redraw with "
                        f"python evaluate.py {checkpoint_path}") from None
    return trainer


def finish(trainer, heldout, out):
    """Evaluate on held-out images, draw the pictures and write report.md; the checkpoint is
    already on disk, so a failure here loses nothing (python evaluate.py redraws them)."""
    results = evaluate_run(trainer.vae, trainer.cfg, heldout, trainer.history, out,
                           trainer.device, trainer.amp)
    for line in summary_lines(results):
        print(line)


def main(argv=None):
    cfg = None
    try:
        cfg = configs.parse_args(sys.argv[1:] if argv is None else argv)
        train(cfg)
    except configs.HelpRequested:
        print(configs.help_text(), end="")
    except Interrupted as err:
        print(str(err), file=sys.stderr)
        return err.exit_code
    except TrainingStalled as err:
        print(f"training stopped: {err}", file=sys.stderr)
        return 3
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError is newer than torch 2.3
        print(f"error: out of GPU memory at batch_size {cfg.batch_size}; lower it, e.g. "
              f"--batch_size {max(cfg.batch_size // 2, 2)} (a run resumes only with its own "
              "batch size: start the smaller one afresh in another --output_dir)",
              file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        return 130
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
