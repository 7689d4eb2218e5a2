"""What a trained VAE's latent codes say about known factors, on data that has them.

    factor_report  a dataset with generating factors (the built-in shapes, 3D Shapes, MPI3D,
                   dSprites, a folder with --factors): what core and detail each predict of
                   every factor (factor_probes), MIG, DCI, SAP and the FactorVAE score
    face_report    CelebA's test partition: the aligned landmarks and the 40 attributes from
                   core versus detail, split by person (face_probes)

The metrics themselves, pure functions on arrays, are in disentanglement.py; this module
encodes the images, chooses the measure each factor calls for, and splits fit from held-out.
"""
import contextlib
import math
from pathlib import Path

import numpy as np
import torch

import benchmarks
import celeba
import disentanglement
import imagesets
from data import make_loader
from latents import encode_means, encode_rows

FACTOR_SEED_OFFSET, FACTOR_VAE_SEED_OFFSET, FACE_SEED_OFFSET = 7, 11, 13
FIT_SHARE = 0.8            # the share of the probes' images they are fitted on
# A discrete factor with at most this many classes is a category (a shape, a colour name):
# scored by the balanced accuracy of a logistic probe against chance (1 / classes), not by the
# R^2 of its class index, whose order means nothing. More classes (dSprites' 32 positions,
# MPI3D's 40 axis steps) are steps of a quantity and keep the R^2.
CATEGORICAL_MAX_CLASSES = 6
MEASURE_LABELS = {"r2": "R²", "balanced_accuracy": "balanced accuracy",
                  "symmetry_r2": "R² within each shape"}


# --------------------------------------------------------------------------- known factors
def _metric(function, *args, **kwargs):
    """A metric's result, or why it could not be computed (a constant factor, say)."""
    try:
        return function(*args, **kwargs)
    except ValueError as err:
        return {"skipped": str(err)}


@torch.no_grad()
def factor_report(vae, cfg, device, amp=contextlib.nullcontext):
    """For a dataset with known factors (the built-in shapes, 3D Shapes, MPI3D, dSprites, a
    folder with --factors): how well each structure and appearance factor is predicted from
    core versus detail, MIG, DCI, SAP and, where factors can be sampled, the FactorVAE score.
    None for a dataset without factors."""
    factor_set = benchmarks.factor_set(cfg)
    if factor_set is None:
        return None
    rng = np.random.default_rng(cfg.seed + FACTOR_SEED_OFFSET)
    n = min(cfg.probe_images, len(factor_set))
    rows = np.arange(n) if factor_set.random_order else rng.permutation(len(factor_set))[:n]
    codes = encode_rows(vae, factor_set.images, rows, device, amp)
    factors = factor_set.factors[rows]
    fit_n = int(FIT_SHARE * n)
    split = (codes[:fit_n], factors[:fit_n], codes[fit_n:], factors[fit_n:])
    # Each factor's kind of value comes from the dataset (benchmarks: class indices; the
    # built-in shapes: shape a class, the rest continuous; a CSV: whole numbers are classes).
    discrete = factor_set.discrete
    classes = factor_classes(factor_set, factors)
    probes = factor_probes(*split, vae.core_dim, factor_set.names, discrete,
                           [classes[name] for name in factor_set.names],
                           rotation_symmetry(cfg, factor_set))
    dci = _metric(disentanglement.dci, *split, discrete=discrete, n_estimators=cfg.dci_trees)
    dci.pop("importance", None)
    dci["trees"] = cfg.dci_trees
    mig = _metric(disentanglement.mutual_information_gap, codes, factors, discrete=discrete)
    sap = _metric(disentanglement.sap, *split, discrete=discrete)
    kinds = dict(zip(factor_set.names, factor_set.kinds))
    return {"dataset": factor_set.title, "note": factor_set.note, "images": n,
            "probes": probes, "kinds": kinds, "probe_k": vae.core_dim,
            "classes": classes,
            "structure_factors": [f for f in factor_set.names if kinds[f] == "structure"],
            "appearance_factors": [f for f in factor_set.names if kinds[f] == "appearance"],
            "mig": mig.get("mig", math.nan), "mig_per_factor": mig.get("per_factor"),
            "dci": dci, "sap": sap.get("sap", math.nan),
            "sap_skipped": sap.get("skipped"),
            "factor_vae": factor_vae_report(vae, cfg, factor_set, device, amp)}


