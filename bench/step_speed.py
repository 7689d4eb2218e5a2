"""Speed of one guarded LBO training step: this project's step against a naive reference.

    python bench/step_speed.py [--batch N] [--steps 12] [--warmup 3] [--device cpu|cuda]
                               [--variants naive,ours,ours+compile] [--preset demo]
    python bench/step_speed.py --variants demo:ours+channels_last,study:ours+channels_last

A step is what training does per batch after calibration: the LBO forward and backward, the
rollback guard's snapshot, the look-ahead (and the restore when it refuses), plus the
discriminator update every `disc_every` batches. Variants, all from the same calibrated
state, on the same pre-generated batches of the built-in dataset, interleaved step by step
so that machine noise hits all of them alike:

  naive   the straightforward design this project replaces, kept here as the baseline:
          a clone of the whole state dict and a deep copy of the optimizer state every step,
          the loss as -min over every group (backward through the whole graph), a look-ahead
          in training mode that recomputes the real batch's perceptual features and updates
          BatchNorm statistics, and a second VAE forward to make the discriminator's fakes
  ours    Trainer.lbo_step + Trainer.discriminator_step, exactly what train.py runs
  ours+amp, ours+channels_last, ours+compile   ours with that switch on (more than one may
          be joined: ours+amp+channels_last); `ours` alone has all three off. amp acts on
          CUDA only
  ours+next_batch   ours with guard_check = next-batch: the next step's forward checks an
          update, there is no look-ahead. Such a variant carries its state from step to step
          (the check needs the previous step's update), where the others start every step
          from the same state: its bottlenecks and decisions may differ from theirs (an
          update is checked under the next step's goal table). Its FLOPs are counted on
          steps without a pending update

A variant may name a preset before a colon (demo:ours): it then runs that preset's model,
image size and batch size (--batch, when given, sets every variant's batch), on batches and a
calibrated state of its own; a variant without one runs --preset. Variants of different
presets are compared by images/s and by FLOPs per image.

The perceptual network has VGG16's layout with random weights (--features vgg16): the real
network's cost without its download.

Reports images/s, the ratio to naive, each phase's share of step time, peak memory, and the
FLOPs a step needs (counted with torch.utils.flop_counter) against the device's measured
peak. The batches are in memory: bench/data_throughput.py measures the data path.
Writes bench/results/step_speed_<device>.{md,json}.
"""
import argparse
import contextlib
import copy
import datetime
import json
import resource
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import configs  # noqa: E402
import train  # noqa: E402
from configs import GROUPS  # noqa: E402
from data import build_datasets  # noqa: E402
from machine import cpu_machine  # noqa: E402
from losses import draw_step, evaluate_goals, forward_measures  # noqa: E402
from models import vgg16_trunk  # noqa: E402
from precision import resolve_device  # noqa: E402
from summary import EpochStats  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SWITCHES = ("amp", "channels_last", "compile", "next_batch")
LOOSER_SCALES = 10.0
# The groups the timed steps make the bottleneck, in turn, and the factor on that group's
# MINIMIZE scales that does it (latent already is the bottleneck of the widened table).
BOTTLENECKS = {"latent": 1.0, "recon": 0.01, "realism": 0.01}


