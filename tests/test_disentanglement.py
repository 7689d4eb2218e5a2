"""Disentanglement metrics on synthetic codes whose answer is known by construction, their edge
cases and their input checks. tests/test_metric_definitions.py compares MIG, DCI, SAP and the
FactorVAE score with values computed independently from disentanglement_lib's definitions."""
import math

import numpy as np
import pytest
import torch

from disentanglement import (MIN_PART_EFFECT, dci, factor_vae_score, mutual_information_gap,
                             part_probe_table, ridge_probe_r2, sap, specificity)

N, K = 5000, 4
# Few samples for the metrics that fit classifiers (DCI, SAP), so each call takes about a second.
N_FIT, N_TEST = 300, 150
# An orthogonal matrix whose entries all have the same magnitude: every code is an equal mix of
# every factor, so no code dim singles out a factor while all linear information is kept.
EQUAL_MIX = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def split(rng):
    """Independent uniform (continuous) train and test factors, (N, K) each."""
    return rng.uniform(size=(N, K)), rng.uniform(size=(N, K))


@pytest.fixture
def discrete_split(rng):
    """Independent 3-valued train and test factors k / 2, (N_FIT, K) and (N_TEST, K)."""
    return rng.integers(0, 3, size=(N_FIT, K)) / 2.0, rng.integers(0, 3, size=(N_TEST, K)) / 2.0


def noisy(rng, x, scale=1e-3):
    return x + scale * rng.standard_normal(x.shape)


def aligned_codes(rng, train, test):
    """Codes that are the factors, one dim each, plus a little noise."""
    return noisy(rng, train, 0.05), noisy(rng, test, 0.05)


# --------------------------------------------------------------------------- ridge probe
def test_ridge_probe_keeps_linear_information_whether_codes_are_aligned_or_mixed(rng, split):
    train, test = split
    assert np.all(ridge_probe_r2(noisy(rng, train), train, noisy(rng, test), test) > 0.99)
    assert np.all(ridge_probe_r2(noisy(rng, train @ EQUAL_MIX), train,
                                 noisy(rng, test @ EQUAL_MIX), test) > 0.99)


def test_codes_independent_of_factors_carry_nothing(rng, split):
    train, test = split
    train_codes, test_codes = rng.standard_normal((N, K)), rng.standard_normal((N, K))
    assert np.all(np.abs(ridge_probe_r2(train_codes, train, test_codes, test)) < 0.05)
    assert mutual_information_gap(train_codes, train, discrete=False)["mig"] < 0.05


def test_r2_ignores_the_scale_and_offset_of_code_dims(rng, split):
    # Tiny codes far from zero: without standardisation the penalty would swamp the signal,
    # and without an intercept the offset would bias every prediction.
    train, test = split
    train_codes, test_codes = noisy(rng, train), noisy(rng, test)
    scale, offset = np.array([1e-4, 1e-3, 1.0, 1e3]), 100.0
    reference = ridge_probe_r2(train_codes, train, test_codes, test)
    rescaled = ridge_probe_r2(train_codes * scale + offset, train,
                              test_codes * scale + offset, test)
    np.testing.assert_allclose(rescaled, reference, atol=1e-6)


def test_r2_is_negative_when_the_probe_is_worse_than_the_test_mean(rng):
    # The test factor is shifted away from everything seen in training: the probe predicts the
    # training mean, which is far from the test mean.
    codes = rng.standard_normal((200, 2))
    r2 = ridge_probe_r2(codes, rng.uniform(size=(200, 1)), codes, rng.uniform(size=(200, 1)) + 5)
    assert r2[0] < -100


# --------------------------------------------------------------------------- MIG
def test_mig_of_noisy_continuous_factors_is_high_and_of_mixed_ones_low(rng, split):
    train = split[0]
    assert mutual_information_gap(noisy(rng, train), train, discrete=False)["mig"] > 0.8
    assert mutual_information_gap(noisy(rng, train @ EQUAL_MIX), train,
                                  discrete=False)["mig"] < 0.3


@pytest.mark.parametrize("factor, discrete",
                         [(np.arange(N) % 3 / 2.0, True), (np.linspace(0.0, 1.0, N), False)],
                         ids=["discrete", "continuous"])
def test_a_code_that_copies_a_factor_next_to_a_constant_code_has_mig_one(factor, discrete):
    # The copy's bins separate the 3 classes, or are the continuous factor's own bins, so
    # I(copy; factor) = H(factor); the constant code sits in one bin and shares nothing.
    codes = np.c_[factor, np.full(N, 3.0)]
    assert mutual_information_gap(codes, factor[:, None], discrete=discrete)["per_factor"] == \
        [pytest.approx(1.0, abs=1e-12)]


