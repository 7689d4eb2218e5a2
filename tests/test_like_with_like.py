"""Probes that compare like with like (issue 19, item 4): each factor scored by the measure its
kind calls for (R² for a quantity, balanced accuracy against chance for a category, the angle
modulo a shape's symmetry for a rotation), from each part at full width and at equal capacity
(the best k = core_dim dims, chosen on the fit split only); CelebA's face probes split by
person when identity_CelebA.txt is there. Every expected value is known by construction."""
import math

import numpy as np
import pytest

import benchmarks
import celeba
import configs
import disentanglement as D
import imagesets
import probes
import report

RNG = np.random.default_rng(0)


def noise(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d))


# --- equal capacity ---------------------------------------------------------------------------

def test_the_best_k_detail_dims_are_chosen_on_the_fit_split_only():
    """Detail dim 2+3 equals the factor on the fit rows only, detail dim 2+7 on the held-out
    rows only. Choosing on the fit split takes the first and scores about 0 held out; a probe
    that peeked at the held-out rows would take the second and score 1."""
    n_fit, n_test, core = 400, 200, 2
    factor = RNG.random(n_fit + n_test)
    codes = noise(n_fit + n_test, core + 10, 1)
    codes[:n_fit, core + 3] = factor[:n_fit]       # informative only while fitting
    codes[n_fit:, core + 7] = factor[n_fit:]       # informative only held out
    scores = D.part_probes(codes[:n_fit], factor[:n_fit], codes[n_fit:], factor[n_fit:], core,
                           D.R2)
    assert scores["k"] == core and len(scores["detail_dims"]) == core
    assert core + 3 in scores["detail_dims"] and core + 7 not in scores["detail_dims"]
    assert scores["detail_best_k"] < 0.05


def test_equal_capacity_removes_the_advantage_of_many_dims():
    """The factor is spread thinly over 24 detail dims and held whole by one core dim: at full
    width detail predicts it as well as core; with only core_dim = 2 of its dims it cannot."""
    n, core, detail = 3000, 2, 24
    codes = noise(n, core + detail, 2)
    factor = codes[:, core:].sum(1) / math.sqrt(detail)
    codes[:, 0] = factor
    fit = 2400
    scores = D.part_probes(codes[:fit], factor[:fit], codes[fit:], factor[fit:], core, D.R2)
    assert scores["core"] > 0.99 and scores["core_best_k"] == pytest.approx(scores["core"])
    assert scores["detail"] > 0.99                      # 24 dims: all of it
    assert scores["detail_best_k"] < 0.2                # 2 of 24 equal shares: about 2/24


def test_a_factor_equal_to_one_dim_is_read_from_that_part_only():
    n, core = 2000, 3
    codes = noise(n, core + 9, 3)
    structure, appearance = codes[:, 1].copy(), codes[:, core + 5].copy()
    factors = np.stack([structure, appearance], 1)
    table = probes.factor_probes(codes[:1600], factors[:1600], codes[1600:], factors[1600:],
                                   core, ["pos", "hue"], [False, False],
                                   ["continuous", "continuous"])
    assert table["pos"]["measure"] == "r2"
    assert table["pos"]["core"] > 0.999 and abs(table["pos"]["detail"]) < 0.05
    assert abs(table["pos"]["detail_best_k"]) < 0.05
    assert table["hue"]["detail_best_k"] > 0.999 and abs(table["hue"]["core"]) < 0.05
    assert table["hue"]["detail_dims"][0] == core + 5
    # the old columns stay beside the new ones, with the old meaning
    assert table["pos"]["core_r2"] == pytest.approx(table["pos"]["core"])


# --- categories -------------------------------------------------------------------------------

