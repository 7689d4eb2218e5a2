"""Disentanglement metrics on latent codes with known generating factors.

Pure functions on arrays: `codes` (N, D) are latent means, `factors` (N, K) ground-truth
generating factors (the built-in dataset's are in [0, 1], discrete ones included, e.g. a shape
index k / (n - 1)). Torch tensors and numpy arrays are both accepted; everything is computed in
float64 numpy and returned as Python floats, lists or numpy arrays. Entropies are in nats.

MIG, DCI, SAP and the FactorVAE score follow the definitions published in disentanglement_lib
(Locatello et al. 2019, "Challenging Common Assumptions in the Unsupervised Learning of
Disentangled Representations"), with its settings as defaults. Those definitions take discrete
factors as class labels. The caller says which factors are discrete (`discrete`: one flag per
factor, or one for all; never guessed from the values): a discrete factor keeps one class per
distinct value, however many there are (dSprites' 32 positions, MPI3D's 40 axis steps), and
only a continuous one is cut into `bins` equal-width bins first, exactly as a code dim is.
Each function's docstring says what it does where disentanglement_lib is undefined (a
constant factor, a single code dim).

The split of the BOM VAE latent into core dims (meant to carry STRUCTURE) and detail dims (meant
to carry APPEARANCE) is scored by `part_probe_table` (what each part predicts) and `specificity`
(what a traversal of each dim changes); `ridge_probe_r2` is the linear probe behind the former.
`logistic_probe_accuracy` is the one probe for classes (a category factor, CelebA's attributes):
scikit-learn's class-balanced logistic regression, scored by its balanced accuracy.
"""
import functools
import math
import warnings

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.svm import LinearSVC


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------
def _as_matrix(x, name):
    """A float64 (N, C) numpy copy of a tensor or array-like, checked for shape and NaN/inf."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, columns), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _codes_and_factors(codes, factors, codes_name="codes", factors_name="factors"):
    codes, factors = _as_matrix(codes, codes_name), _as_matrix(factors, factors_name)
    if codes.shape[0] != factors.shape[0]:
        raise ValueError(f"{codes_name} {codes.shape} and {factors_name} {factors.shape} "
                         f"have different numbers of samples")
    if codes.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {codes_name} {codes.shape}")
    return codes, factors


def _train_and_test(train_codes, train_factors, test_codes, test_factors):
    train_codes, train_factors = _codes_and_factors(train_codes, train_factors,
                                                    "train_codes", "train_factors")
    test_codes, test_factors = _codes_and_factors(test_codes, test_factors,
                                                  "test_codes", "test_factors")
    if (train_codes.shape[1] != test_codes.shape[1]
            or train_factors.shape[1] != test_factors.shape[1]):
        raise ValueError(f"train ({train_codes.shape}, {train_factors.shape}) and test "
                         f"({test_codes.shape}, {test_factors.shape}) have different widths")
    return train_codes, train_factors, test_codes, test_factors


# ---------------------------------------------------------------------------------------------
# Linear ridge probe
# ---------------------------------------------------------------------------------------------
def _column_stats(x):
    """Mean and std per column; a constant column gets std 1 so it standardises to zeros."""
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 0, std, 1.0)


def _fit_ridge(codes, factors, alpha):
    """Closed-form ridge regression of every factor on standardised codes.

    Returns (code_mean, code_std, factor_mean, weights (D, K)). The standardised training codes
    have zero mean, so the unpenalised intercept is exactly the factor mean and only the slopes
    are shrunk; alpha penalises the squared slopes against the summed squared error.
    """
    code_mean, code_std = _column_stats(codes)
    x = (codes - code_mean) / code_std
    factor_mean = factors.mean(axis=0)
    gram = x.T @ x + alpha * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, x.T @ (factors - factor_mean))
    return code_mean, code_std, factor_mean, weights


def _held_out_r2(fit, codes, factors):
    code_mean, code_std, factor_mean, weights = fit
    predicted = (codes - code_mean) / code_std @ weights + factor_mean
    residual = ((factors - predicted) ** 2).sum(axis=0)
    total = ((factors - factors.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - residual / total


def ridge_probe_r2(train_codes, train_factors, test_codes, test_factors, alpha=1e-2):
    """Held-out R^2 (K,) of a linear ridge regression predicting each factor from the codes.

    Codes are standardised with the training statistics and an unpenalised intercept is fitted,
    so the probe does not depend on the scale or offset of any code dim. R^2 uses the test-set
    mean as its baseline and is not clipped: a probe worse than that baseline is negative.
    A factor that is constant on the test set has no defined R^2 and gets nan.
    """
    train_codes, train_factors, test_codes, test_factors = _train_and_test(
        train_codes, train_factors, test_codes, test_factors)
    fit = _fit_ridge(train_codes, train_factors, alpha)
    return _held_out_r2(fit, test_codes, test_factors)


# ---------------------------------------------------------------------------------------------
# Discretisation shared by MIG, DCI and SAP
# ---------------------------------------------------------------------------------------------
def _histogram_left_edges(column, bins):
    """Left edges of np.histogram's `bins` equal-width bins over the column's range (np.histogram
    spans value +- 0.5 for a constant column, so that column lands in a single bin)."""
    return np.histogram(column, bins)[1][:-1]


def _histogram_discretise(column, bins):
    """disentanglement_lib's histogram discretiser: the label 1..bins of the equal-width bin
    each value falls in, bins spanning the column's own range (its maximum goes in the last)."""
    return np.digitize(column, _histogram_left_edges(column, bins))