def test_mig_is_the_margin_between_the_best_dim_and_the_runner_up(rng):
    factor = rng.uniform(size=(N, 1))
    exact = noisy(rng, factor)
    loose = noisy(rng, factor, 0.3)
    assert mutual_information_gap(np.c_[exact, loose], factor, discrete=False)["mig"] > 0.5
    tied = mutual_information_gap(np.c_[exact, exact], factor, discrete=False)["mig"]
    assert tied == pytest.approx(0.0, abs=1e-9)


def test_mig_leaves_out_a_factor_with_one_value(rng):
    shape = rng.integers(0, 3, N) / 2.0  # a 3-valued shape index k / (n - 1)
    codes = np.c_[noisy(rng, shape), rng.standard_normal(N)]
    result = mutual_information_gap(codes, np.c_[shape, np.full(N, 0.5)], discrete=True)
    assert result["per_factor"][0] == pytest.approx(1.0, abs=0.01)  # normalised by H(shape)
    assert math.isnan(result["per_factor"][1])
    assert result["mig"] == result["per_factor"][0]
    assert math.isnan(mutual_information_gap(codes, np.full((N, 1), 0.5), discrete=True)["mig"])


def test_mig_of_a_discrete_factor_ignores_the_spacing_of_its_values(rng):
    # 20 equal-width bins would put 0 and 0.02 in one bin; MIG must see three values either way.
    uneven = rng.choice([0.0, 0.02, 1.0], N)
    even = np.searchsorted([0.0, 0.02, 1.0], uneven) / 2.0
    codes = np.c_[noisy(rng, (uneven == 0.02).astype(float)), rng.standard_normal(N)]
    np.testing.assert_allclose(
        mutual_information_gap(codes, uneven[:, None], discrete=True)["per_factor"],
        mutual_information_gap(codes, even[:, None], discrete=True)["per_factor"])


def test_mig_with_fewer_samples_than_bins_sees_information_everywhere():
    # 5 samples, 20 bins: a code whose values land in 5 different bins determines any factor,
    # so a shuffled code ties with the exact copy (gap 0), while a constant code still
    # shares nothing (gap 1). MIG needs many more samples than bins.
    factor = np.arange(5.0)[:, None]
    shuffled = np.array([0.0, 3.0, 1.0, 4.0, 2.0])
    assert mutual_information_gap(np.c_[factor, shuffled], factor, discrete=True)["mig"] == \
        pytest.approx(0.0, abs=1e-12)
    assert mutual_information_gap(np.c_[factor, np.zeros(5)], factor, discrete=True)["mig"] == \
        pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- DCI
def test_dci_of_aligned_codes_is_perfect_and_of_mixed_codes_entangled(rng, discrete_split):
    train, test = discrete_split
    train_codes, test_codes = aligned_codes(rng, train, test)
    aligned = dci(train_codes, train, test_codes, test, discrete=True)
    assert aligned["disentanglement"] > 0.98 and aligned["completeness"] > 0.98
    assert aligned["informativeness"] > 0.98 and aligned["informativeness_train"] > 0.98
    assert np.argmax(aligned["importance"], axis=1).tolist() == list(range(K))
    mixed = dci(noisy(rng, train @ EQUAL_MIX, 0.05), train, noisy(rng, test @ EQUAL_MIX, 0.05),
                test, discrete=True)
    assert mixed["disentanglement"] < 0.2 and mixed["completeness"] < 0.2
    assert mixed["informativeness"] > 0.7  # the trees still read every factor off the mix


def test_a_factor_spread_over_two_dims_lowers_completeness_only(rng, discrete_split):
    train, test = discrete_split
    duplicated = dci(noisy(rng, np.c_[train, train[:, :1]], 0.05), train,
                     noisy(rng, np.c_[test, test[:, :1]], 0.05), test, discrete=True)
    assert duplicated["completeness"] < 0.95
    assert duplicated["disentanglement"] > 0.95
    assert np.array(duplicated["importance"]).shape == (K + 1, K)