def test_balanced_accuracy_is_the_mean_recall_over_classes(recwarn):
    truth = np.array([0] * 90 + [1] * 10)
    assert D.balanced_accuracy(truth, np.zeros(100)) == 0.5       # plain accuracy: 0.9
    predicted = truth.copy()
    predicted[:9] = 1                                             # 10 % of class 0 wrong
    assert D.balanced_accuracy(truth, predicted) == pytest.approx((0.9 + 1.0) / 2)
    predicted[:9] = 2                       # a class the truth lacks: a wrong guess, quietly
    assert D.balanced_accuracy(truth, predicted) == pytest.approx((0.9 + 1.0) / 2)
    assert not recwarn.list


def test_a_category_is_scored_by_balanced_accuracy_against_chance_not_by_r2_of_its_index():
    """A code dim puts the three classes at 0, 2, 1 (its order is not the index's): the
    category is fully in the code, the R² of the class index says a quarter of it."""
    n, core = 1500, 2
    labels = np.random.default_rng(4).integers(0, 3, n)
    codes = noise(n, core + 6, 5) * 0.05
    codes[:, 0] += np.array([0.0, 2.0, 1.0])[labels]
    factors = (labels / 2.0)[:, None]
    table = probes.factor_probes(codes[:1200], factors[:1200], codes[1200:], factors[1200:],
                                   core, ["shape"], [True], [3])
    row = table["shape"]
    assert row["measure"] == "balanced_accuracy" and row["chance"] == pytest.approx(1 / 3)
    assert row["core"] > 0.98 and row["all"] > 0.98
    assert abs(row["detail"] - 1 / 3) < 0.08 and abs(row["detail_best_k"] - 1 / 3) < 0.08
    assert row["core_r2"] < 0.4                       # the old measure misses most of it


def test_many_classes_keep_the_r2_and_few_classes_become_a_category():
    n = 800
    codes = noise(n, 4, 6)
    factors = np.stack([np.random.default_rng(7).integers(0, 32, n),
                        np.random.default_rng(8).integers(0, 6, n),
                        np.random.default_rng(9).random(n)], 1).astype(float)
    table = probes.factor_probes(codes[:600], factors[:600], codes[600:], factors[600:], 2,
                                   ["x", "colour", "size"], [True, True, False],
                                   [32, 6, "continuous"])
    assert [table[f]["measure"] for f in ("x", "colour", "size")] == \
        ["r2", "balanced_accuracy", "r2"]
    assert table["colour"]["chance"] == pytest.approx(1 / 6)


def test_univariate_scores_are_r2_and_eta_squared():
    x = noise(500, 3, 10)
    y = 2 * x[:, 1] + noise(500, 1, 11)[:, 0]
    r = np.corrcoef(x[:, 1], y)[0, 1]
    assert D.univariate_scores(x, y, D.R2)[1] == pytest.approx(r ** 2)
    labels = np.repeat([0, 1], 250)
    x[:, 2] = labels + 0.0 * x[:, 2]
    assert D.univariate_scores(x, labels, D.BALANCED_ACCURACY)[2] == pytest.approx(1.0)
    assert D.best_dims(x, labels, 1, D.BALANCED_ACCURACY) == [2]


# --- rotation up to a shape's symmetry --------------------------------------------------------

def test_the_built_in_shapes_say_their_symmetry():
    shapes = imagesets.SyntheticShapes
    assert dict(zip(shapes.SHAPES, shapes.SYMMETRY_ORDERS)) == \
        {"circle": 0, "square": 4, "triangle": 3}
    # the rendering: a square turned by the factor's whole span is turned by ROTATION_SPAN,
    # and a circle looks the same at every rotation
    base = np.array([0.5, 0.5, 0.5, 0.5, 0.0], dtype=np.float32)
    turned = base.copy()
    turned[4] = 1.0
    assert not np.allclose(shapes.coverage(base, 32), shapes.coverage(turned, 32))
    circle, circle_turned = base.copy(), turned.copy()
    circle[0] = circle_turned[0] = 0.0
    assert np.array_equal(shapes.coverage(circle, 32), shapes.coverage(circle_turned, 32))
    assert shapes.ROTATION_SPAN == pytest.approx(math.pi / 4)