def device_sync(device):
    """A function that waits until `device` has finished its queued work."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


class PhaseTimer:
    """Wall time per named phase. On CUDA it waits for the GPU at each boundary, so that a
    phase is charged its own kernels; that slows a step, so on CUDA the phases are timed in a
    pass of their own, apart from the timed steps."""

    def __init__(self, device):
        self.seconds = Counter()
        self.sync = device_sync(device)

    @contextlib.contextmanager
    def phase(self, name):
        self.sync()
        started = time.perf_counter()
        yield
        self.sync()
        self.seconds[name] += time.perf_counter() - started


def our_step(trainer, x, stats, step):
    # lbo_step counts the batch and updates the discriminator on an accepted step whose count
    # is a multiple of disc_every: the bench's step numbers are that count.
    trainer.lbo_batches = step - 1
    trainer.lbo_step(x, stats, f"bench step {step}", lambda line: None)


def naive_step(trainer, x, stats, step):
    """The straightforward guarded step (see the module docstring); same goals, same data."""
    cfg, vae, opt, phase = trainer.cfg, trainer.vae, trainer.opt, trainer.phase
    with phase("snapshot"):
        saved_vae = {k: v.clone() for k, v in vae.state_dict().items()}
        saved_opt = copy.deepcopy(opt.state_dict())

    def restore():
        with phase("restore"):
            vae.load_state_dict(saved_vae)
            opt.load_state_dict(saved_opt)

    with phase("forward"):
        draws = draw_step(x, cfg)
        real = trainer.real_stats(x)
        fwd = forward_measures(trainer.nets, x, real, draws, trainer.amp)
        before = evaluate_goals(trainer.goals, fwd.measures)
    if not before.ok:
        restore()
        stats.add_refused(before, rolled_back=False)
        return
    with phase("backward"):
        group_log_scores = torch.stack([
            torch.stack([before.log_scores[g["name"]] for g in trainer.goals
                         if g["group"] == group]).mean() for group in GROUPS])
        loss = -group_log_scores.min()
        opt.zero_grad(set_to_none=True)
        loss.backward()
    with phase("optimizer"):
        opt.step()
    with phase("look-ahead"), torch.no_grad():
        real = trainer.real_stats(x)
        after = evaluate_goals(trainer.goals, forward_measures(
            trainer.nets, x, real, draws, trainer.amp).measures)
    if not after.ok:
        restore()
        stats.add_refused(before, rolled_back=True)
        return
    stats.add_accepted(before, fwd.mu_variance)
    if step % cfg.disc_every == 0:  # as in training: accepted steps only
        with phase("discriminator VAE re-forward"), torch.no_grad(), trainer.amp():
            mu, logvar = vae.posterior(x)
            fake = vae.decode_latent(vae.reparameterize(mu, logvar, torch.randn_like(mu)))
        trainer.discriminator_step(x, fake, stats)


class Variant:
    """One way of taking a step. Every step starts from the same calibrated state with the
    same batch and the same random seed in every variant, so all variants do the same work
    (same bottleneck group, hence the same backward; same refusals): the times differ only
    by how the step is implemented. Not so for a chained (+next_batch) variant: its steps
    start from its own previous step, whose update is checked under this step's goal table,
    so its work and decisions may differ."""

    def __init__(self, name, trainer, step, state, setup):
        self.name, self.trainer, self.step, self.state = name, trainer, step, state
        self.setup = setup  # its preset's Setup: batches, plan, batch size
        self.chained, self.steps_run = trainer.cfg.guard_check == "next-batch", 0
        self.stats, self.step_seconds, self.step_peak_bytes = EpochStats(), [], 0
        self.phase_seconds, self.phase_pass_seconds, self.warmup_seconds = Counter(), 0.0, 0.0

    def reset(self, seed, goals, state=True):
        if state:
            # A copy: the optimizer adopts the loaded state's tensors and updates them in place.
            self.trainer.load_state_dict(copy.deepcopy(self.state))
            self.trainer.pending = None
        self.trainer.goals = copy.deepcopy(goals)
        torch.manual_seed(seed)

    def take_step(self, x, step, stats):
        trainer = self.trainer
        self.step(trainer, x.to(trainer.device, memory_format=trainer.memory_format), stats,
                  step)

    def run(self, x, seed, goals, step, timed, phases):
        """One step from the bench state. timed: its wall time is measured (else a warm-up or
        phase-pass step); phases: the phase timer is on."""
        device, sync = self.trainer.device, device_sync(self.trainer.device)
        self.trainer.timer = PhaseTimer(device) if phases else None
        self.reset(seed, goals, state=not (self.chained and self.steps_run))
        self.steps_run += 1
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            resident = torch.cuda.memory_allocated(device)
        sync()
        started = time.perf_counter()
        self.take_step(x, step, self.stats if timed else EpochStats())
        sync()
        seconds = time.perf_counter() - started
        if timed:
            self.step_seconds.append(seconds)
        elif not phases:
            self.warmup_seconds += seconds
        if phases:
            self.phase_seconds.update(self.trainer.timer.seconds)
            self.phase_pass_seconds += seconds
        if device.type == "cuda":
            self.step_peak_bytes = max(self.step_peak_bytes,
                                       torch.cuda.max_memory_allocated(device) - resident)

    def peak_bytes(self):
        """Device memory one training process would need: what this variant keeps between
        steps (networks, gradients, optimizer states, the guard's snapshot) plus the most a
        step allocated on top. The other variants' trainers share the device in this bench,
        so the device-wide peak would overstate it."""
        t = self.trainer
        nets = (t.vae, t.disc, t.perceptual)
        kept = [*(x for n in nets for x in (*n.parameters(), *n.buffers())),
                *(p.grad for n in nets for p in n.parameters() if p.grad is not None),
                *(v for o in (t.opt, t.opt_disc) for s in o.state.values()
                  for v in s.values() if torch.is_tensor(v))]
        snapshots = sum(guard.snapshot_bytes for guard in t.guards)  # two in next-batch mode
        return sum(x.nbytes for x in kept) + snapshots + self.step_peak_bytes

    def flops_per_step(self, plan):
        """FLOPs of the timed steps (discriminator updates included), counted, not estimated:
        the same steps again under torch.utils.flop_counter."""
        with FlopCounterMode(display=False) as counter:
            for x, seed, goals, step in plan:
                self.reset(seed, goals)
                self.take_step(x, step, EpochStats())
        return counter.get_total_flops() / len(plan)


def batch_size(args, preset, device):
    """--batch when given, else the preset's batch size (no preset: 16 on a CPU, 256 on CUDA)."""
    if args.batch:
        return args.batch
    if preset:
        return configs.parse_args(["--preset", preset]).batch_size
    return 256 if device.type == "cuda" else 16


def build_config(args, preset, batch, switches=()):
    words = ["--preset", preset] if preset else ["--perceptual", "random"]
    words += ["--dataset", "synthetic", "--batch_size", str(batch), "--device", args.device,
              "--calibration_batches", "4", "--synthetic_size", str(batch * 4),
              "--output_dir", "/tmp/step_speed_bench", "--num_workers", "0"]
    for name in ("amp", "channels_last", "compile"):
        words += [f"--{name}", "true" if name in switches else "false"]
    if "next_batch" in switches:
        words += ["--guard_check", "next-batch"]
    return configs.parse_args(words)


def build_trainer(args, setup, device, switches=()):
    trainer = train.Trainer(build_config(args, setup.preset, setup.batch, switches), device)
    if args.features == "vgg16":
        # VGG16's layers with random weights: the real network's cost, without its download.
        trainer.perceptual.net = vgg16_trunk().requires_grad_(False).to(
            device, memory_format=trainer.memory_format)
    return trainer


def parse_variants(args):
    """[(name, preset, base, switches)] from --variants."""
    names, parsed = args.variants.split(","), []
    if len(set(names)) != len(names):
        sys.exit(f"--variants: a name is given twice in {args.variants!r}")
    for name in names:
        preset, _, spec = name.rpartition(":")
        preset = preset or args.preset
        if preset and preset not in configs.PRESETS:
            sys.exit(f"--variants: unknown preset {preset!r} in {name!r}; presets: "
                     f"{', '.join(configs.PRESETS)}")
        base, *switches = spec.split("+")
        unknown = [s for s in switches if s not in SWITCHES] + \
            ([base] if base not in ("naive", "ours") else [])
        if unknown:
            sys.exit(f"--variants: unknown {', '.join(unknown)} in {name!r}; use naive or ours, "
                     f"optionally with +{', +'.join(SWITCHES)}, after an optional PRESET:")
        parsed.append((name, preset, base, switches))
    return parsed


class Setup:
    """What the variants of one preset share: batches, the calibrated state, the steps' plan
    of (batch, seed, goal table, step number)."""

    def __init__(self, args, preset, device):
        self.preset, self.batch = preset, batch_size(args, preset, device)
        train_set, _, _ = build_datasets(build_config(args, preset, self.batch))
        self.batches = [torch.stack([train_set[i * self.batch + j] for j in range(self.batch)])
                        for i in range(4)]
        self.state = calibrated_state(args, self, device)
        # The step number decides the discriminator updates. Both warm-up steps and timed
        # steps cycle through the bottleneck groups.
        self.plan = [(self.batches[step % len(self.batches)], 1000 + step,
                      goals_with_bottleneck(self.state["goals"],
                                            list(BOTTLENECKS)[step % len(BOTTLENECKS)]),
                      step)
                     for step in range(1, args.warmup + args.steps + 1)]


def make_variants(args, device):
    setups, variants = {}, []
    for name, preset, base, switches in parse_variants(args):
        if preset not in setups:
            setups[preset] = Setup(args, preset, device)
        setup = setups[preset]
        trainer = build_trainer(args, setup, device, switches)
        variants.append(Variant(name, trainer, naive_step if base == "naive" else our_step,
                                setup.state, setup))
    return variants


def calibrated_state(args, setup, device):
    """A trainer after calibration on the bench batches: every variant starts from it.

    The MINIMIZE scales are then widened x10, so that refusals are rare and the variants time
    full steps (after a 4-batch calibration of a fresh network, about half the steps were
    refused and skipped the backward pass). In that table `latent` is the bottleneck."""
    torch.manual_seed(0)
    trainer = build_trainer(args, setup, device)
    trainer.log = lambda line: None
    stats = EpochStats()
    for x in setup.batches[:trainer.cfg.calibration_batches]:
        trainer.calibration_step(x.to(device), stats)
    trainer.finish_calibration()
    for goal in trainer.goals:
        if goal["type"].startswith("MINIMIZE"):
            goal["scale"] *= LOOSER_SCALES
    return trainer.state_dict(2)


def goals_with_bottleneck(goals, group):
    """The goal table with `group` made the bottleneck (see BOTTLENECKS).

    Only the bottleneck group is back-propagated in our step, so its cost depends on the
    group: latent reaches the encoder only, recon the decoder (and the perceptual network),
    realism the decoder and the discriminator. The timed steps take these in turn."""
    goals = copy.deepcopy(goals)
    for goal in goals:
        if goal["group"] == group and goal["type"].startswith("MINIMIZE"):
            goal["scale"] *= BOTTLENECKS[group]
    return goals


def measured_peak(device):
    """The device's best measured FLOP/s: the faster of a large matmul and a large 3x3
    convolution (oneDNN's convolutions beat its matmul on some CPUs), in bf16 on CUDA (the
    tensor-core peak the AMP step can reach) and float32 on a CPU."""
    cuda = device.type == "cuda"
    dtype, n, repeats = (torch.bfloat16, 8192, 20) if cuda else (torch.float32, 2048, 5)
    sync = device_sync(device)

    def rate(fn, flops):
        for _ in range(2):
            fn()
        sync()
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
        return flops * repeats / (time.perf_counter() - started)

    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    images = torch.randn(64 if cuda else 16, 256, 32, 32, device=device, dtype=dtype)
    weight = torch.randn(256, 256, 3, 3, device=device, dtype=dtype)
    images, weight = (t.contiguous(memory_format=torch.channels_last) for t in (images, weight))
    conv_flops = 2 * images.shape[0] * 256 * 256 * 9 * 32 * 32
    best = max(rate(lambda: a @ b, 2 * n ** 3),
               rate(lambda: torch.nn.functional.conv2d(images, weight, padding=1), conv_flops))
    return best, str(dtype).split(".")[-1]


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_machine()


def summarise(variant, flops):
    batch, trainer = variant.setup.batch, variant.trainer
    seconds = sorted(variant.step_seconds)
    median = seconds[len(seconds) // 2]
    phases, phase_total = variant.phase_seconds, variant.phase_pass_seconds
    return {
        "images_per_second": batch * len(seconds) / sum(seconds),
        "median_step_ms": 1000 * median,
        "steps": len(seconds),
        "phase_ms_per_step": {k: 1000 * v / len(seconds) for k, v in phases.items()},
        "phase_share": {k: v / phase_total for k, v in phases.items()},
        "accepted": variant.stats.accepted, "rollbacks": variant.stats.rollbacks,
        "rejected": variant.stats.rejected,
        "bottlenecks": dict(variant.stats.bottlenecks + variant.stats.refused_bottlenecks),
        "warmup_seconds": variant.warmup_seconds,
        "peak_gpu_memory_gb": variant.peak_bytes() / 1e9 if variant.step_peak_bytes else None,
        "flops_per_step": flops,
        "preset": variant.setup.preset or "(full width)", "batch": batch,
        "image_size": trainer.cfg.image_size,
        "vae_params": sum(p.numel() for p in trainer.vae.parameters()),
        "disc_params": sum(p.numel() for p in trainer.disc.parameters()),
    }


def flops_per_image(row):
    return row["flops_per_step"] / row["batch"]


def baseline_of(rows):
    """The row every other is compared with: naive when it ran, else the first variant."""
    return "naive" if "naive" in rows else next(iter(rows))


def markdown(result):
    rows = result["variants"]
    base_name = baseline_of(rows)
    base = rows[base_name]
    phases = sorted({p for r in rows.values() for p in r["phase_ms_per_step"]},
                    key=lambda p: -max(r["phase_ms_per_step"].get(p, 0) for r in rows.values()))
    lines = [
        f"# Guarded LBO step speed ({result['device_kind']})", "",
        f"- machine: {result['machine']}", f"- command: `{result['command']}`",
        f"- date: {result['date']}, torch {result['torch']}",
        "- models: " + "; ".join(sorted({
            f"{r['preset']}: {r['image_size']}x{r['image_size']} images, VAE "
            f"{r['vae_params'] / 1e6:.2f} M params, discriminator {r['disc_params'] / 1e6:.2f} M"
            for r in rows.values()})) + f"; perceptual: {result['perceptual']}",
        f"- batch per variant in the table, {result['steps']} timed steps per variant after "
        f"{result['warmup']} warm-up steps, interleaved; discriminator update every "
        f"{result['disc_every']} steps (its cost is in the step time)",
        f"- peak: {result['peak_flops'] / 1e12:.2f} TFLOP/s, the best of a large "
        f"{result['peak_dtype']} matmul and 3x3 convolution measured in the same run",
        f"- goals: calibrated on 4 batches, then every MINIMIZE scale x{LOOSER_SCALES:g} so that "
        "steps are rarely refused and every variant times full steps; the steps push "
        f"{', '.join(BOTTLENECKS)} to be the bottleneck in turn (our backward pass covers the "
        "bottleneck group's graph only); the table says where each step's bottleneck was",
        "- every variant takes each step from the same state with the same batch and random "
        "seed, so they do the same work (the decision counts show whether they agreed); "
        "except +next_batch variants (guard_check = next-batch), which carry their state from "
        "step to step because the next step's forward checks each update, under the next "
        "step's goal table (their last update is left unchecked): their work is not matched "
        "to the others', compare their bottleneck and decision counts",
        f"- phases: {result['phases_timed']}",
        "- the batches are pre-generated in memory: the data path is not timed (see "
        "bench/results/data_throughput_cpu.md)", "",
        f"| variant | batch | images/s | vs {base_name} | predicted by FLOPs | median step (ms) "
        "| FLOPs/step | GFLOP/image | achieved TFLOP/s (% of peak) | peak GPU memory (one "
        "process) | accepted / rolled back / rejected | bottleneck groups |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        ratio = f"{r['images_per_second'] / base['images_per_second']:.2f}x"
        # What the change would buy if it only removed work: the baseline's FLOPs per image
        # over these.
        predicted = f"{flops_per_image(base) / flops_per_image(r):.2f}x" \
            if base["flops_per_step"] and r["flops_per_step"] else "-"
        if r["flops_per_step"]:
            achieved = r["flops_per_step"] * r["images_per_second"] / r["batch"]
            flops = (f"{r['flops_per_step'] / 1e9:.1f} G",
                     f"{flops_per_image(r) / 1e9:.2f}",
                     f"{achieved / 1e12:.3f} ({achieved / result['peak_flops']:.1%})")
        else:
            flops = ("-", "-", "-")
        memory = f"{r['peak_gpu_memory_gb']:.2f} GB" if r["peak_gpu_memory_gb"] else "-"
        lines.append(f"| {name} | {r['batch']} | {r['images_per_second']:.2f} | {ratio} | "
                     f"{predicted} | {r['median_step_ms']:.0f} | {' | '.join(flops)} | {memory} | "
                     f"{r['accepted']} / {r['rollbacks']} / {r['rejected']} | "
                     + ", ".join(f"{g} {n}" for g, n in sorted(r["bottlenecks"].items()))
                     + " |")
    lines += ["", "Time per step by phase, ms (share of the step):", "",
              "| phase | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for p in phases:
        cells = [f"{r['phase_ms_per_step'][p]:.0f} ({r['phase_share'][p]:.0%})"
                 if p in r["phase_ms_per_step"] else "-" for r in rows.values()]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["", f"Process peak RSS: {result['peak_rss_mb']:.0f} MB (all variants together)."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=0,
                        help="images per step, every variant (default: the preset's batch "
                        "size; without a preset 16 on a CPU, 256 on CUDA)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default="")
    parser.add_argument("--preset", default="", help="a configs.py preset (default: full width)")
    parser.add_argument("--features", choices=("vgg16", "small"), default="vgg16",
                        help="perceptual network: VGG16's layout with random weights (default), "
                        "or the small untrained one of --perceptual random")
    parser.add_argument("--output", default="", help="results file stem (default: by device)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if not args.variants:
        args.variants = "naive,ours,ours+channels_last,ours+channels_last+compile," \
            "ours+channels_last+next_batch" if device.type == "cpu" else \
            "naive,ours,ours+amp,ours+amp+channels_last,ours+amp+channels_last+compile," \
            "ours+amp+channels_last+next_batch"
    variants = make_variants(args, device)
    # On a CPU the phase timer costs nothing, so the timed steps record the phases too.
    phases_apart = device.type == "cuda"
    for i in range(args.warmup + args.steps):
        for variant in variants:
            x, seed, goals, step = variant.setup.plan[i]  # every plan numbers its steps alike
            timed = step > args.warmup
            variant.run(x, seed, goals, step, timed, phases=timed and not phases_apart)
        print(f"step {step}/{args.warmup + args.steps}: " + ", ".join(
            f"{v.name} {(v.step_seconds or [v.warmup_seconds])[-1]:.2f} s" for v in variants),
            flush=True)
    if phases_apart:
        for i in range(args.warmup, args.warmup + args.steps):
            for variant in variants:
                x, seed, goals, step = variant.setup.plan[i]
                variant.run(x, seed, goals, step, timed=False, phases=True)
    # Compiled code is not counted (the counter sees eager operators only).
    flops = {v.name: None if "compile" in v.name else
             v.flops_per_step(v.setup.plan[args.warmup:]) for v in variants}
    peak, peak_dtype = measured_peak(device)
    first = variants[0].trainer
    result = {
        "device_kind": device.type, "machine": device_name(device),
        "command": "python bench/step_speed.py " + shlex.join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "perceptual": "VGG16 layout to relu3_3, random weights (the real network's cost)"
        if args.features == "vgg16" else first.perceptual.description,
        "phases_timed": "in a separate pass of the same steps (the timer waits for the GPU at "
        "each phase boundary)" if phases_apart else "during the timed steps",
        "steps": args.steps, "warmup": args.warmup,
        "disc_every": first.cfg.disc_every, "peak_flops": peak, "peak_dtype": peak_dtype,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "variants": {v.name: summarise(v, flops[v.name]) for v in variants},
    }
    stem = RESULTS / (args.output or f"step_speed_{device.type}")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
