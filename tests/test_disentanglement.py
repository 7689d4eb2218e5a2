"""Disentanglement metrics on synthetic codes whose answer is known by construction."""
import math

import numpy as np
import pytest
import torch

from disentanglement import (dci, mutual_information_gap, part_probe_table, ridge_probe_r2,
                             specificity)

N, K = 5000, 4
# An orthogonal matrix whose entries all have the same magnitude: every code is an equal mix of
# every factor, so no code dim singles out a factor while all linear information is kept.
EQUAL_MIX = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def split(rng):
    """Independent uniform train and test factors, (N, K) each."""
    return rng.uniform(size=(N, K)), rng.uniform(size=(N, K))


def noisy(rng, x, scale=1e-3):
    return x + scale * rng.standard_normal(x.shape)


def test_codes_equal_to_factors_score_perfectly(rng, split):
    train, test = split
    train_codes, test_codes = noisy(rng, train), noisy(rng, test)
    assert np.all(ridge_probe_r2(train_codes, train, test_codes, test) > 0.99)
    assert mutual_information_gap(train_codes, train)["mig"] > 0.8
    scores = dci(train_codes, train, test_codes, test)
    assert scores["disentanglement"] > 0.98 and scores["completeness"] > 0.98
    assert scores["informativeness"] > 0.99
    assert np.argmax(scores["importance"], axis=1).tolist() == list(range(K))


def test_mixed_codes_keep_linear_information_but_lose_disentanglement(rng, split):
    train, test = split
    train_codes, test_codes = noisy(rng, train @ EQUAL_MIX), noisy(rng, test @ EQUAL_MIX)
    assert np.all(ridge_probe_r2(train_codes, train, test_codes, test) > 0.99)
    assert mutual_information_gap(train_codes, train)["mig"] < 0.3
    aligned = dci(noisy(rng, train), train, noisy(rng, test), test)
    mixed = dci(train_codes, train, test_codes, test)
    assert mixed["disentanglement"] < aligned["disentanglement"] - 0.5
    assert mixed["completeness"] < aligned["completeness"] - 0.5


def test_codes_independent_of_factors_carry_nothing(rng, split):
    train, test = split
    train_codes, test_codes = rng.standard_normal((N, K)), rng.standard_normal((N, K))
    assert np.all(np.abs(ridge_probe_r2(train_codes, train, test_codes, test)) < 0.05)
    assert mutual_information_gap(train_codes, train)["mig"] < 0.05


def test_a_factor_spread_over_two_dims_lowers_completeness_only(rng, split):
    train, test = split
    one_to_one = dci(noisy(rng, train), train, noisy(rng, test), test)
    duplicated = dci(noisy(rng, np.c_[train, train[:, :1]]), train,
                     noisy(rng, np.c_[test, test[:, :1]]), test)
    assert duplicated["completeness"] < one_to_one["completeness"] - 0.1
    assert duplicated["disentanglement"] > 0.9
    assert np.array(duplicated["importance"]).shape == (K + 1, K)


def test_an_unused_code_dim_does_not_lower_disentanglement(rng, split):
    # Dims are weighted by their share of the importance, so a dim that predicts nothing counts
    # for almost nothing even though its own p(k|d) is close to uniform.
    train, test = split
    with_unused = dci(np.c_[noisy(rng, train), rng.standard_normal(N)], train,
                      np.c_[noisy(rng, test), rng.standard_normal(N)], test)
    assert with_unused["disentanglement"] > 0.98


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
    scaled_importance = dci(train_codes * scale, train, test_codes * scale, test)["importance"]
    np.testing.assert_allclose(scaled_importance,
                               dci(train_codes, train, test_codes, test)["importance"], atol=1e-6)


def test_r2_is_negative_when_the_probe_is_worse_than_the_test_mean(rng):
    # The test factor is shifted away from everything seen in training: the probe predicts the
    # training mean, which is far from the test mean.
    codes = rng.standard_normal((200, 2))
    r2 = ridge_probe_r2(codes, rng.uniform(size=(200, 1)), codes, rng.uniform(size=(200, 1)) + 5)
    assert r2[0] < -100


def test_mig_is_the_margin_between_the_best_dim_and_the_runner_up(rng):
    factor = rng.uniform(size=(N, 1))
    exact = noisy(rng, factor)
    loose = noisy(rng, factor, 0.3)
    assert mutual_information_gap(np.c_[exact, loose], factor)["mig"] > 0.5
    tied = mutual_information_gap(np.c_[exact, exact], factor)["mig"]
    assert tied == pytest.approx(0.0, abs=1e-9)