def test_an_unused_or_constant_code_dim_does_not_lower_disentanglement(rng, discrete_split):
    # Dims are weighted by their share of the importance, so a dim that predicts nothing counts
    # for almost nothing even though its own p(k|d) is close to uniform.
    train, test = discrete_split
    train_codes, test_codes = aligned_codes(rng, train, test)
    with_unused = dci(np.c_[train_codes, rng.standard_normal(N_FIT)], train,
                      np.c_[test_codes, rng.standard_normal(N_TEST)], test, discrete=True)
    assert with_unused["disentanglement"] > 0.98
    with_constant = dci(np.c_[train_codes, np.ones(N_FIT)], train,
                        np.c_[test_codes, np.ones(N_TEST)], test, discrete=True)
    assert with_constant["importance"][K] == [0.0] * K  # no tree can split on it
    assert with_constant["disentanglement"] > 0.98


def test_dci_of_constant_codes_is_zero(discrete_split):
    # No importance anywhere: every p is uniform, so nothing is disentangled or complete.
    train, test = discrete_split
    scores = dci(np.ones((N_FIT, 3)), train, np.ones((N_TEST, 3)), test, discrete=True)
    assert np.all(np.array(scores["importance"]) == 0.0)
    assert scores["disentanglement"] == pytest.approx(0.0, abs=1e-9)
    assert scores["completeness"] == pytest.approx(0.0, abs=1e-9)


def test_dci_leaves_out_a_factor_with_one_value(rng, discrete_split):
    train, test = discrete_split
    train_codes, test_codes = aligned_codes(rng, train, test)
    without = dci(train_codes, train, test_codes, test, discrete=True)
    scores = dci(train_codes, np.c_[train, np.full(N_FIT, 0.5)],
                 test_codes, np.c_[test, np.full(N_TEST, 0.5)], discrete=True)
    assert [row[K] for row in scores["importance"]] == [0.0] * K
    for key in ("disentanglement", "completeness", "informativeness"):
        assert scores[key] == pytest.approx(without[key], abs=1e-12)
    assert math.isnan(dci(train_codes, np.zeros((N_FIT, 1)), test_codes,
                          np.zeros((N_TEST, 1)), discrete=True)["disentanglement"])


def test_dci_importance_ignores_the_scale_of_code_dims(rng, discrete_split):
    # Trees only compare values within a dim, so rescaling a dim changes no split.
    train, test = discrete_split
    train_codes, test_codes = aligned_codes(rng, train, test)
    scale = np.array([1e-3, 1e-1, 1.0, 1e3])
    np.testing.assert_allclose(dci(train_codes * scale, train, test_codes * scale, test,
                                   discrete=True)["importance"],
                               dci(train_codes, train, test_codes, test,
                                   discrete=True)["importance"], atol=1e-9)


def test_single_code_dim_and_single_factor_give_finite_scores(rng, discrete_split):
    train, test = discrete_split
    train_codes, test_codes = aligned_codes(rng, train, test)
    scores = dci(train_codes[:, :1], train[:, :1], test_codes[:, :1], test[:, :1], discrete=True)
    assert scores["disentanglement"] == 1.0 and scores["completeness"] == 1.0
    assert mutual_information_gap(train_codes[:, :1], train[:, :1], discrete=True)["mig"] > 0.9
    scores = dci(train_codes[:, :1], train[:, :2], test_codes[:, :1], test[:, :2], discrete=True)
    assert all(math.isfinite(scores[k])
               for k in ("disentanglement", "completeness", "informativeness"))
    assert scores["completeness"] == 1.0  # one dim: nothing to spread over


def test_dci_and_sap_with_fewer_samples_than_bins(rng):
    # 12 training samples, 20 bins. Marked discrete, each of the 12 values is its own class, so
    # every training class has one sample and no test value was seen: held-out accuracy 0.
    # Marked continuous, the factor is cut at the training histogram's edges instead, so test
    # values share bins with training ones. Either way the scores are defined, nothing fails.
    train, test = rng.uniform(size=(12, 2)), rng.uniform(size=(6, 2))
    train_codes, test_codes = noisy(rng, train), noisy(rng, test)
    scores = dci(train_codes, train, test_codes, test, discrete=True, n_estimators=5)
    assert scores["informativeness"] == 0.0 and scores["informativeness_train"] == 1.0
    assert all(math.isfinite(scores[k]) for k in ("disentanglement", "completeness"))
    assert sap(train_codes, train, test_codes, test, discrete=True)["sap"] == 0.0
    binned = dci(train_codes, train, test_codes, test, discrete=False, n_estimators=5)
    assert all(math.isfinite(binned[k])
               for k in ("disentanglement", "completeness", "informativeness"))
    assert binned["informativeness"] > 0.0
    assert math.isfinite(sap(train_codes, train, test_codes, test, discrete=False)["sap"])