def _discrete_flags(discrete, num_factors):
    """One bool per factor from `discrete`: a single bool for every factor, or one per factor
    (True: a class index, one class per distinct value; False: continuous, binned)."""
    if isinstance(discrete, (bool, np.bool_)):
        return [bool(discrete)] * num_factors
    flags = list(discrete)
    if len(flags) != num_factors or not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise ValueError(f"discrete must be one bool or {num_factors} bools (one per factor), "
                         f"got {discrete!r}")
    return [bool(f) for f in flags]


def _factor_labels(column, discrete, bins):
    """Class labels of one factor: one per distinct value if discrete (unevenly spaced values
    are never merged), else the histogram bin exactly as for a code dim."""
    if discrete:
        return np.unique(column, return_inverse=True)[1]
    return _histogram_discretise(column, bins)


def _train_test_factor_labels(train_column, test_column, discrete, bins):
    """Integer class labels of one factor on both splits, sharing one set of classes: a
    discrete factor gets one label per value (a test value never seen in training gets a label
    no classifier predicts); a continuous one is cut at the training histogram's edges, test
    values beyond the training range going into the end bins."""
    if discrete:
        labels = np.unique(np.r_[train_column, test_column], return_inverse=True)[1]
        return labels[:len(train_column)], labels[len(train_column):]
    edges = _histogram_left_edges(train_column, bins)
    return np.digitize(train_column, edges), np.maximum(np.digitize(test_column, edges), 1)


def _gap_of_top_two(scores):
    """Largest minus second largest entry; with a single entry the runner-up counts as 0."""
    top = np.sort(scores)[::-1]
    return float(top[0] - (top[1] if len(top) > 1 else 0.0))


def _mean_of_defined(values):
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")


# ---------------------------------------------------------------------------------------------
# Mutual information gap
# ---------------------------------------------------------------------------------------------
def _entropy(labels):
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_information(a, b):
    """Plug-in mutual information (nats) of two label arrays, from their joint histogram; the
    quantity sklearn.metrics.mutual_info_score computes."""
    rows, cols = a.max() + 1, b.max() + 1
    joint = np.bincount(a * cols + b, minlength=rows * cols).reshape(rows, cols) / len(a)
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())