def test_mig_handles_discrete_and_constant_factors(rng):
    shape = rng.integers(0, 3, N) / 2.0  # a 3-valued shape index k / (n - 1)
    codes = np.c_[noisy(rng, shape), rng.standard_normal(N)]
    result = mutual_information_gap(codes, np.c_[shape, np.full(N, 0.5)])
    assert result["per_factor"][0] == pytest.approx(1.0, abs=0.01)  # normalised by H(shape)
    assert math.isnan(result["per_factor"][1])
    assert result["mig"] == result["per_factor"][0]


def test_mig_of_a_discrete_factor_ignores_the_spacing_of_its_values(rng):
    # Equal-width bins would put 0 and 0.05 in one bin; MIG must see three values either way.
    uneven = rng.choice([0.0, 0.05, 1.0], N)
    even = np.searchsorted([0.0, 0.05, 1.0], uneven) / 2.0
    codes = np.c_[noisy(rng, (uneven == 0.05).astype(float)), rng.standard_normal(N)]
    np.testing.assert_allclose(mutual_information_gap(codes, uneven[:, None])["per_factor"],
                               mutual_information_gap(codes, even[:, None])["per_factor"])


def test_single_code_dim_and_single_factor_give_finite_scores(rng):
    factor = rng.uniform(size=(N, 1))
    codes = noisy(rng, factor)
    scores = dci(codes, factor, codes, factor)
    assert scores["disentanglement"] == 1.0 and scores["completeness"] == 1.0
    assert mutual_information_gap(codes, factor)["mig"] > 0.9
    two_factors = np.c_[factor, rng.uniform(size=(N, 1))]
    scores = dci(codes, two_factors, codes, two_factors)
    assert all(math.isfinite(scores[k])
               for k in ("disentanglement", "completeness", "informativeness"))
    assert scores["completeness"] == 1.0  # one dim: nothing to spread over


def test_torch_inputs_match_numpy(rng, split):
    train, test = split
    train_codes, test_codes = noisy(rng, train @ EQUAL_MIX), noisy(rng, test)
    as_torch = [torch.from_numpy(x).float() for x in (train_codes, train, test_codes, test)]
    np.testing.assert_allclose(ridge_probe_r2(*as_torch),
                               ridge_probe_r2(train_codes, train, test_codes, test), atol=1e-4)
    assert dci(*as_torch)["informativeness"] == pytest.approx(
        np.mean(ridge_probe_r2(train_codes, train, test_codes, test)), abs=1e-4)


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
    assert mixed["core_specificity"] == 0.625 and mixed["detail_specificity"] == 0.75


def test_specificity_leaves_out_dims_without_effect():
    result = specificity([[1, 0], [0, 0], [0, 1], [0, 0]], core_dim=2)
    assert math.isnan(result["structure_share"][1]) and math.isnan(result["structure_share"][3])
    assert result["core_specificity"] == 1.0 and result["detail_specificity"] == 1.0
    assert math.isnan(specificity([[1, 0], [0, 0]], core_dim=1)["detail_specificity"])


def test_mismatched_sample_counts_name_both_shapes(rng):
    codes, factors = rng.standard_normal((10, 3)), rng.uniform(size=(9, 2))
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 2\)"):
        mutual_information_gap(codes, factors)
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 2\)"):
        ridge_probe_r2(codes, factors, codes, factors)
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 2\)"):
        dci(codes, rng.uniform(size=(10, 2)), codes, factors)


@pytest.mark.parametrize("call", [
    lambda c, f: part_probe_table(c, f, c, f, core_dim=1, factor_names=["only one"]),
    lambda c, f: part_probe_table(c, f, c, f, core_dim=4, factor_names=["a", "b"]),
    lambda c, f: ridge_probe_r2(c, f, c[:, :2], f),
    lambda c, f: mutual_information_gap(c[:, 0], f),
    lambda c, f: specificity([[1.0, -1.0]], core_dim=1),
    lambda c, f: specificity([[1.0, 0.0, 0.0]], core_dim=1),
])
def test_malformed_inputs_are_rejected(rng, call):
    with pytest.raises(ValueError):
        call(rng.standard_normal((20, 3)), rng.uniform(size=(20, 2)))
