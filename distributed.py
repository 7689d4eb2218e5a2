"""Training on several GPUs (or CPU processes) with torchrun and DistributedDataParallel.

    torchrun --nproc_per_node=N train.py [settings]

Each process trains on its shard of every epoch. The decisions that must be global are
global: a step is refused (rejected or rolled back) on every rank when any rank's goals are
violated, so parameters never diverge; group scores and the bottleneck are averaged over
ranks; calibration uses the measures of all ranks; the rollback rate (and so tightening and
the early stop) counts global decisions. Only rank 0 writes checkpoints, logs and pictures.
BatchNorm running statistics stay per rank (rank 0's are saved), as usual with DDP.
"""
import dataclasses
import gc
import math
import os
from collections import Counter

import torch
import torch.distributed as dist

from configs import GROUPS
from losses import bottleneck_of


@dataclasses.dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self):
        return self.world > 1

    @property
    def main(self):
        return self.rank == 0


def init(device_setting):
    """The process group when launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context()
    use_cuda = torch.cuda.is_available() and device_setting != "cpu"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    context = Context(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))
    if use_cuda:
        torch.cuda.set_device(context.local_rank)
    return context


def any_rank(context, flags, device):
    """For each of `flags`: true on every rank when it is true on any rank (one all-reduce)."""
    if not context.active:
        return [bool(flag) for flag in flags]
    t = torch.tensor([float(flag) for flag in flags], device=device)
    dist.all_reduce(t)
    return [value > 0 for value in t.tolist()]


def global_evaluation(context, evaluation, device):
    """The evaluation every rank acts on: group log-scores averaged over ranks (the geometric
    mean), a group violated when it is violated on any rank, the bottleneck of the average.
    Log-scores and measures stay local: each rank back-propagates its own share."""
    if not context.active:
        return evaluation
    g = len(GROUPS)
    local = [s / n if n else 0.0 for s, n in zip(evaluation.group_log_sums,
                                                  evaluation.group_sizes)]
    flags = [float(group in evaluation.violated) for group in GROUPS]
    t = torch.tensor([*local, *flags, float(bool(evaluation.nonfinite))], device=device,
                     dtype=torch.float64)
    dist.all_reduce(t)
    means, flags, nonfinite = t[:g].tolist(), t[g:2 * g].tolist(), t[2 * g].item()
    violated = [group for group, flag in zip(GROUPS, flags) if flag > 0]
    scores = [math.exp(m / context.world) if group not in violated and math.isfinite(m)
              else 0.0 for group, m in zip(GROUPS, means)]
    return dataclasses.replace(
        evaluation, violated=violated, group_scores=scores,
        nonfinite=evaluation.nonfinite or (["(on another rank)"] if nonfinite > 0 else []),
        bottleneck=bottleneck_of(scores, evaluation.group_sizes))


def sum_over_ranks(context, stats, device):
    """Turn one rank's epoch sums (measures, goal scores, mu variances) into sums over every
    rank, in place, so that the epoch's means describe all shards, not rank 0's alone. The
    group scores and the bottleneck are global already (global_evaluation); the counts of
    accepted and refused steps are the same on every rank."""
    if not context.active:
        return
    names, warmup, goals = sorted(stats.measure_sums), sorted(stats.warmup_sums), \
        sorted(stats.goal_sums)
    t = torch.tensor([*(stats.measure_sums[n] for n in names),
                      *(stats.warmup_sums[n] for n in warmup),
                      *(stats.goal_sums[n] for n in goals), stats.measured],
                     dtype=torch.float64, device=device)
    dist.all_reduce(t)
    values = t.tolist()
    stats.measure_sums = Counter(dict(zip(names, values)))
    stats.measured = round(values[-1])  # the means divide by it: means over every rank
    # The warm-up's and the goal scores' means divide by counts that are the same on every
    # rank (calibration batches, accepted steps): divide the sums by the world instead.
    stats.warmup_sums = Counter({k: v / context.world
                                 for k, v in zip(warmup, values[len(names):])})
    stats.goal_sums = Counter({k: v / context.world
                               for k, v in zip(goals, values[len(names) + len(warmup):])})
    if stats.mu_variance_sum is not None:
        variance = stats.mu_variance_sum.clone()
        dist.all_reduce(variance)
        stats.mu_variance_sum = variance


def rows_by_rank(context, rows):
    """Every rank's calibration records: a list per rank, in rank order."""
    if not context.active:
        return [rows]
    everyone = [None] * context.world
    dist.all_gather_object(everyone, rows)
    return everyone


def gather_rows(context, rows):
    """Every rank's calibration records, in rank order, in one list."""
    return [row for part in rows_by_rank(context, rows) for row in part]


def barrier(context):
    if context.active:
        dist.barrier()


def shutdown():
    """Destroy the process group, if this process has one. Also on the error paths: left to
    the interpreter's exit after a peer has already gone, gloo's teardown can abort the
    process (SIGABRT) instead of letting it exit with the error's status."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # what only cycles still hold (a DDP wrapper, its work) goes first, now
        dist.destroy_process_group()
