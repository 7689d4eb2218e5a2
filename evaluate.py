"""Evaluate a trained BOM VAE v15: every measure of the model on held-out data, the pictures,
final_metrics.json and report.md.

    python evaluate.py outputs_bom_v15/checkpoint.pt [--output_dir DIR] [--setting value ...]

Runs automatically at the end of training; run it by hand to redraw everything from a
checkpoint (after an interrupted run, say). The measures live by job: quality.py
(reconstruction, LPIPS, FID), split_measures.py (traversals, the swap, the rule that
withholds them), probes.py (known factors, faces); pictures.py draws, report.py writes.
"""
import argparse
import contextlib
import json
import sys
from pathlib import Path

import configs
from checkpoint import read_checkpoint
from configs import UserError
from data import build_datasets
from models import vae_from_checkpoint
from pictures import draw_pictures, face_heatmap, factor_heatmap
from precision import resolve_device
from probes import face_report, factor_report
from quality import perceptual_metrics, reconstruction_metrics
from report import summary_lines, write_report
from split_measures import behaviour_report, drawn_shapes_report, withhold_split_measures


def measure(vae, cfg, heldout, device, amp=contextlib.nullcontext):
    """Every measure of the model, as final_metrics.json holds them: the sections a dataset
    has no data for (drawn shapes, factors, faces) are left out, and the split measures are
    withheld from a model that does not reconstruct."""
    results = {"reconstruction": reconstruction_metrics(vae, heldout, cfg, device, amp),
               "perceptual": perceptual_metrics(vae, heldout, cfg, device, amp),
               "behaviour": behaviour_report(vae, heldout, device),
               "drawn_shapes": drawn_shapes_report(vae, heldout, device, amp),
               "factors": factor_report(vae, cfg, device, amp),
               "faces": face_report(vae, cfg, device, amp)}
    results = {name: result for name, result in results.items() if result is not None}
    withhold_split_measures(results)
    return results


def evaluate_run(vae, cfg, heldout, history, out, device, amp=contextlib.nullcontext):
    """Measure one model, draw its pictures and write final_metrics.json and report.md into
    `out`; returns the results with the report's and the pictures' paths."""
    vae.eval()
    try:
        results = measure(vae, cfg, heldout, device, amp)
        pictures = draw_pictures(vae, heldout, history, out, device, cfg.target_rollback_rate,
                                 results["behaviour"]["effects"])
    finally:
        vae.train()
    # The heat maps are linked from their report sections, not listed among the pictures.
    factors, faces = results.get("factors"), results.get("faces")
    if factors:  # withheld cells read n/a
        factor_heatmap(out, factors)
    if faces and "skipped" not in faces:
        face_heatmap(out, faces)
    (Path(out) / "final_metrics.json").write_text(json.dumps(results, indent=2))
    results["report"] = write_report(out, cfg, history, results, pictures)
    results["pictures"] = pictures
    return results


def load_checkpoint(path, device):
    """Config, VAE and the whole saved state from a checkpoint written by train.py."""
    state = read_checkpoint(path)
    return configs.from_dict(state["config"]), vae_from_checkpoint(state).to(device), state


def with_run_settings(cfg, words):
    """cfg with the run settings given as words (e.g. --probe_images 500 --dci_trees 20): what
    is measured may change at evaluation, the experiment (the checkpoint's settings) may not."""
    given = configs.parse_args(words)  # checks names and values
    names = [name for name, _ in configs.setting_pairs(words)]
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
        device = resolve_device(args.device)
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
