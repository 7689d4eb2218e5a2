"""Does a nonlinear probe read more of a factor than the ridge probe the evaluation uses?

A screen on one run's checkpoint (its output for one run: lab/results/probe_capacity/):
    python lab/experiments/probe_capacity.py OUTPUT_DIR/checkpoint.pt
It encodes the images factor_report encodes (same rows, same 80/20 split) and prints, per
continuous factor, the held-out R^2 of ridge, 15-nearest-neighbours and a 64-unit MLP from all
dims, from core, and from detail's best core_dim dims."""
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import r2_score
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import benchmarks  # noqa: E402
import disentanglement  # noqa: E402
from evaluate import load_checkpoint  # noqa: E402
from latents import encode_rows  # noqa: E402
from probes import FACTOR_SEED_OFFSET  # noqa: E402


def codes_and_factors(checkpoint):
    cfg, vae, _ = load_checkpoint(checkpoint, torch.device("cpu"))
    vae.eval()
    factor_set = benchmarks.factor_set(cfg)
    rng = np.random.default_rng(cfg.seed + FACTOR_SEED_OFFSET)
    n = min(cfg.probe_images, len(factor_set))
    rows = np.arange(n) if factor_set.random_order else rng.permutation(len(factor_set))[:n]
    with torch.no_grad():
        codes = encode_rows(vae, factor_set.images, rows, torch.device("cpu"),
                            contextlib.nullcontext)
    return codes, factor_set.factors[rows], factor_set.names, vae.core_dim


def three_probes(codes, target, fit):
    a, b, ya, yb = codes[:fit], codes[fit:], target[:fit], target[fit:]
    ridge = float(np.mean(disentanglement.ridge_probe_r2(a, ya[:, None], b, yb[:, None])))
    knn = make_pipeline(StandardScaler(), KNeighborsRegressor(15, weights="distance"))
    mlp = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(64,), max_iter=2000,
                                                       alpha=1e-3, random_state=0))
    return ridge, r2_score(yb, knn.fit(a, ya).predict(b)), r2_score(yb, mlp.fit(a, ya).predict(b))


def main(checkpoint):
    codes, factors, names, core = codes_and_factors(checkpoint)
    fit = int(0.8 * len(codes))
    print(checkpoint, "images", len(codes))
    for k, name in enumerate(names):
        if name in ("shape", "rotation"):  # a class and a symmetry-aware angle: not R^2 of k
            continue
        target = factors[:, k].astype(float)
        best = disentanglement.best_dims(codes[:fit, core:], target[:fit], core,
                                         disentanglement.R2)
        parts = (("all", codes), ("core", codes[:, :core]),
                 ("detail8", codes[:, core + np.asarray(best)]))
        cells = [f"{part}: ridge {r:.2f} knn {kn:.2f} mlp {m:.2f}"
                 for part, (r, kn, m) in ((p, three_probes(x, target, fit)) for p, x in parts)]
        print(f"{name:14s}", "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1])
