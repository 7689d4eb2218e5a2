"""What a CPU test cannot show about the GPU path, each part short (bench/gpu_check.sh runs it):

    python bench/gpu_paths.py --device cuda [--parts resume,memory,compile,syncs,loader,measures]
    python bench/gpu_paths.py --device cpu --preset tiny --batch 8 --images 64   # its test

  resume    a run interrupted mid-epoch (SIGINT, as Ctrl-C) and resumed, against the same run
            straight: it must resume at all on the device, and how far the weights differ
  memory    peak device memory of LBO steps on the default 64x64 model at --batch, with and
            without refusals (every other batch rejected): a refused step must not keep its
            graph alive into the next one
  compile   torch.compile across calibration, LBO steps with rollbacks, look-aheads and
            evaluation: recompiles counted (TORCH_LOGS=recompiles logs them), and BatchNorm's
            running statistics unchanged by a look-ahead
  syncs     device-to-host syncs per LBO step, counted by torch.cuda.set_sync_debug_mode, for
            each guard mode (docs/speed.md says how many there should be, by reading)
  loader    the CelebA loader at --batch on a CelebA-shaped folder of generated 178x218
            JPEGs, decoding and from the preprocessed cache, with the copy to the device
  measures  every raw measure of one batch on the CPU and on the device (float32 with TF32
            off, and bf16 autocast), side by side

Parts that need CUDA (memory, syncs) say so and are skipped on a CPU. The perceptual network
is VGG16's layout with random weights (no download). Writes bench/results/gpu_paths_<device>.md
and .json (--output to write elsewhere).
"""
import argparse
import copy
import dataclasses
import datetime
import json
import logging
import shlex
import signal
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import configs  # noqa: E402
import data  # noqa: E402
import train  # noqa: E402
from data_throughput import write_jpegs  # noqa: E402  (bench/ is this script's folder)
from machine import cpu_machine, short_commit  # noqa: E402
from losses import draw_step, forward_measures  # noqa: E402
from precision import choose_precision  # noqa: E402
from summary import EpochStats  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("resume", "memory", "compile", "syncs", "loader", "measures")


def settings(args, *extra):
    return ["--preset", args.preset, "--device", args.device, "--perceptual", "random",
            *extra]


def trainer_for(words, device):
    cfg = configs.parse_args(words)
    torch.manual_seed(0)
    return train.Trainer(cfg, device)


def batches(cfg, count, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=generator)
            .to(device, memory_format=torch.channels_last) for _ in range(count)]


def calibrate(trainer, xs):
    for x in xs[:trainer.cfg.calibration_batches]:
        trainer.calibration_step(x, EpochStats())
    trainer.finish_calibration()


def refusing(every):
    """train.evaluate_goals with every `every`-th evaluation violated (recon)."""
    real, calls = train.evaluate_goals, [0]

    def evaluate(goals, measures):
        calls[0] += 1
        evaluation = real(goals, measures)
        return dataclasses.replace(evaluation, violated=["recon"]) \
            if every and calls[0] % every == 0 else evaluation
    return evaluate


# --- resume ---------------------------------------------------------------------------------
def check_resume(args, device, work):
    # Evaluation kept short: the runs are compared by their weights.
    words = settings(args, "--epochs", "2", "--epoch_eval_images", "0", "--eval_images", "256",
                     "--probe_images", "500", "--factor_vae_train", "0", "--fid_images", "16")
    straight, resumed = work / "straight", work / "resumed"
    assert train.main([*words, "--output_dir", str(straight)]) == 0
    epoch_1 = json.loads((straight / "metrics.jsonl").read_text().splitlines()[0])
    stop_at = epoch_1["steps"] + epoch_1["steps"] // 2  # mid-epoch 2
    real_step, count = train.Trainer.lbo_step, [0]

    def step(self, *a, **k):
        count[0] += 1
        if count[0] == stop_at:
            signal.raise_signal(signal.SIGINT)
        return real_step(self, *a, **k)
    train.Trainer.lbo_step = step
    try:
        code = train.main([*words, "--output_dir", str(resumed)])
    finally:
        train.Trainer.lbo_step = real_step
    assert code == 128 + signal.SIGINT, f"the interrupted run exited with {code}"
    assert train.main([*words, "--output_dir", str(resumed), "--resume"]) == 0
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True)["vae"] for d in (straight, resumed))
    largest = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    equal = all(torch.equal(a[k], b[k]) for k in a)
    mse = [json.loads((d / "metrics.jsonl").read_text().splitlines()[-1])["mse"]
           for d in (straight, resumed)]
    return {"interrupted_at_lbo_step": stop_at, "resumed": True, "weights_bit_equal": equal,
            "largest_weight_difference": largest, "last_epoch_mse_straight_resumed": mse}