# --------------------------------------------------------------------------- SAP
def test_sap_is_the_accuracy_margin_of_the_best_single_dim(rng):
    # A binary factor read exactly off dim 0 (accuracy 1) while dim 1 is noise (about 0.5, as
    # balanced classes give) and dim 2 constant (0 by definition).
    train, test = rng.integers(0, 2, (400, 1)) * 1.0, rng.integers(0, 2, (200, 1)) * 1.0

    def codes(factor):
        return np.c_[noisy(rng, factor, 0.1), rng.standard_normal(len(factor)),
                     np.full(len(factor), 2.0)]

    result = sap(codes(train), train, codes(test), test, discrete=True)
    matrix = np.array(result["matrix"])[:, 0]
    assert matrix[0] == 1.0 and abs(matrix[1] - 0.5) < 0.1 and matrix[2] == 0.0
    assert result["sap"] == pytest.approx(1.0 - matrix[1], abs=1e-12)
    copies = np.c_[train, train]
    # A tie is no margin; with one dim the runner-up counts as 0.
    assert sap(copies, train, np.c_[test, test], test, discrete=True)["sap"] == 0.0
    assert sap(train, train, test, test, discrete=True)["sap"] == 1.0


def test_sap_leaves_out_a_factor_with_one_value(rng, discrete_split):
    train, test = discrete_split
    train_codes, test_codes = aligned_codes(rng, train, test)
    scores = sap(train_codes, np.c_[train, np.zeros(N_FIT)], test_codes,
                 np.c_[test, np.zeros(N_TEST)], discrete=True)
    assert all(math.isnan(row[K]) for row in scores["matrix"])
    assert scores["sap"] == sap(train_codes, train, test_codes, test, discrete=True)["sap"]


# --------------------------------------------------------------------------- FactorVAE score
def uniform_factors(n, rng):
    return rng.uniform(size=(n, K))


FAST_VOTES = dict(batch_size=32, num_train=400, num_eval=400, num_variance_estimate=1000)


def test_factor_vae_score_of_the_factors_themselves_is_one(rng):
    # Fixing factor k makes code dim k constant in the batch: every vote is right.
    result = factor_vae_score(lambda f: f, uniform_factors, K, rng, **FAST_VOTES)
    assert result == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": K}


def test_factor_vae_score_of_noise_is_chance(rng):
    noise = np.random.default_rng(1)
    result = factor_vae_score(lambda f: noise.standard_normal((len(f), 6)), uniform_factors, K,
                              rng, **FAST_VOTES)
    assert abs(result["eval_accuracy"] - 1 / K) < 0.1
    assert result["num_active_dims"] == 6


def test_factor_vae_score_prunes_collapsed_dims(rng):
    # A dim whose standard deviation is below the threshold (or zero) cannot vote; one with std
    # about 0.12 (variance 0.013, below the threshold) is kept, since the threshold is on the
    # std. With every dim collapsed there is no classifier and the score is 0.
    def with_small_dims(f):
        return np.c_[f, 0.4 * f[:, :1], 0.01 * f[:, :1], np.full(len(f), 7.0)]

    result = factor_vae_score(with_small_dims, uniform_factors, K, rng, **FAST_VOTES)
    assert result == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": K + 1}
    unpruned = factor_vae_score(with_small_dims, uniform_factors, K, rng, prune_threshold=0.0,
                                **FAST_VOTES)  # the constant dim still goes: 0 / 0 is no vote
    assert unpruned == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": K + 2}
    collapsed = factor_vae_score(lambda f: 0.01 * f, uniform_factors, K, rng, **FAST_VOTES)
    assert collapsed == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_factor_vae_score_checks_what_its_callbacks_return(rng):
    with pytest.raises(ValueError, match=r"sample_factors.*\(1000, 3\).*\(1000, 4\)"):
        factor_vae_score(lambda f: f, lambda n, r: r.uniform(size=(n, 3)), K, rng, **FAST_VOTES)
    with pytest.raises(ValueError, match=r"represent\(factors\) returned 999 rows"):
        factor_vae_score(lambda f: f[1:], uniform_factors, K, rng, **FAST_VOTES)
    with pytest.raises(ValueError, match=r"represent\(factors\) contains NaN"):
        factor_vae_score(lambda f: f * np.nan, uniform_factors, K, rng, **FAST_VOTES)
    with pytest.raises(ValueError, match="num_train"):
        factor_vae_score(lambda f: f, uniform_factors, K, rng, **dict(FAST_VOTES, num_train=0))