def factor_kinds(factors):
    """{factor: "structure" | "appearance"} of a factor report (factor_report's "kinds"; a
    report written before it kept them names the structure factors, the rest appearance)."""
    return factors.get("kinds") or {n: ("structure" if n in factors["structure_factors"]
                                        else "appearance") for n in factors["probes"]}


def factor_vae_report(vae, cfg, factor_set, device, amp=contextlib.nullcontext):
    """disentanglement_lib's FactorVAE score, with the (smaller) counts of cfg, or why not."""
    if not factor_set.samplable:
        return {"skipped": "its factors cannot be sampled (no full grid of them)"}
    if not cfg.factor_vae_train or not cfg.factor_vae_eval:
        return {"skipped": "factor_vae_train or factor_vae_eval is 0"}

    def represent(factors):  # each batch's images drawn when it is encoded
        return encode_rows(vae, factor_set.images_of, factors, device, amp)
    rng = np.random.default_rng(cfg.seed + FACTOR_VAE_SEED_OFFSET)
    result = _metric(disentanglement.factor_vae_score, represent, factor_set.sample_factors,
                     len(factor_set.names), rng,
                     batch_size=cfg.factor_vae_batch, num_train=cfg.factor_vae_train,
                     num_eval=cfg.factor_vae_eval,
                     num_variance_estimate=cfg.factor_vae_variance)
    result["counts"] = {"train_votes": cfg.factor_vae_train, "eval_votes": cfg.factor_vae_eval,
                        "variance_images": cfg.factor_vae_variance,
                        "batch": cfg.factor_vae_batch}
    return result


def factor_classes(factor_set, factors):
    """{factor name: its number of classes (the grid size where known, else the distinct values
    among `factors`), or "continuous"}: how MIG, DCI and SAP read each factor."""
    out = {}
    for k, name in enumerate(factor_set.names):
        if not factor_set.discrete[k]:
            out[name] = "continuous"
        else:
            out[name] = int(factor_set.sizes[k]) if factor_set.sizes \
                else int(len(np.unique(factors[:, k])))
    return out


def rotation_symmetry(cfg, factor_set):
    """For a factor set whose rotation factor is defined only up to each shape's symmetry:
    {"factor", "shape_factor", "orders" {shape value: symmetry order, 0 = not visible},
    "span" (radians a factor of 1 stands for)}; None for others. Only the built-in shapes
    say so (imagesets.SyntheticShapes.SYMMETRY_ORDERS)."""
    if cfg.dataset not in imagesets.BUILT_IN_SHAPES or \
            not {"rotation", "shape"} <= set(factor_set.names):
        return None
    shapes = imagesets.BUILT_IN_SHAPES[cfg.dataset]
    return {"factor": "rotation", "shape_factor": "shape",
            "orders": {shapes.kind_factor(k): order
                       for k, order in enumerate(shapes.SYMMETRY_ORDERS)},
            "span": shapes.ROTATION_SPAN,
            "names": {shapes.kind_factor(k): name for k, name in enumerate(shapes.SHAPES)}}


def symmetry_target(angle, order, span):
    """What of a rotation the image shows, per image: nothing when order is 0 (rows False);
    else the angle modulo 2 pi / order. When every drawn angle stays inside one period
    (span * order < 2 pi, as in the built-in shapes) that is the angle itself (one column);
    otherwise sin and cos of order * angle (two columns, continuous across the wrap).
    Returns (rows (N,) bool, target (rows, T))."""
    angle, order = np.asarray(angle, dtype=np.float64), np.asarray(order)
    rows = order > 0
    if not rows.any():
        return rows, np.zeros((0, 1))
    if (order[rows] * span < 2 * math.pi).all():
        return rows, angle[rows, None]
    turned = order[rows] * angle[rows]
    return rows, np.stack([np.sin(turned), np.cos(turned)], 1)


