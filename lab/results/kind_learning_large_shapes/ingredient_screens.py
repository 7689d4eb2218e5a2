"""LBO's ingredients, one at a time and together, in bench/kind_learning.py's plain
autoencoder, on the larger shapes (radius 0.15-0.25 of the side, centres 0.39-0.61), every
screen with pixel_emphasis 3 (near_edge 3), at the demo's 49,152 images.

Run from this folder (the files it writes land here), same commit as geometry_screens.py:
    python ingredient_screens.py pe3_joint,pe3_asym,pe3_muzero,pe3_noise0.1,pe3_group,pe3_all c
    python ingredient_screens.py \
        all_but_joint,all_but_muzero,all_but_group,all_but_asym,all_but_noise d
    python ingredient_screens.py all_epochs_24 e    (twice the images: is it the budget?)
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import kind_learning as K  # noqa: E402
from data import HELDOUT_SEED_OFFSET  # noqa: E402
from imagesets import SyntheticShapes as S  # noqa: E402
S.RADIUS, S.CENTRE = (0.15, 0.10), (0.39, 0.22)
data = (K.images_and_factors(K.TRAIN_IMAGES, 32, 0)[0],
        K.images_and_factors(K.HELDOUT_IMAGES, 32, HELDOUT_SEED_OFFSET))
SCREENS = {"pe3_joint": dict(joint_decode=True), "pe3_asym": dict(decoder="asymmetric"),
           "pe3_muzero": dict(mu_init="zero"), "pe3_ssim": dict(ssim=0.1),
           "pe3_noise0.1": dict(noise=0.1), "pe3_group": dict(recon_group=True),
           "pe3_seed1": dict(seed=1), "pe3_all": dict(joint_decode=True, decoder="asymmetric",
           mu_init="zero", noise=0.1, recon_group=True)}
ALL = SCREENS["pe3_all"]
DEFAULT = dict(joint_decode=False, decoder="spec", mu_init="live", noise=0.0, recon_group=False)
for key, short in [("joint_decode", "joint"), ("decoder", "asym"), ("mu_init", "muzero"),
                   ("noise", "noise"), ("recon_group", "group")]:
    SCREENS["all_but_" + short] = dict(ALL, **{key: DEFAULT[key]})
SCREENS["all_epochs_24"] = dict(ALL, epochs=2 * K.BASE["epochs"])
out = {}
for name in sys.argv[1].split(","):
    s = dict(K.BASE, near_edge=3.0, **SCREENS[name])
    print(name, flush=True)
    trace, recon = K.run_screen(s, *data)
    out[name] = trace
    json.dump(out, open(f"ingredients_{sys.argv[2]}.json", "w"), indent=1)