# --------------------------------------------------------------------------- core / detail split
def test_part_probe_table_attributes_factors_to_their_part(rng):
    names = ["pose", "shape", "hue", "texture"]  # two structure, then two appearance factors
    train, test = rng.uniform(size=(N, 4)), rng.uniform(size=(N, 4))

    def encode(factors):  # core = structure + noise dims, detail = appearance + noise dims
        core = np.c_[noisy(rng, factors[:, :2], 0.05), rng.standard_normal((len(factors), 2))]
        detail = np.c_[noisy(rng, factors[:, 2:], 0.05), rng.standard_normal((len(factors), 2))]
        return np.c_[core, detail]

    table = part_probe_table(encode(train), train, encode(test), test,
                             core_dim=4, factor_names=names)
    assert list(table) == names
    for name in names[:2]:
        assert table[name]["core_r2"] > 0.9 and abs(table[name]["detail_r2"]) < 0.05
    for name in names[2:]:
        assert table[name]["detail_r2"] > 0.9 and abs(table[name]["core_r2"]) < 0.05
    assert all(row["all_r2"] > 0.9 for row in table.values())


def test_specificity_rewards_each_part_for_changing_its_own_target():
    right = specificity([[1, 0], [1, 0], [0, 1]], core_dim=2)
    assert right["core_specificity"] == 1.0 and right["detail_specificity"] == 1.0
    swapped = specificity([[0, 1], [0, 1], [1, 0]], core_dim=2)
    assert swapped["core_specificity"] == 0.0 and swapped["detail_specificity"] == 0.0
    mixed = specificity(np.array([[3, 1], [1, 1], [1, 3]]), core_dim=2)
    assert mixed["structure_share"] == [0.75, 0.5, 0.25]
    # Effect-weighted: core's summed structure effect 3 + 1 over its summed effect 4 + 2.
    assert mixed["core_specificity"] == pytest.approx(4 / 6, abs=1e-12)
    assert mixed["detail_specificity"] == 0.75


def test_specificity_weights_each_dim_by_its_effect():
    # The example: two working core dims (structure shares 0.9 and 0.8, large effects)
    # and six core dims whose traversals change almost nothing (effects about 1e-7 of the
    # reconstructions' spread) with arbitrary shares. Weighted by effect the core scores
    # (0.9 + 0.8) / 2 = 0.85; an unweighted mean over dims would give about 0.676.
    working = [[0.9, 0.1], [0.8, 0.2]]
    tiny = (1e-7 * np.array([[0.3, 0.7], [0.6, 0.4], [0.7, 0.3], [0.9, 0.1], [0.5, 0.5],
                             [0.7, 0.3]])).tolist()
    effects = np.array(working + tiny + [[0.1, 0.9]])  # plus one working detail dim
    result = specificity(effects, core_dim=8)
    assert np.nanmean(result["structure_share"][:8]) == pytest.approx(0.675, abs=1e-9)
    assert result["core_specificity"] == pytest.approx(0.85, abs=1e-6)
    assert result["detail_specificity"] == pytest.approx(0.9, abs=1e-12)
    assert result["core_effect"] == pytest.approx(2.0, abs=1e-5)
    # Weighting is the summed structure effect over the summed effect.
    uneven = specificity([[3.0, 1.0], [0.5, 0.5], [0.0, 2.0]], core_dim=2)
    assert uneven["core_specificity"] == pytest.approx(3.5 / 5.0, abs=1e-12)


def test_a_part_that_hardly_changes_the_image_has_no_specificity():
    # Effects are in units of the reconstructions' spread. Ten times smaller effects give the
    # same specificity (it is scale-free), but a part whose dims together change the image by
    # less than MIN_PART_EFFECT of that spread is n/a, however pure its few changes are.
    effects = np.array([[0.6, 0.1], [0.3, 0.2], [0.05, 0.5], [0.1, 0.9]])
    base = specificity(effects, core_dim=2)
    faint = specificity(0.1 * effects, core_dim=2)
    for key in ("core_specificity", "detail_specificity"):
        assert faint[key] == pytest.approx(base[key], abs=1e-12)
    assert base["core_specificity"] == pytest.approx(0.9 / 1.2, abs=1e-12)
    negligible = specificity(np.r_[1e-6 * effects[:2], effects[2:]], core_dim=2)
    assert math.isnan(negligible["core_specificity"])
    assert negligible["detail_specificity"] == pytest.approx(base["detail_specificity"])
    assert MIN_PART_EFFECT == 1e-3  # the floor report.md states
    below = specificity([[0.9 * MIN_PART_EFFECT, 0.0], [0.2, 0.7]], core_dim=1)
    above = specificity([[1.1 * MIN_PART_EFFECT, 0.0], [0.2, 0.7]], core_dim=1)
    assert math.isnan(below["core_specificity"]) and above["core_specificity"] == 1.0
    # A dim with no effect at all has no share; an empty part has no specificity.
    assert math.isnan(specificity([[1, 0], [0, 0]], core_dim=1)["structure_share"][1])
    assert math.isnan(specificity([[1, 0], [0, 1]], core_dim=2)["detail_specificity"])