def factor_probes(train_codes, train_factors, test_codes, test_factors, core_dim, names,
                  discrete, classes, symmetry=None):
    """{factor: scores}: what each part of the latent predicts of each factor, by the measure
    its kind calls for, at full width and at equal capacity (disentanglement.part_probes).

    Keeps the old columns core_r2, detail_r2, all_r2 (ridge R^2 of the raw factor value, for
    every factor) and adds "measure" ("r2"; "balanced_accuracy" for a discrete factor of at
    most CATEGORICAL_MAX_CLASSES classes, its classes the labels; "symmetry_r2" for a
    rotation defined up to a shape's symmetry: the R^2 of symmetry_target, fitted and scored
    within each shape that shows rotation, averaged; the shapes that do not are left out),
    "chance" (1 / classes for a category, 0 for an R^2), "core", "detail", "all",
    "core_best_k", "detail_best_k", "k" and the chosen dims, "images_scored" and a "note"."""
    old = disentanglement.part_probe_table(train_codes, train_factors, test_codes,
                                           test_factors, core_dim, names)
    out = {}
    for k, name in enumerate(names):
        row = dict(old[name])
        fit, held = train_factors[:, k], test_factors[:, k]
        if symmetry and name == symmetry["factor"]:
            shape = names.index(symmetry["shape_factor"])
            orders = [np.array([symmetry["orders"].get(float(v), 0) for v in f[:, shape]])
                      for f in (train_factors, test_factors)]
            (fit_rows, fit_target), (held_rows, held_target) = (
                symmetry_target(f[:, k] * symmetry["span"], o, symmetry["span"])
                for f, o in zip((train_factors, test_factors), orders))
            scores = disentanglement.grouped_part_probes(
                train_codes[fit_rows], fit_target, test_codes[held_rows], held_target,
                core_dim, disentanglement.R2, orders[0][fit_rows], orders[1][held_rows])
            scores.pop("groups")
            hidden = [symmetry["names"][v] for v, o in symmetry["orders"].items() if o == 0]
            row.update(scores, measure="symmetry_r2", chance=0.0,
                       images_scored=int(held_rows.sum()),
                       note=f"{', '.join(hidden)} left out (rotation not visible); the angle "
                            "modulo each shape's symmetry, probed within each shape")
        elif discrete[k] and isinstance(classes[k], int) and classes[k] <= \
                CATEGORICAL_MAX_CLASSES:
            values = np.unique(np.concatenate([fit, held]))
            labels = [np.searchsorted(values, f) for f in (fit, held)]
            scores = disentanglement.part_probes(
                train_codes, labels[0], test_codes, labels[1], core_dim,
                disentanglement.BALANCED_ACCURACY)
            row.update(scores, measure="balanced_accuracy", chance=1.0 / classes[k],
                       images_scored=len(held), note="")
        else:
            scores = disentanglement.part_probes(train_codes, fit, test_codes, held, core_dim,
                                                 disentanglement.R2)
            row.update(scores, measure="r2", chance=0.0, images_scored=len(held), note="")
        out[name] = row
    return out


# ------------------------------------------------------------------------------- faces
@torch.no_grad()
def face_report(vae, cfg, device, amp=contextlib.nullcontext):
    """CelebA's test partition: R² of the five aligned landmarks (structure) and the balanced
    accuracy of a logistic probe for each of the 40 attributes, from core versus detail
    (docs/benchmarks.md), fitted on 80 % and scored on the rest, split by person when
    identity_CelebA.txt is there (face_probes), else by image. None when the data is not
    CelebA; a reason when the annotation files are missing."""
    if cfg.dataset not in ("celeba", "auto"):
        return None
    root = Path(cfg.data_dir)
    annotations = celeba.read_annotations(root)
    if isinstance(annotations, str):
        return {"skipped": annotations}
    attr_names, attributes, landmark_names, landmarks = annotations
    folder = root / celeba.CELEBA_FOLDER
    all_names = imagesets.list_images(folder, root)
    names = [n for n in all_names if celeba.celeba_partition(celeba.celeba_number(n)) == 2
             and Path(n).name in attributes and Path(n).name in landmarks]
    rng = np.random.default_rng(cfg.seed + FACE_SEED_OFFSET)
    names = [names[i] for i in sorted(rng.permutation(len(names))[:cfg.face_probe_images])]
    if len(names) < 10:
        return {"skipped": f"{len(names)} annotated test-partition images in {folder}; the "
                           "probes need at least 10"}
    dataset, kept = imagesets.folder_images(root, all_names, names, cfg)
    codes = np.concatenate([encode_means(vae, x, device, amp)
                            for x in make_loader(dataset, cfg, train=False)])
    return face_probes(codes, [Path(n).name for n in kept], annotations,
                       celeba.read_identities(root), vae.core_dim, rng)