def mutual_information_gap(codes, factors, *, discrete, bins=20):
    """MIG (Chen et al. 2018) as disentanglement_lib computes it: {"mig", "per_factor": [K]}.

    Each code dim is discretised into `bins` equal-width histogram bins over its own range;
    each factor becomes class labels: a discrete one (`discrete`, see the module docstring)
    one class per value, a continuous one the same histogram bins as a code. Per factor k:
    (I(v_k; z_best) - I(v_k; z_second)) / H(v_k), plug-in mutual information and entropy in
    nats; "mig" is the mean over factors.
    Beyond disentanglement_lib (which returns nan or fails here): a factor with one value has
    H = 0 and nothing to capture, so it is nan in per_factor and left out of "mig" ("mig" is nan
    only if every factor is constant); with a single code dim the runner-up counts as 0. The
    plug-in estimate is biased upwards by about (bins - 1)^2 / (2N) nats per pair, so with fewer
    samples than about bins^2 even an unrelated code shows some information.
    """
    codes, factors = _codes_and_factors(codes, factors)
    flags = _discrete_flags(discrete, factors.shape[1])
    code_labels = [_histogram_discretise(c, bins) for c in codes.T]
    per_factor = []
    for column, is_discrete in zip(factors.T, flags):
        factor_labels = _factor_labels(column, is_discrete, bins)
        entropy = _entropy(factor_labels)
        if entropy == 0.0:
            per_factor.append(float("nan"))
            continue
        information = [_mutual_information(c, factor_labels) for c in code_labels]
        per_factor.append(_gap_of_top_two(information) / entropy)
    return {"mig": _mean_of_defined(per_factor), "per_factor": per_factor}


# ---------------------------------------------------------------------------------------------
# DCI
# ---------------------------------------------------------------------------------------------
# disentanglement_lib adds this to every importance before normalising: it keeps log p finite
# and makes a slice with no importance at all uniform, i.e. score 0.
_IMPORTANCE_EPSILON = 1e-11


def _one_minus_normalised_entropy(importance, axis):
    """1 - H(p) / log(n) along `axis`, p the (importance + epsilon) normalised along it.

    With a single option (n = 1) there is nothing to spread over and the score is 1
    (disentanglement_lib would divide by log 1 = 0).
    """
    n = importance.shape[axis]
    if n == 1:
        return np.ones(importance.shape[1 - axis])
    p = importance + _IMPORTANCE_EPSILON
    p = p / p.sum(axis=axis, keepdims=True)
    return 1.0 + (p * np.log(p)).sum(axis=axis) / np.log(n)


def _importance_weighted_mean(scores, weights):
    """Mean of scores weighted by importance; plain mean when nothing is important at all."""
    total = weights.sum()
    return float(scores @ weights / total) if total > 0 else float(scores.mean())


def _fit_boosted_trees(train_codes, train_labels, test_codes, test_labels, n_estimators, seed):
    """|feature importances| (D,), train and test accuracy of a GradientBoostingClassifier."""
    model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)
    model.fit(train_codes, train_labels)
    return (np.abs(model.feature_importances_), model.score(train_codes, train_labels),
            model.score(test_codes, test_labels))