# --------------------------------------------------------------------------- inputs
def test_torch_inputs_match_numpy(rng, discrete_split):
    train, test = discrete_split
    train_codes, test_codes = (x.astype(np.float32) for x in aligned_codes(rng, train, test))
    as_numpy = (train_codes, train, test_codes, test)
    as_torch = [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in as_numpy]
    np.testing.assert_allclose(ridge_probe_r2(*as_torch), ridge_probe_r2(*as_numpy), atol=1e-4)
    assert mutual_information_gap(*as_torch[:2], discrete=True) == \
        mutual_information_gap(*as_numpy[:2], discrete=True)
    assert dci(*as_torch, discrete=True) == dci(*as_numpy, discrete=True)
    assert sap(*as_torch, discrete=True) == sap(*as_numpy, discrete=True)


def test_mismatched_sample_counts_name_both_shapes(rng):
    codes, factors = rng.standard_normal((10, 3)), rng.uniform(size=(9, 2))
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 2\)"):
        mutual_information_gap(codes, factors, discrete=False)
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 2\)"):
        ridge_probe_r2(codes, factors, codes, factors)
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 2\)"):
        dci(codes, rng.uniform(size=(10, 2)), codes, factors, discrete=False)
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 2\)"):
        sap(codes, rng.uniform(size=(10, 2)), codes, factors, discrete=False)


def with_nan(x):
    x = x.copy()
    x[3, 1] = np.nan
    return x


@pytest.mark.parametrize("call, name", [
    (lambda c, f: mutual_information_gap(with_nan(c), f, discrete=False), "codes"),
    (lambda c, f: mutual_information_gap(c, np.where(f > 0.5, np.inf, f), discrete=False),
     "factors"),
    (lambda c, f: dci(c, f, with_nan(c), f, discrete=False), "test_codes"),
    (lambda c, f: dci(c, with_nan(f), c, f, discrete=False), "train_factors"),
    (lambda c, f: sap(with_nan(c), f, c, f, discrete=False), "train_codes"),
    (lambda c, f: sap(c, f, c, with_nan(f), discrete=False), "test_factors"),
])
def test_non_finite_inputs_are_rejected_by_name(rng, call, name):
    with pytest.raises(ValueError, match=f"^{name} contains NaN or infinite values"):
        call(rng.standard_normal((20, 3)), rng.uniform(size=(20, 2)))


@pytest.mark.parametrize("call", [
    lambda c, f: part_probe_table(c, f, c, f, core_dim=1, factor_names=["only one"]),
    lambda c, f: part_probe_table(c, f, c, f, core_dim=4, factor_names=["a", "b"]),
    lambda c, f: ridge_probe_r2(c, f, c[:, :2], f),
    lambda c, f: mutual_information_gap(c[:, 0], f, discrete=False),
    lambda c, f: dci(c, f, c[:, :2], f, discrete=False),
    lambda c, f: sap(c, f[:, :1], c, f, discrete=False),
    lambda c, f: mutual_information_gap(c[:1], f[:1], discrete=False),
    lambda c, f: mutual_information_gap(c, f, discrete=[True]),  # 1 flag for 2 factors
    lambda c, f: dci(c, f, c, f, discrete=[True, "no"]),
    lambda c, f: sap(c, f, c, f, discrete=[False, True, True]),
    lambda c, f: specificity([[1.0, -1.0]], core_dim=1),
    lambda c, f: specificity([[1.0, 0.0, 0.0]], core_dim=1),
])
def test_malformed_inputs_are_rejected(rng, call):
    with pytest.raises(ValueError):
        call(rng.standard_normal((20, 3)), rng.uniform(size=(20, 2)))
