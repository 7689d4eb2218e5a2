"""Screens of bench/kind_learning.py's plain autoencoder on the built-in shapes drawn larger.

Run from this folder (the files it writes land here), at commit 20991e6 with the
SyntheticShapes.RADIUS / CENTRE attributes of the next commit (the images at "now" are the same):
    python geometry_screens.py now:baseline,r15_25:baseline,r17_22:baseline a
    python geometry_screens.py r15_25:near_edge_3,r15_25:epochs_24 b
Geometry: (radius at size 0, added at size 1), (centre at x = 0, added at x = 1), in shares
of the image side; the screen's other settings are kind_learning.SCREENS[screen].
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import kind_learning as K  # noqa: E402
from data import HELDOUT_SEED_OFFSET  # noqa: E402
from imagesets import SyntheticShapes as S  # noqa: E402
GEOMS = {"now": ((0.10, 0.10), (0.32, 0.36)), "r15_25": ((0.15, 0.10), (0.39, 0.22)),
         "r17_22": ((0.17, 0.05), (0.34, 0.32))}
out = {}
for name in sys.argv[1].split(","):
    geom, screen = name.split(":")
    S.RADIUS, S.CENTRE = GEOMS[geom]
    # the pixels a kind changes: equal-area disc vs square, same other factors
    sh = S(512, 32, seed=5)
    f = np.stack([sh.factors(i) for i in range(512)])
    f0, f1 = f.copy(), f.copy()
    f0[:, 0], f1[:, 0] = 0, 0.5
    gap = (S.render_all(f0, 32) - S.render_all(f1, 32)).pow(2).mean((1, 2, 3)).median().item()
    data = (K.images_and_factors(K.TRAIN_IMAGES, 32, 0)[0],
            K.images_and_factors(K.HELDOUT_IMAGES, 32, HELDOUT_SEED_OFFSET))
    s = dict(K.BASE, **K.SCREENS[screen])
    print(name, "disc-square MSE gap (median)", gap, flush=True)
    trace, recon = K.run_screen(s, *data)
    out[name] = dict(gap=gap, trace=trace)
    torch.save(recon, f"{name.replace(':','_')}.pt")
    json.dump(out, open(f"geometry_{sys.argv[2]}.json", "w"), indent=1)