def dci(train_codes, train_factors, test_codes, test_factors, *, discrete, bins=20,
        n_estimators=100, seed=0):
    """DCI (Eastwood & Williams 2018) with gradient-boosted trees, as disentanglement_lib.

    Per factor k, a scikit-learn GradientBoostingClassifier with disentanglement_lib's settings
    (the defaults; `n_estimators` may be lowered to save time, `seed` fixes the trees' random
    tie-breaking) predicts the factor's class (one per value of a discrete factor, `bins`
    training-histogram bins of a continuous one: `_train_test_factor_labels`) from all codes.
    Importance R[d, k] = |feature_importances_|. Disentanglement: per code dim
    1 - H_K(p(k|d)), p(k|d) = R[d, k] / sum_k R[d, k], averaged with weights sum_k R[d, k].
    Completeness: per factor 1 - H_D(p(d|k)), averaged with weights sum_d R[d, k] (every fitted
    column sums to 1, so this is the plain mean over factors). Informativeness: mean held-out
    accuracy ("informativeness_train": on the training split).
    A factor with one value in training has no classifier to fit: its importance column is 0,
    it is left out of all three scores, which are nan if no factor is left.
    Returns {"disentanglement", "completeness", "informativeness", "informativeness_train",
    "importance": (D, K) lists}. Cost grows with samples x classes x n_estimators: about 20 s
    per 20-class factor on 1,600 x 32 codes with the default 100 trees on one core (a 40-class
    factor about twice that).
    """
    train_codes, train_factors, test_codes, test_factors = _train_and_test(
        train_codes, train_factors, test_codes, test_factors)
    flags = _discrete_flags(discrete, train_factors.shape[1])
    importance = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    train_accuracy, test_accuracy, fitted = [], [], []
    for k in range(train_factors.shape[1]):
        train_labels, test_labels = _train_test_factor_labels(
            train_factors[:, k], test_factors[:, k], flags[k], bins)
        if len(np.unique(train_labels)) < 2:
            continue
        importance[:, k], train_score, test_score = _fit_boosted_trees(
            train_codes, train_labels, test_codes, test_labels, n_estimators, seed)
        train_accuracy.append(train_score)
        test_accuracy.append(test_score)
        fitted.append(k)
    scores = {"disentanglement": float("nan"), "completeness": float("nan")}
    if fitted:
        used = importance[:, fitted]
        scores = {"disentanglement": _importance_weighted_mean(
                      _one_minus_normalised_entropy(used, axis=1), used.sum(axis=1)),
                  "completeness": _importance_weighted_mean(
                      _one_minus_normalised_entropy(used, axis=0), used.sum(axis=0))}
    return {**scores, "informativeness": _mean_of_defined(test_accuracy),
            "informativeness_train": _mean_of_defined(train_accuracy),
            "importance": importance.tolist()}


# ---------------------------------------------------------------------------------------------
# SAP
# ---------------------------------------------------------------------------------------------
# disentanglement_lib's threshold (sample variance) below which a code dim counts as constant.
_CONSTANT_VARIANCE = 1e-12


def _single_dim_accuracy(train_code, train_labels, test_code, test_labels):
    """Held-out accuracy of a linear SVM predicting the labels from one code dim."""
    if np.var(train_code, ddof=1) <= _CONSTANT_VARIANCE:
        return 0.0
    # dual=False: the primal solver reaches the same optimum as the dual one disentanglement_lib
    # ran (its sklearn's default), deterministically and without iteration-limit warnings.
    model = LinearSVC(C=0.01, class_weight="balanced", dual=False)
    model.fit(train_code[:, None], train_labels)
    return model.score(test_code[:, None], test_labels)


def sap(train_codes, train_factors, test_codes, test_factors, *, discrete, bins=20):
    """SAP score (Kumar et al. 2018) for discrete factors, as disentanglement_lib.

    S[d, k] = held-out accuracy of a scikit-learn LinearSVC(C=0.01, class_weight="balanced")
    trained to predict factor k's class (as in `dci`) from code dim d
    alone; SAP = mean over factors of the gap between the two largest S[d, k] over d.
    A code dim with (near) zero training variance scores 0 (disentanglement_lib's rule for its
    continuous variant; its discrete one would let such a dim score the share of whichever
    class the SVM falls back on). With a single code dim the runner-up counts as 0. A factor
    with one value in training has no classifier to fit: nan column, left out of the mean.
    Returns {"sap": float, "matrix": (D, K) lists}.
    """
    train_codes, train_factors, test_codes, test_factors = _train_and_test(
        train_codes, train_factors, test_codes, test_factors)
    flags = _discrete_flags(discrete, train_factors.shape[1])
    matrix = np.full((train_codes.shape[1], train_factors.shape[1]), np.nan)
    for k in range(train_factors.shape[1]):
        train_labels, test_labels = _train_test_factor_labels(
            train_factors[:, k], test_factors[:, k], flags[k], bins)
        if len(np.unique(train_labels)) < 2:
            continue
        matrix[:, k] = [_single_dim_accuracy(train_codes[:, d], train_labels,
                                             test_codes[:, d], test_labels)
                        for d in range(train_codes.shape[1])]
    gaps = [_gap_of_top_two(column) for column in matrix.T if not np.isnan(column).any()]
    return {"sap": _mean_of_defined(gaps), "matrix": matrix.tolist()}