# --- memory ---------------------------------------------------------------------------------
def check_memory(args, device, work):
    if device.type != "cuda":
        return {"skipped": "peak device memory needs CUDA"}
    words = ["--device", "cuda", "--perceptual", "random", "--batch_size", str(args.batch),
             "--calibration_batches", "2", "--output_dir", str(work / "memory")]
    result = {}
    for name, every in (("no refusals", 0), ("every other batch rejected", 2)):
        trainer = trainer_for(words, device)
        xs = batches(trainer.cfg, 2 + args.steps, device)
        calibrate(trainer, xs)
        real, train.evaluate_goals = train.evaluate_goals, refusing(every)
        try:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            stats, held = EpochStats(), None
            for i, x in enumerate(xs[2:]):
                held = trainer.lbo_step(x, stats, f"step {i}", lambda line: None)  # noqa: F841
            torch.cuda.synchronize()
        finally:
            train.evaluate_goals = real
        result[name] = {"peak_gb": torch.cuda.max_memory_allocated(device) / 1e9,
                        "accepted": stats.accepted, "refused": stats.failed}
        del trainer, xs, held
        torch.cuda.empty_cache()
    result["ratio_refusing_over_clean"] = result["every other batch rejected"]["peak_gb"] \
        / result["no refusals"]["peak_gb"]
    result["batch"] = args.batch
    return result