def test_the_symmetry_target_is_the_angle_modulo_the_symmetry():
    angle = np.array([0.1, 0.1 + 2 * math.pi / 4, 0.3, 0.2])
    order = np.array([4, 4, 0, 3])
    rows, target = probes.symmetry_target(angle, order, span=2 * math.pi)  # wraps: sin, cos
    assert rows.tolist() == [True, True, False, True] and target.shape == (3, 2)
    assert np.allclose(target[0], target[1])        # a quarter turn of a square: no change
    assert np.allclose(target[2], [math.sin(0.6), math.cos(0.6)])
    rows, target = probes.symmetry_target(angle, order, span=math.pi / 4)  # one period
    assert target.shape == (3, 1) and np.allclose(target[:, 0], angle[rows])


def test_rotation_is_scored_where_the_image_shows_it():
    """A code that holds the rotation of every square and triangle exactly (a circle's rotation
    is not in its image, so no code can hold it): the old R², over all images, is pulled down
    by the circles; the new measure leaves them out and reads the rotation fully."""
    n, core = 3000, 2
    rng = np.random.default_rng(12)
    shape = rng.integers(0, 3, n) / 2.0
    rotation = rng.random(n)
    codes = noise(n, core + 4, 13)
    codes[:, 0] = np.where(shape == 0.0, rng.random(n), rotation)
    codes[:, 1] = shape
    factors = np.stack([shape, rotation], 1)
    cfg = configs.Config(dataset="synthetic")

    class Set:
        names = ["shape", "rotation"]
    symmetry = probes.rotation_symmetry(cfg, Set)
    assert symmetry["orders"] == {0.0: 0, 0.5: 4, 1.0: 3}
    table = probes.factor_probes(codes[:2400], factors[:2400], codes[2400:], factors[2400:],
                                   core, Set.names, [True, False], [3, "continuous"], symmetry)
    row = table["rotation"]
    assert row["measure"] == "symmetry_r2" and "circle left out" in row["note"]
    assert row["images_scored"] == int((shape[2400:] > 0).sum())
    assert row["core"] > 0.99 and abs(row["detail"]) < 0.05
    assert row["core_r2"] < 0.85                    # the old measure, circles included
    assert table["shape"]["core"] > 0.99            # one dim, three levels
    assert probes.rotation_symmetry(configs.Config(dataset="dsprites"), Set) is None


# --- CelebA: split by person ------------------------------------------------------------------

def test_a_group_split_puts_nobody_on_both_sides():
    people = np.repeat(np.arange(50), np.random.default_rng(14).integers(5, 35, 50))
    fit = probes.split_by_group(people, 0.8, np.random.default_rng(15))
    assert not set(people[fit]) & set(people[~fit])
    assert 0.75 < fit.mean() < 0.9


def face_annotations(names, rng):
    attr_names = sorted(benchmarks.CELEBA_ATTRIBUTE_KINDS)
    attributes = {n: list(rng.choice([-1, 1], 40)) for n in names}
    landmarks = {n: list(rng.integers(60, 160, 10)) for n in names}
    return attr_names, attributes, list(celeba.LANDMARK_COLUMNS), landmarks


def test_face_probes_read_planted_landmarks_and_attributes_from_their_part():
    rng = np.random.default_rng(16)
    names = [f"{182638 + i:06d}.jpg" for i in range(600)]
    annotations = face_annotations(names, rng)
    _, attributes, _, landmarks = annotations
    core = 10
    codes = noise(600, core + 40, 17) * 0.01
    codes[:, :core] += np.array([landmarks[n] for n in names])       # core: the landmarks
    codes[:, core:] += np.array([attributes[n] for n in names])      # detail: the attributes
    faces = probes.face_probes(codes, names, annotations, "identity_CelebA.txt is absent",
                                 core, np.random.default_rng(0))
    assert faces["split"]["by"] == "image" and "is absent" in faces["split"]["note"]
    assert faces["fit_images"] == 480
    for row in faces["landmarks_r2"].values():
        assert row["core"] > 0.99 and row["detail"] < 0.1
    for row in faces["attributes"].values():
        assert row["detail"] > 0.99 and abs(row["core"] - 0.5) < 0.15