# ---------------------------------------------------------------------------------------------
# FactorVAE score
# ---------------------------------------------------------------------------------------------
def _sampled_factors(sample_factors, n, num_factors, rng):
    factors = _as_matrix(sample_factors(n, rng), "sample_factors(n, rng)")
    if factors.shape != (n, num_factors):
        raise ValueError(f"sample_factors(n, rng) returned shape {factors.shape}, "
                         f"expected {(n, num_factors)}")
    return factors


def _represented(represent, factors):
    codes = _as_matrix(represent(factors), "represent(factors)")
    if codes.shape[0] != factors.shape[0]:
        raise ValueError(f"represent(factors) returned {codes.shape[0]} rows for "
                         f"{factors.shape[0]} factor vectors")
    return codes


def _votes(represent, sample_factors, num_factors, rng, batch_size, num_votes, global_variance,
           active):
    """(K, D) counts of (fixed factor, code dim of least normalised variance) over num_votes
    batches; each batch shares the value of one uniformly chosen factor."""
    votes = np.zeros((num_factors, len(active)), dtype=np.int64)
    active_dims = np.flatnonzero(active)
    for _ in range(num_votes):
        k = rng.integers(num_factors)
        factors = _sampled_factors(sample_factors, batch_size, num_factors, rng)
        factors[:, k] = factors[0, k]
        local_variance = np.var(_represented(represent, factors), axis=0, ddof=1)
        quietest = np.argmin(local_variance[active] / global_variance[active])
        votes[k, active_dims[quietest]] += 1
    return votes


def _majority_vote_accuracy(votes, classifier):
    """Share of votes whose factor is the one `classifier` assigns to their code dim."""
    return float(votes[classifier, np.arange(votes.shape[1])].sum() / votes.sum())


def factor_vae_score(represent, sample_factors, num_factors, rng, batch_size=64, num_train=10000,
                     num_eval=5000, num_variance_estimate=10000, prune_threshold=0.05):
    """FactorVAE score (Kim & Mnih 2018) as disentanglement_lib, with its published settings.

    sample_factors(n, rng) draws (n, num_factors) factor vectors; represent(factors) encodes
    the images with those factors into (n, D) codes. The global variance of each code dim is
    estimated (ddof=1) from num_variance_estimate random samples; dims whose global standard
    deviation is below prune_threshold are collapsed and pruned (constant ones always are).
    Each vote: choose a factor k uniformly, draw batch_size factor vectors, give them all the
    first one's value of k, encode, and vote for the active dim with the smallest variance
    divided by its global variance. The classifier maps each code dim to the factor that voted
    for it most in num_train training votes (ties to the lowest factor index); accuracy is the
    share of votes it gets right (train, and on num_eval fresh votes). rng is a numpy
    Generator, drawn from in that order. No active dim gives accuracies 0.
    Returns {"train_accuracy", "eval_accuracy", "num_active_dims"} (the number of unpruned
    dims; disentanglement_lib reports D there whatever was pruned).
    """
    if min(num_factors, num_train, num_eval) < 1 or min(batch_size, num_variance_estimate) < 2:
        raise ValueError("need num_factors, num_train, num_eval >= 1 and batch_size, "
                         "num_variance_estimate >= 2")
    global_variance = np.var(_represented(represent, _sampled_factors(
        sample_factors, num_variance_estimate, num_factors, rng)), axis=0, ddof=1)
    # A dim constant everywhere is pruned whatever the threshold: nothing to normalise by.
    active = (global_variance > 0) & (np.sqrt(global_variance) >= prune_threshold)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    vote = functools.partial(_votes, represent, sample_factors, num_factors, rng, batch_size,
                             global_variance=global_variance, active=active)
    train_votes = vote(num_train)
    classifier = np.argmax(train_votes, axis=0)
    return {"train_accuracy": _majority_vote_accuracy(train_votes, classifier),
            "eval_accuracy": _majority_vote_accuracy(vote(num_eval), classifier),
            "num_active_dims": int(active.sum())}