# --- compile --------------------------------------------------------------------------------
class Recompiles(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Recompiling"):
            self.messages.append(" / ".join(message.splitlines()[:3])[:300])


def batchnorm_buffers(module):
    return {k: v.clone() for k, v in module.state_dict().items()
            if "running_" in k or "num_batches" in k}


def check_compile(args, device, work):
    words = settings(args, "--compile", "--guard_check", "next-batch", "--batch_size",
                     str(args.batch), "--output_dir", str(work / "compile"))
    trainer = trainer_for(words, device)
    xs = batches(trainer.cfg, trainer.cfg.calibration_batches + args.steps, device)
    handler = Recompiles()
    torch._logging.set_logs(recompiles=True)
    logging.getLogger("torch._dynamo").addHandler(handler)  # where the artifact propagates
    started = time.perf_counter()
    try:
        calibrate(trainer, xs)
        after_calibration = len(handler.messages)
        stats, unchanged = EpochStats(), True
        real, train.evaluate_goals = train.evaluate_goals, refusing(3)  # rollbacks too
        try:
            for i, x in enumerate(xs[trainer.cfg.calibration_batches:]):
                if i == 2:  # each variant (grad mode, joint decode, look-ahead) compiled
                    settled = len(handler.messages)
                trainer.lbo_step(x, stats, f"step {i}", lambda line: None)
                before = batchnorm_buffers(trainer.vae)
                trainer.settle_pending(stats, lambda line: None)  # the look-ahead
                after = batchnorm_buffers(trainer.vae)
                unchanged &= all(torch.equal(before[k], after[k]) for k in before)
        finally:
            train.evaluate_goals = real
        after_training = len(handler.messages)
        _, heldout, _ = data.build_datasets(trainer.cfg)
        train.heldout_record(trainer, heldout)  # evaluation: eval mode, another batch size
    finally:
        logging.getLogger("torch._dynamo").removeHandler(handler)
        torch._logging.set_logs(recompiles=False)
    return {"recompiles_calibration": after_calibration,
            "recompiles_training": after_training - after_calibration,
            "recompiles_training_after_step_2": after_training - settled,
            "recompiles_evaluation": len(handler.messages) - after_training,
            "first_recompile_messages": handler.messages[:6],
            "accepted": stats.accepted, "refused": stats.failed,
            "batchnorm_unchanged_by_every_look_ahead": unchanged,
            "seconds": time.perf_counter() - started}


# --- syncs ----------------------------------------------------------------------------------
def check_syncs(args, device, work):
    if device.type != "cuda":
        return {"skipped": "torch.cuda.set_sync_debug_mode needs CUDA"}
    result = {}
    for mode in ("look-ahead", "next-batch"):
        words = settings(args, "--guard_check", mode, "--batch_size", str(args.batch),
                         "--output_dir", str(work / "syncs"))
        trainer = trainer_for(words, device)
        xs = batches(trainer.cfg, trainer.cfg.calibration_batches + 2 + args.steps, device)
        calibrate(trainer, xs)
        steps, stats = xs[trainer.cfg.calibration_batches:], EpochStats()
        for x in steps[:2]:  # warm-up: constants copied to the device once
            trainer.lbo_step(x, stats, "warm-up", lambda line: None)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for i, x in enumerate(steps[2:]):
                    trainer.lbo_step(x, stats, f"step {i}", lambda line: None)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        where = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
        result[mode] = {"steps": args.steps, "syncs": len(syncs),
                        "syncs_per_step": len(syncs) / args.steps,
                        "where": dict(where.most_common(8))}
    return result


# --- loader ---------------------------------------------------------------------------------
def check_loader(args, device, work):
    root = work / "celeba"
    folder = root / "img_align_celeba"  # file numbers 1.. are CelebA's training partition
    folder.mkdir(parents=True, exist_ok=True)
    write_jpegs(folder, args.images)
    cfg = configs.parse_args(["--dataset", "celeba", "--data_dir", str(root), "--batch_size",
                              str(args.batch), "--device", args.device])
    result = {"images": args.images, "batch": args.batch, "num_workers": cfg.num_workers}
    for path in ("jpeg", "cache"):
        if path == "cache":
            data.preprocess_folder(folder, data.cache_path(root, cfg.image_size),
                                   cfg.image_size)
        train_set, _, description = data.build_datasets(cfg)
        seen, started = 0, time.perf_counter()
        for x in data.make_loader(train_set, cfg, train=True):
            x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
            seen += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        result[path] = {"images_per_second": seen / (time.perf_counter() - started),
                        "images": seen, "source": description}
    return result


# --- measures -------------------------------------------------------------------------------
def check_measures(args, device, work):
    cfg = configs.parse_args(["--perceptual", "random", "--batch_size", "16",
                              "--output_dir", str(work / "measures")])
    torch.manual_seed(0)
    cpu = train.Trainer(cfg, torch.device("cpu"))
    x = batches(cfg, 1, torch.device("cpu"), seed=3)[0]
    draws = draw_step(x, cfg)
    ways = {"cpu float32": (cpu.nets, x, draws, choose_precision(False, x.device))}
    if device.type == "cuda":
        nets = tuple(copy.deepcopy(net).to(device) for net in cpu.nets)
        moved = type(draws)(**{k: v.to(device) if torch.is_tensor(v) else v
                               for k, v in vars(draws).items()})
        ways[f"{device.type} float32"] = (nets, x.to(device), moved,
                                          choose_precision(False, device))
        ways[f"{device.type} amp"] = (nets, x.to(device), moved, choose_precision(True, device))
    values = {}
    for name, (nets, images, step_draws, precision) in ways.items():
        with torch.no_grad():
            disc = nets[1]
            real = train.real_stats(images, nets[2], precision.autocast, disc)
            measures = forward_measures(nets, images, real, step_draws, precision.autocast,
                                        update_stats=False).measures
        values[name] = {k: v.item() for k, v in measures.items()}
        values[name]["precision"] = precision.description
    reference = values["cpu float32"]
    largest = {}
    for name, measured in values.items():
        if name != "cpu float32":
            largest[name] = max(
                ((abs(measured[k] - v) / max(abs(v), 1e-12), k) for k, v in reference.items()
                 if k != "precision"), default=(0.0, None))
    return {"values": values, "largest_relative_difference_from_cpu": largest}


CHECKS = {"resume": check_resume, "memory": check_memory, "compile": check_compile,
          "syncs": check_syncs, "loader": check_loader, "measures": check_measures}


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_machine()


def markdown(result):
    lines = [f"# The GPU path, part by part ({result['device_name']})", "",
             f"`{result['command']}` at commit {result['commit']}, {result['date']}, torch "
             f"{result['torch']}.", ""]
    for part, outcome in result["parts"].items():
        lines += [f"## {part}", "", "```json", json.dumps(outcome, indent=1)[:4000], "```", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--preset", default="demo", help="the runs of resume and compile")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6, help="LBO steps of memory, syncs and "
                        "compile (at least 3)")
    parser.add_argument("--images", type=int, default=4096, help="JPEGs of loader")
    parser.add_argument("--output", default="", help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    unknown = [p for p in args.parts.split(",") if p not in CHECKS]
    if unknown:
        parser.error(f"unknown part {unknown[0]}; parts: {', '.join(PARTS)}")
    result = {"device_name": device_name(device), "machine": cpu_machine(),
              "command": " ".join(["python bench/gpu_paths.py", shlex.join(
                  sys.argv[1:] if argv is None else argv)]).strip(),
              "commit": short_commit(), "date": datetime.date.today().isoformat(),
              "torch": torch.__version__, "parts": {}}
    with tempfile.TemporaryDirectory() as work:
        for part in args.parts.split(","):
            print(f"== {part}", flush=True)
            started = time.perf_counter()
            try:
                outcome = CHECKS[part](args, device, Path(work) / part)
            except Exception as err:  # one part failing must not hide the others' numbers
                outcome = {"failed": f"{type(err).__name__}: {str(err)[:300]}"}
            outcome["wall_seconds"] = round(time.perf_counter() - started, 1)
            result["parts"][part] = outcome
            print(json.dumps(outcome, indent=1)[:2000], flush=True)
    out = Path(args.output) if args.output else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_paths_{device.type}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    print(f"wrote {out / stem}.md and .json")
    return 1 if any("failed" in o for o in result["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
