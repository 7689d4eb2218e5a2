"""Disentanglement metrics on latent codes with known generating factors.

Pure functions on arrays: `codes` (N, D) are latent means, `factors` (N, K) ground-truth
generating factors in [0, 1] (discrete ones included, e.g. a shape index k / (n - 1)). Torch
tensors and numpy arrays are both accepted; everything is computed in float64 numpy and returned
as Python floats, lists or numpy arrays. Entropies are in nats.

The split of the BOM VAE latent into core dims (meant to carry STRUCTURE) and detail dims (meant
to carry APPEARANCE) is scored by `part_probe_table` (what each part predicts) and `specificity`
(what a traversal of each dim changes).
"""
import numpy as np
import torch


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
# Mutual information gap
# ---------------------------------------------------------------------------------------------
def _equal_width_bins(column, bins):
    """Bin index 0..bins-1 of every value, bins spanning the column's own range."""
    edges = np.linspace(column.min(), column.max(), bins + 1)[1:-1]
    return np.digitize(column, edges)


def _discretise_factor(column, bins):
    """A factor with at most `bins` distinct values keeps one bin per value (so unevenly spaced
    discrete values are never merged); a continuous one gets `bins` equal-width bins."""
    values, labels = np.unique(column, return_inverse=True)
    return labels if len(values) <= bins else _equal_width_bins(column, bins)


def _entropy(labels):
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_information(a, b):
    """Plug-in mutual information of two label arrays, from their joint histogram."""
    rows, cols = a.max() + 1, b.max() + 1
    joint = np.bincount(a * cols + b, minlength=rows * cols).reshape(rows, cols) / len(a)
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())


def mutual_information_gap(codes, factors, bins=20):
    """MIG (Chen et al. 2018): {"mig": float, "per_factor": [K floats]}.

    Each code dim is cut into `bins` equal-width bins over its range, each factor into
    min(bins, number of distinct values) bins (one per distinct value when there are few).
    Per factor: (largest - second largest mutual information with a code dim) / H(factor); with
    a single code dim the second largest is taken as 0. Factors with zero entropy (constant)
    carry no information to capture: they are nan in per_factor and left out of "mig", which is
    nan only when every factor is constant. The plug-in estimate is biased upwards by roughly
    (bins - 1)^2 / (2N) nats per pair, so use N well above bins^2.
    """
    codes, factors = _codes_and_factors(codes, factors)
    code_labels = [_equal_width_bins(c, bins) for c in codes.T]
    per_factor = []
    for column in factors.T:
        factor_labels = _discretise_factor(column, bins)
        entropy = _entropy(factor_labels)
        if entropy == 0.0:
            per_factor.append(float("nan"))
            continue
        information = sorted((_mutual_information(c, factor_labels) for c in code_labels),
                             reverse=True) + [0.0]
        per_factor.append((information[0] - information[1]) / entropy)
    valid = [g for g in per_factor if not np.isnan(g)]
    return {"mig": float(np.mean(valid)) if valid else float("nan"), "per_factor": per_factor}


# ---------------------------------------------------------------------------------------------
# DCI
# ---------------------------------------------------------------------------------------------
def _one_minus_normalised_entropy(importance, axis):
    """1 - H(p) / log(n) along `axis`, p the importance normalised along it.

    With a single option (n = 1) the normalised entropy is defined as 0, so the score is 1.
    A slice with no importance at all is treated as uniform (score 0): nothing singles it out.
    """
    n = importance.shape[axis]
    if n == 1:
        return np.ones(importance.shape[1 - axis])
    total = importance.sum(axis=axis, keepdims=True)
    p = np.where(total > 0, importance / np.where(total > 0, total, 1.0), 1.0 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return 1.0 + plogp.sum(axis=axis) / np.log(n)


def dci(train_codes, train_factors, test_codes, test_factors, alpha=1e-2):
    """DCI (Eastwood & Williams 2018) with a linear ridge regressor.

    Importance R[d, k] = |standardised coefficient| of code dim d for factor k: both codes and
    factors are standardised with training statistics, so no factor dominates through its range.
    Disentanglement: per code dim 1 - H_K(p(k|d)), averaged with weights sum_k R[d, k] / sum R
    (0 if nothing is important at all). Completeness: per factor 1 - H_D(p(d|k)), averaged over
    factors. Informativeness: mean held-out R^2 of the same probe (see `ridge_probe_r2`).
    Returns {"disentanglement", "completeness", "informativeness", "importance": (D, K) lists}.
    """
    train_codes, train_factors, test_codes, test_factors = _train_and_test(
        train_codes, train_factors, test_codes, test_factors)
    fit = _fit_ridge(train_codes, train_factors, alpha)
    factor_std = _column_stats(train_factors)[1]
    importance = np.abs(fit[3]) / factor_std
    total = importance.sum()
    per_dim = _one_minus_normalised_entropy(importance, axis=1)
    disentanglement = float(per_dim @ importance.sum(axis=1) / total) if total > 0 else 0.0
    completeness = float(_one_minus_normalised_entropy(importance, axis=0).mean())
    return {
        "disentanglement": disentanglement,
        "completeness": completeness,
        "informativeness": float(np.mean(_held_out_r2(fit, test_codes, test_factors))),
        "importance": importance.tolist(),
    }


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


def specificity(effects, core_dim):
    """How specifically each part of the latent changes what it is meant to change.

    effects: (D, 2) non-negative; column 0 how much a traversal of dim d changes STRUCTURE,
    column 1 how much it changes APPEARANCE, already on comparable scales. Returns
    {"structure_share": [D floats], "core_specificity": float, "detail_specificity": float} with
    structure share s_d = e0 / (e0 + e1), core specificity the mean s_d over core dims
    (:core_dim) and detail specificity the mean appearance share 1 - s_d over detail dims.
    Dims with no effect at all (e0 = e1 = 0) have s_d = nan and are left out of the means; a
    part with no effective dim (or no dims) has specificity nan.
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
    return {
        "structure_share": share.tolist(),
        "core_specificity": _mean_of_defined(share[:core_dim]),
        "detail_specificity": _mean_of_defined(1.0 - share[core_dim:]),
    }


def _mean_of_defined(values):
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")