# ---------------------------------------------------------------------------------------------
# Core / detail split
# ---------------------------------------------------------------------------------------------
def part_probe_table(train_codes, train_factors, test_codes, test_factors, core_dim, factor_names):
    """{factor name: {"core_r2", "detail_r2", "all_r2"}}: held-out ridge R^2 of each factor from
    codes[:, :core_dim], codes[:, core_dim:] and all codes.

    This is how "core -> structure, detail -> appearance" becomes numbers: a structure factor
    should have high core_r2 and detail_r2 near 0, an appearance factor the reverse. An empty
    part (core_dim 0 or D) predicts the training mean, so its R^2 is at most about 0.
    """
    train_codes, train_factors, test_codes, test_factors = _train_and_test(
        train_codes, train_factors, test_codes, test_factors)
    if not 0 <= core_dim <= train_codes.shape[1]:
        raise ValueError(f"core_dim {core_dim} outside 0..{train_codes.shape[1]}")
    if len(factor_names) != train_factors.shape[1]:
        raise ValueError(f"{len(factor_names)} factor names for {train_factors.shape[1]} factors")
    parts = {"core_r2": slice(0, core_dim), "detail_r2": slice(core_dim, None),
             "all_r2": slice(None)}
    r2 = {part: ridge_probe_r2(train_codes[:, dims], train_factors,
                               test_codes[:, dims], test_factors)
          for part, dims in parts.items()}
    return {name: {part: float(values[k]) for part, values in r2.items()}
            for k, name in enumerate(factor_names)}


# A part whose dims together change the decoded image by less than this (in the units of
# `specificity`'s effects: how much the reconstructions of two different images differ) has
# too little effect to have a specificity.
MIN_PART_EFFECT = 1e-3


def specificity(effects, core_dim, min_part_effect=MIN_PART_EFFECT):
    """How specifically each part of the latent changes what it is meant to change.

    effects: (D, 2) non-negative; column 0 how much a traversal of dim d changes STRUCTURE,
    column 1 how much it changes APPEARANCE, each in units of how much the reconstructions of
    two different images differ (split_measures.behaviour_report). Returns {"structure_share":
    [D], "core_specificity", "detail_specificity", "core_effect", "detail_effect"}: the
    structure share of dim d is s_d = e0 / (e0 + e1) (nan for a dim with no effect at all); core
    specificity is the effect-weighted mean of s_d over the core dims (:core_dim), i.e. the core
    traversals' summed structure effect over their summed effect, and detail specificity the
    same for the appearance share over the detail dims. A dim counts as much as it changes the
    image, so dims that hardly change anything cannot move a part's score. A part's effect is
    the sum of e0 + e1 over its dims; below min_part_effect (1/1000 of the reconstructions'
    spread by default) the part, or an empty one, has specificity nan. The scores do not change
    when every effect is scaled by the same factor above that floor.
    """
    effects = _as_matrix(effects, "effects")
    if effects.shape[1] != 2:
        raise ValueError(f"effects must be (D, 2), got shape {effects.shape}")
    if (effects < 0).any():
        raise ValueError("effects must be non-negative")
    if not 0 <= core_dim <= effects.shape[0]:
        raise ValueError(f"core_dim {core_dim} outside 0..{effects.shape[0]}")
    total = effects.sum(axis=1)
    share = np.where(total > 0, effects[:, 0] / np.where(total > 0, total, 1.0), np.nan)

    def weighted(dims, column):
        part_effect = float(total[dims].sum())
        if not part_effect >= min_part_effect or part_effect == 0.0:
            return math.nan, part_effect
        return float(effects[dims, column].sum() / part_effect), part_effect

    core, core_effect = weighted(slice(0, core_dim), 0)
    detail, detail_effect = weighted(slice(core_dim, None), 1)
    return {"structure_share": share.tolist(), "core_specificity": core,
            "detail_specificity": detail, "core_effect": core_effect,
            "detail_effect": detail_effect}


