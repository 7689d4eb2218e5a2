"""The two control loops of LBO training: the per-step rollback guard and the epoch-level
adaptive tightener (docs/design.md, "The method in a page")."""
import copy
import math

import torch

from configs import GROUPS
from losses import tighten


class RollbackGuard:
    """Snapshot of everything an optimizer step changes (parameters, buffers such as BatchNorm
    running statistics, optimizer state), restorable bit for bit.

    The snapshot lives in tensors allocated once and refilled in place each step, so the
    guard allocates nothing per step after the optimizer state exists (the first step)."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self._saved = None
        self._had_optimizer_state = False

    def _live_tensors(self):
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                state = self.optimizer.state.get(param, {})
                tensors += [state[k] for k in sorted(state) if torch.is_tensor(state[k])]
        return tensors

    def snapshot(self):
        live = self._live_tensors()
        self._had_optimizer_state = bool(self.optimizer.state)
        if self._saved is None or len(self._saved) != len(live):
            self._saved = [t.detach().clone() for t in live]
        else:
            with torch.no_grad():
                torch._foreach_copy_(self._saved, live)

    @property
    def snapshot_bytes(self):
        return sum(t.nbytes for t in self._saved or [])

    def restore(self):
        if not self._had_optimizer_state:
            # The rejected step was the optimizer's first: going back means no state at all
            # (Adam's moments and step count start from scratch on the next accepted step).
            self.optimizer.state.clear()
        live = self._live_tensors()
        with torch.no_grad():
            torch._foreach_copy_(live, self._saved[:len(live)])


class Tightener:
    """Makes the goals stricter, epoch by epoch, until the rollback rate reaches the target.

    From `tighten_start_epoch`, at the end of each epoch:
      * one epoch after the rate first reached the target: stop;
      * the previous epoch tightened and the rate jumped above `backoff_rollback_rate`:
        restore the table from before that tightening and continue with a gentler rate;
      * rate >= target: record the epoch (hold the goals; training stops after one more);
      * otherwise: tighten every goal by the current rate.
    """

    def __init__(self, cfg):
        self.start_epoch = cfg.tighten_start_epoch
        self.rate = cfg.tighten_rate
        self.target = cfg.target_rollback_rate
        self.backoff_threshold = cfg.backoff_rollback_rate
        self.backoff_factor = cfg.backoff_factor
        self.hit_epoch = None
        self.previous_goals = None
        self.tightened_last_epoch = False

    def end_epoch(self, epoch, rollback_rate, goals):
        """Apply the decision to `goals` in place; return (decision text, stop?)."""
        if epoch < self.start_epoch:
            return f"warm-up (tightening from epoch {self.start_epoch})", False
        if self.hit_epoch is not None and epoch > self.hit_epoch:
            return (f"stop: rollback rate reached {self.target:.0%} in epoch {self.hit_epoch}, "
                    "one more epoch done"), True
        if self.tightened_last_epoch and rollback_rate > self.backoff_threshold:
            goals[:] = copy.deepcopy(self.previous_goals)
            self.rate *= self.backoff_factor
            self.tightened_last_epoch = False
            return (f"backoff: rate {rollback_rate:.1%} > {self.backoff_threshold:.0%}, "
                    f"previous goal table restored, tightening rate now {self.rate:.2%}"), False
        self.tightened_last_epoch = False
        if rollback_rate >= self.target:
            self.hit_epoch = epoch
            return (f"hold: rate {rollback_rate:.1%} >= {self.target:.0%}, "
                    "stopping after next epoch"), False
        self.previous_goals = copy.deepcopy(goals)
        tighten(goals, self.rate)
        self.tightened_last_epoch = True
        return f"tighten x{1 - self.rate:.4g} (rate {rollback_rate:.1%} < {self.target:.0%})", False

    def state_dict(self):
        return {"rate": self.rate, "hit_epoch": self.hit_epoch,
                "previous_goals": copy.deepcopy(self.previous_goals),
                "tightened_last_epoch": self.tightened_last_epoch}

    def load_state_dict(self, state):
        self.rate = state["rate"]
        self.hit_epoch = state["hit_epoch"]
        self.previous_goals = copy.deepcopy(state["previous_goals"])
        self.tightened_last_epoch = state["tightened_last_epoch"]


class GroupMultipliers:
    """One Lagrange multiplier per goal group, for objective = multipliers. The loss is the
    Lagrangian of the sum control under the constraints l_g = -log S_g <= kappa, kappa =
    -log(multiplier_target): every group weighs 1 + lambda_g (losses.weighted_group_loss).
    As in GECO (Rezende & Viola 2018, "Taming VAEs") each constraint is followed by its moving
    average; its multiplier takes a projected dual step, lambda <- max(0, lambda + rate x
    average), so a group's multiplier falls back to 0 while it is satisfied, and the target
    decides which groups get more than the sum's weight.

    Updated after every accepted step from that step's group scores (the same on every rank
    under DDP), kept in the checkpoint."""

    MOVING_AVERAGE = 0.99  # GECO's alpha: the constraint's average over about 100 steps
    MAXIMUM = 1e3          # lambda's ceiling, so that no group swamps the others for good

    def __init__(self, cfg):
        self.kappa = -math.log(cfg.multiplier_target)
        self.rate = cfg.multiplier_rate
        self.values = [0.0] * len(GROUPS)
        self.average = [None] * len(GROUPS)  # the constraints' moving averages

    def update(self, group_scores, group_sizes):
        for g, (score, size) in enumerate(zip(group_scores, group_sizes)):
            if not size:  # a dropped group: no constraint
                continue
            constraint = -math.log(max(score, 1e-300)) - self.kappa
            previous = self.average[g]
            self.average[g] = constraint if previous is None else \
                self.MOVING_AVERAGE * previous + (1 - self.MOVING_AVERAGE) * constraint
            self.values[g] = min(max(self.values[g] + self.rate * self.average[g], 0.0),
                                 self.MAXIMUM)

    def state_dict(self):
        return {"values": list(self.values), "average": list(self.average)}

    def load_state_dict(self, state):
        self.values, self.average = list(state["values"]), list(state["average"])