def test_faces_split_by_person_so_a_code_that_only_knows_who_it_is_predicts_nothing():
    """Landmarks that are one value per person (plus a little noise) and a code that is one
    random vector per person: split by image, the probe recognises the people it was fitted
    on and 'predicts' their landmarks; split by person, it has nobody to recognise."""
    rng = np.random.default_rng(18)
    people = np.repeat(np.arange(30), 20)
    names = [f"{182638 + i:06d}.jpg" for i in range(len(people))]
    attr_names, attributes, columns, _ = face_annotations(names, rng)
    per_person = rng.integers(60, 160, (30, 10))
    landmarks = {n: list(per_person[p] + rng.integers(-1, 2, 10)) for n, p in zip(names, people)}
    codes = rng.normal(size=(30, 40))[people] + 0.01 * rng.normal(size=(len(people), 40))
    annotations = (attr_names, attributes, columns, landmarks)
    by_image = probes.face_probes(codes, names, annotations, "absent", 20,
                                    np.random.default_rng(0))
    by_person = probes.face_probes(codes, names, annotations,
                                     dict(zip(names, people.tolist())), 20,
                                     np.random.default_rng(0))
    assert by_person["split"]["by"] == "identity" and by_person["split"]["shared_people"] == 0
    assert by_person["split"]["fit_people"] + by_person["split"]["held_out_people"] == 30
    assert np.mean([r["all"] for r in by_image["landmarks_r2"].values()]) > 0.9
    assert np.mean([r["all"] for r in by_person["landmarks_r2"].values()]) < 0.1


def test_the_identity_file_is_read_and_checked(tmp_path):
    assert celeba.read_identities(tmp_path) == "identity_CelebA.txt is absent"
    (tmp_path / celeba.IDENTITIES).write_text("000001.jpg 2880\n000002.jpg 2937\n")
    assert celeba.read_identities(tmp_path) == {"000001.jpg": 2880, "000002.jpg": 2937}
    (tmp_path / celeba.IDENTITIES).write_text("000001.jpg 2880\n000002.jpg Anna\n")
    assert "row 2" in celeba.read_identities(tmp_path)
    header, table = celeba.parse_annotation("000003.jpg 7\n", "x", celeba.IDENTITIES)
    assert header == ["identity"] and table == {"000003.jpg": [7]}


# --- the report -------------------------------------------------------------------------------

def test_the_report_labels_both_measures_and_the_equal_capacity_column():
    row = {"core_r2": 0.01, "detail_r2": 0.02, "all_r2": 0.03, "measure": "balanced_accuracy",
           "chance": 1 / 3, "core": 0.91, "detail": 0.52, "all": 0.93, "core_best_k": 0.91,
           "detail_best_k": 0.44, "k": 8, "note": ""}
    factors = {"dataset": "built-in shapes", "images": 100, "probes": {"shape": row},
               "kinds": {"shape": "structure"}, "probe_k": 8, "classes": {"shape": 3},
               "structure_factors": ["shape"], "appearance_factors": [], "mig": 0.1,
               "dci": {"disentanglement": 0.1, "completeness": 0.1, "informativeness": 0.1},
               "sap": 0.1, "factor_vae": {"skipped": "x"}}
    text = "\n".join(report.factor_lines(factors))
    assert "| factor | kind | measure | chance | from core (8 dims) | from detail (all) | " \
           "from detail, best 8 | from all | classes | old: ridge R² core / detail / all |" \
           in text
    assert "| shape | structure | balanced accuracy | 0.333 | 0.91 | 0.52 | 0.44 | 0.93 | 3 | " \
           "0.01 / 0.02 / 0.03 |" in text