# ---------------------------------------------------------------------------------------------
# Like-with-like probes: the measure a factor's kind calls for, at equal capacity
# ---------------------------------------------------------------------------------------------
R2, BALANCED_ACCURACY = "r2", "balanced_accuracy"


def univariate_scores(train_codes, train_target, measure):
    """(D,) how much each code dim alone says about the target, on the fit split only.

    measure R2 (target (N, T) real): the squared Pearson correlation of the dim with each
    target column, averaged over the columns (a single dim's least-squares R^2).
    measure BALANCED_ACCURACY (target (N,) class labels): eta^2, the share of the dim's
    variance that lies between the class means (the R^2 of explaining the dim by the class).
    A constant dim, or a constant target column, scores 0."""
    x = _as_matrix(train_codes, "train_codes")
    centred = x - x.mean(axis=0)
    total = (centred ** 2).sum(axis=0)
    if measure == BALANCED_ACCURACY:
        labels = np.asarray(train_target).reshape(-1)
        between = np.zeros(x.shape[1])
        for label in np.unique(labels):
            rows = labels == label
            between += rows.sum() * (x[rows].mean(axis=0) - x.mean(axis=0)) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, between / np.where(total > 0, total, 1.0), 0.0)
    y = _as_matrix(np.asarray(train_target, dtype=np.float64).reshape(len(x), -1),
                   "train_target")
    y = y - y.mean(axis=0)
    y_total = (y ** 2).sum(axis=0)
    covariance = centred.T @ y                                   # (D, T)
    denominator = np.outer(total, y_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(denominator > 0, covariance ** 2 / np.where(denominator > 0,
                                                                  denominator, 1.0), 0.0)
    return r2.mean(axis=1)


def best_dims(train_codes, train_target, k, measure):
    """The k dims (column indices, best first) with the highest univariate_scores on the fit
    split; ties go to the lower index. k larger than the width keeps every dim."""
    scores = univariate_scores(train_codes, train_target, measure)
    order = np.argsort(-scores, kind="stable")
    return order[:max(0, min(int(k), len(order)))].tolist()


def balanced_accuracy(truth, predicted):
    """scikit-learn's balanced accuracy: the mean over the classes in `truth` of the share of
    that class predicted right (chance: 1 / classes, whatever the class sizes). A predicted
    class that `truth` lacks is only a wrong guess, so scikit-learn's warning about it, which
    would print amid an evaluation's output, is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return balanced_accuracy_score(np.asarray(truth).reshape(-1),
                                       np.asarray(predicted).reshape(-1))


def logistic_probe_accuracy(train_codes, train_labels, test_codes, test_labels, c=1.0,
                            max_iter=1000):
    """Held-out balanced accuracy of a class-balanced multinomial logistic regression (L2,
    inverse strength c, on codes standardised with the training statistics) predicting a class
    label from the codes. No code dims: the probe has nothing to go on and predicts one class
    (balanced accuracy 1 / the test set's classes). NaN when the training or the test labels
    hold a single class."""
    train_labels = np.asarray(train_labels).reshape(-1)
    test_labels = np.asarray(test_labels).reshape(-1)
    if len(np.unique(train_labels)) < 2 or len(np.unique(test_labels)) < 2:
        return math.nan
    train_codes = np.asarray(train_codes, dtype=np.float64).reshape(len(train_labels), -1)
    test_codes = np.asarray(test_codes, dtype=np.float64).reshape(len(test_labels), -1)
    if train_codes.shape[1] == 0:
        return 1.0 / len(np.unique(test_labels))
    mean, std = _column_stats(train_codes)
    probe = LogisticRegression(C=c, class_weight="balanced", max_iter=max_iter)
    probe.fit((train_codes - mean) / std, train_labels)
    return balanced_accuracy(test_labels, probe.predict((test_codes - mean) / std))


def probe_score(train_codes, train_target, test_codes, test_target, measure):
    """One held-out score: R2, the ridge probe's R^2 averaged over the target's columns (nan
    where the test target is constant); BALANCED_ACCURACY, logistic_probe_accuracy."""
    if measure == BALANCED_ACCURACY:
        return logistic_probe_accuracy(train_codes, train_target, test_codes, test_target)
    train_target = np.asarray(train_target, dtype=np.float64).reshape(len(train_codes), -1)
    test_target = np.asarray(test_target, dtype=np.float64).reshape(len(test_codes), -1)
    r2 = ridge_probe_r2(train_codes, train_target, test_codes, test_target)
    return float(np.mean(r2))


def part_probes(train_codes, train_target, test_codes, test_target, core_dim, measure):
    """The same probe from each part of the latent, at full width and at equal capacity.

    Returns {"core", "detail", "all": the probe on every dim of the part; "core_best_k",
    "detail_best_k": the probe on the part's k = core_dim best dims (fewer if the part has
    fewer), chosen by univariate_scores on the training split only and then scored on the test
    split like the rest; "k"; "core_dims", "detail_dims": the dims chosen (latent indices)}.
    The core part has exactly k dims, so core_best_k is core; detail_best_k is what detail
    predicts with no more dims than core has, the capacity-fair comparison."""
    train_codes, test_codes = (np.asarray(a, dtype=np.float64) for a in (train_codes,
                                                                         test_codes))
    width = train_codes.shape[1]
    if not 0 <= core_dim <= width:
        raise ValueError(f"core_dim {core_dim} outside 0..{width}")
    parts = {"core": np.arange(0, core_dim), "detail": np.arange(core_dim, width),
             "all": np.arange(width)}
    out = {part: probe_score(train_codes[:, dims], train_target, test_codes[:, dims],
                             test_target, measure) for part, dims in parts.items()}
    out["k"] = int(core_dim)
    for part in ("core", "detail"):
        dims = parts[part]
        chosen = dims[best_dims(train_codes[:, dims], train_target, core_dim, measure)]
        out[f"{part}_best_k"] = probe_score(train_codes[:, chosen], train_target,
                                            test_codes[:, chosen], test_target, measure)
        out[f"{part}_dims"] = [int(d) for d in chosen]
    return out


PART_SCORES = ("core", "detail", "all", "core_best_k", "detail_best_k")


def grouped_part_probes(train_codes, train_target, test_codes, test_target, core_dim, measure,
                        train_groups, test_groups):
    """part_probes fitted and scored within each group (e.g. the images of one shape, for a
    target only defined given the shape), each score the mean over the groups that have a
    score; groups absent from either split are left out. Adds "groups": {group: its own
    part_probes}."""
    train_groups, test_groups = np.asarray(train_groups), np.asarray(test_groups)
    train_target, test_target = np.asarray(train_target), np.asarray(test_target)
    per_group = {}
    for group in np.unique(train_groups):
        fit, held = train_groups == group, test_groups == group
        if fit.sum() < 2 or held.sum() < 2:
            continue
        per_group[group.item() if hasattr(group, "item") else group] = part_probes(
            np.asarray(train_codes)[fit], train_target[fit], np.asarray(test_codes)[held],
            test_target[held], core_dim, measure)
    out = {"k": int(core_dim), "groups": per_group}
    for key in PART_SCORES:
        values = [g[key] for g in per_group.values() if np.isfinite(g[key])]
        out[key] = float(np.mean(values)) if values else math.nan
    return out