def split_by_group(groups, fit_share, rng):
    """(N,) bool, True for the fit side: whole groups (people) drawn in random order onto the
    fit side until it holds fit_share of the images, so no group is on both sides."""
    groups = np.asarray(groups)
    unique = rng.permutation(np.unique(groups))
    fit_groups, taken, wanted = [], 0, fit_share * len(groups)
    counts = {g: int(c) for g, c in zip(*np.unique(groups, return_counts=True))}
    for group in unique:
        if taken >= wanted:
            break
        fit_groups.append(group)
        taken += counts[group.item() if hasattr(group, "item") else group]
    return np.isin(groups, fit_groups)


def face_probes(codes, names, annotations, identities, core_dim, rng):
    """The face probes on encoded test-partition images: codes (N, D), names their file
    names, annotations as celeba.read_annotations gives them, identities {name: person} or a
    reason there are none. With identities the fit and held-out sides are split by person
    (split_by_group: nobody on both sides); without, by image, and "split" says so. Each
    attribute is scored by disentanglement.logistic_probe_accuracy (NaN where either side
    holds one value of it)."""
    attr_names, attributes, landmark_names, landmarks = annotations
    order = rng.permutation(len(names))
    codes = np.asarray(codes)[order].astype(np.float64)
    kept = [names[i] for i in order]
    if isinstance(identities, dict) and all(n in identities for n in kept):
        people = np.array([identities[n] for n in kept])
        fit = split_by_group(people, FIT_SHARE, rng)
        split = {"by": "identity", "fit_people": int(len(np.unique(people[fit]))),
                 "held_out_people": int(len(np.unique(people[~fit]))),
                 "shared_people": int(len(np.intersect1d(people[fit], people[~fit]))),
                 "note": f"split by identity ({celeba.IDENTITIES}): nobody is on both sides"}
    else:
        why = identities if isinstance(identities, str) else \
            f"{celeba.IDENTITIES} has no row for some images"
        fit = np.arange(len(kept)) < int(FIT_SHARE * len(kept))
        split = {"by": "image", "note": f"split by image ({why}): the same people (about 20 "
                                        "images each) fall on both sides"}
    # The fit rows first, so every probe below takes [:fit_n] and [fit_n:].
    rows = np.concatenate([np.flatnonzero(fit), np.flatnonzero(~fit)])
    codes, kept, fit_n = codes[rows], [kept[i] for i in rows], int(fit.sum())
    points = np.array([landmarks[n] for n in kept], dtype=np.float64)
    labels = np.array([attributes[n] for n in kept]) > 0
    coordinate = disentanglement.part_probe_table(
        codes[:fit_n], points[:fit_n], codes[fit_n:], points[fit_n:], core_dim,
        landmark_names)
    landmark_r2 = {}
    for name in benchmarks.CELEBA_LANDMARKS:
        rows = [coordinate[f"{name}_{axis}"] for axis in ("x", "y")]
        landmark_r2[name] = {part: float(np.mean([r[f"{part}_r2"] for r in rows]))
                             for part in ("core", "detail", "all")}
    parts = {"core": slice(0, core_dim), "detail": slice(core_dim, None),
             "all": slice(None)}
    attribute_scores = {
        name: {part: disentanglement.logistic_probe_accuracy(
            codes[:fit_n, dims], labels[:fit_n, k], codes[fit_n:, dims], labels[fit_n:, k])
            for part, dims in parts.items()}
        for k, name in enumerate(attr_names)}
    kinds = {name: benchmarks.CELEBA_ATTRIBUTE_KINDS.get(name, "mixed") for name in attr_names}
    return {"images": len(kept), "fit_images": fit_n, "split": split,
            "landmarks_r2": landmark_r2,
            "landmark_coordinates_r2": coordinate, "attributes": attribute_scores,
            "attribute_kinds": kinds, "attribute_groups": _group_means(attribute_scores, kinds)}


def _group_means(scores, kinds):
    """{kind: {part: mean score}} over the attributes of each kind (structure, appearance,
    mixed), leaving out those without a score."""
    out = {}
    for kind in ("structure", "appearance", "mixed"):
        values = [row for name, row in scores.items() if kinds.get(name) == kind]
        if values:
            out[kind] = {part: float(np.nanmean([v[part] for v in values]))
                         if any(np.isfinite(v[part]) for v in values) else math.nan
                         for part in values[0]}
    return out
