"""MIG, DCI, SAP and the FactorVAE score against values computed here, independently, straight
from disentanglement_lib's published definitions (scikit-learn and scipy where the definition
uses them, plain numpy otherwise), on small fixed inputs."""
import numpy as np
import pytest
import scipy.stats
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import mutual_info_score
from sklearn.svm import LinearSVC

from disentanglement import dci, factor_vae_score, mutual_information_gap, sap

BINS = 20


# ---------------------------------------------------------------------------------- references
def histogram_discretize(x, bins=BINS):
    """disentanglement_lib: np.digitize against np.histogram's edges without the last one."""
    return np.digitize(x, np.histogram(x, bins)[1][:-1])


def reference_mig(codes, factor_labels, bins=BINS):
    """Per-factor MIG: sklearn MI of each (factor, discretised code) pair in nats, the gap of
    the two largest over codes divided by H(factor) = I(factor; factor)."""
    code_labels = [histogram_discretize(c, bins) for c in codes.T]
    gaps = []
    for y in factor_labels.T:
        m = np.sort([mutual_info_score(y, c) for c in code_labels])[::-1]
        gaps.append((m[0] - m[1]) / mutual_info_score(y, y))
    return np.array(gaps)


def reference_importance_gbt(x_train, y_train, x_test, y_test, n_estimators=100):
    """One default GradientBoostingClassifier per factor (random_state fixed for repeatability):
    importance (D, K) = |feature_importances_|, mean train and test accuracy."""
    importance, train_acc, test_acc = [], [], []
    for k in range(y_train.shape[1]):
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=0).fit(
            x_train, y_train[:, k])
        importance.append(np.abs(model.feature_importances_))
        train_acc.append(np.mean(model.predict(x_train) == y_train[:, k]))
        test_acc.append(np.mean(model.predict(x_test) == y_test[:, k]))
    return np.array(importance).T, np.mean(train_acc), np.mean(test_acc)


def reference_disentanglement(r):
    per_code = 1.0 - scipy.stats.entropy(r.T + 1e-11, base=r.shape[1])
    weights = r.sum(axis=1) / r.sum() if r.sum() > 0 else np.full(r.shape[0], 1 / r.shape[0])
    return np.sum(per_code * weights)


def reference_completeness(r):
    per_factor = 1.0 - scipy.stats.entropy(r + 1e-11, base=r.shape[0])
    weights = r.sum(axis=0) / r.sum() if r.sum() > 0 else np.full(r.shape[1], 1 / r.shape[1])
    return np.sum(per_factor * weights)


def reference_sap_matrix(x_train, y_train, x_test, y_test):
    """S[d, k]: held-out accuracy of LinearSVC(C=0.01, balanced) on code dim d alone; a dim
    whose sample variance is at most 1e-12 scores 0."""
    matrix = np.zeros((x_train.shape[1], y_train.shape[1]))
    for d in range(x_train.shape[1]):
        for k in range(y_train.shape[1]):
            if np.cov(x_train[:, d], ddof=1) <= 1e-12:
                continue
            # The primal solver: the same optimum as the dual, and deterministic.
            model = LinearSVC(C=0.01, class_weight="balanced", dual=False)
            model.fit(x_train[:, d:d + 1], y_train[:, k])
            matrix[d, k] = np.mean(model.predict(x_test[:, d:d + 1]) == y_test[:, k])
    return matrix


def reference_sap(matrix):
    top_two = np.sort(matrix, axis=0)[-2:]
    return np.mean(top_two[1] - top_two[0])


def reference_factor_vae(represent, sample_factors, num_factors, rng, batch_size, num_train,
                         num_eval, num_variance_estimate, threshold):
    global_var = np.var(represent(sample_factors(num_variance_estimate, rng)), axis=0, ddof=1)
    active = np.flatnonzero(np.sqrt(global_var) >= threshold)

    def votes(n):
        counts = np.zeros((num_factors, len(global_var)), dtype=int)
        for _ in range(n):
            k = rng.integers(num_factors)
            f = sample_factors(batch_size, rng)
            f[:, k] = f[0, k]
            local_var = np.var(represent(f), axis=0, ddof=1)
            counts[k, active[np.argmin(local_var[active] / global_var[active])]] += 1
        return counts

    train = votes(num_train)
    best = train.argmax(axis=0)
    cols = np.arange(train.shape[1])
    evaluation = votes(num_eval)
    return (train[best, cols].sum() / train.sum(), evaluation[best, cols].sum() / evaluation.sum(),
            len(active))


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture
def discrete_data():
    """Train and test splits: 3 discrete factors (2, 3 and 4 values) and 4 code dims that carry
    them with different amounts of noise and mixing, plus one constant dim."""
    rng = np.random.default_rng(1)

    def draw(n):
        labels = np.c_[rng.integers(0, 2, n), rng.integers(0, 3, n), rng.integers(0, 4, n)]
        codes = np.c_[labels[:, 0] + 0.3 * labels[:, 1], labels[:, 1], labels[:, 2] - labels[:, 0],
                      labels[:, 2]] + 0.4 * rng.standard_normal((n, 4))
        return np.c_[codes, np.full(n, 0.7)], labels.astype(float)

    return (*draw(240), *draw(120))


# ---------------------------------------------------------------------------------- MIG
def test_mig_matches_sklearn_mutual_information_on_discrete_factors(discrete_data):
    codes, factors = discrete_data[:2]
    expected = reference_mig(codes, factors)
    result = mutual_information_gap(codes, factors, discrete=True)
    np.testing.assert_allclose(result["per_factor"], expected, rtol=1e-10)
    assert result["mig"] == pytest.approx(expected.mean(), rel=1e-10)


def test_mig_cuts_a_continuous_factor_like_a_code():
    rng = np.random.default_rng(2)
    factor = rng.uniform(size=(300, 1))
    codes = np.c_[factor + 0.05 * rng.standard_normal((300, 1)), rng.standard_normal((300, 2))]
    expected = reference_mig(codes, histogram_discretize(factor[:, 0])[:, None])
    np.testing.assert_allclose(mutual_information_gap(codes, factor, discrete=False)["per_factor"],
                               expected,
                               rtol=1e-10)


def test_mig_with_fewer_samples_than_bins_and_a_constant_code():
    rng = np.random.default_rng(3)
    factors = rng.integers(0, 3, size=(7, 2)).astype(float)
    factors[:3] = [[0, 0], [1, 1], [2, 2]]  # every factor takes all three values
    codes = np.c_[rng.standard_normal((7, 2)), np.full(7, 4.2)]
    np.testing.assert_allclose(mutual_information_gap(codes, factors, discrete=True)
                               ["per_factor"],
                               reference_mig(codes, factors), rtol=1e-10)


def published_mig(codes, class_labels, bins=BINS):
    """MIG straight from its definition, written without the histogram helper above: each code
    dim cut into `bins` equal-width bins over its own range (the maximum in the last bin), the
    factor's class labels used as they are; per factor, the two largest I(code bin; class)
    (sklearn, nats) apart, over H(class) (scipy, nats)."""
    per_factor = []
    for y in class_labels.T:
        information = []
        for c in codes.T:
            position = (c - c.min()) / (c.max() - c.min()) * bins
            binned = np.minimum(np.floor(position), bins - 1).astype(int)
            information.append(mutual_info_score(y, binned))
        top = sorted(information, reverse=True)
        per_factor.append((top[0] - top[1]) / scipy.stats.entropy(np.bincount(y)))
    return np.array(per_factor)


@pytest.fixture
def many_classes():
    """dSprites-like factors with more classes than bins: 32 (x) and 40 (orientation) class
    indices; code dim 0 is the 32-class index itself (a perfect code), dim 1 the 40-class index
    with a little noise, dim 2 noise."""
    rng = np.random.default_rng(6)

    def draw(n):
        labels = np.c_[rng.integers(0, 32, n), rng.integers(0, 40, n)]
        codes = np.c_[labels[:, 0], labels[:, 1] + 0.1 * rng.standard_normal(n),
                      rng.standard_normal(n)]
        return codes.astype(float), labels
    return draw


def test_mig_of_factors_with_32_and_40_classes_uses_the_classes(many_classes):
    codes, labels = many_classes(5000)
    expected = published_mig(codes, labels)
    result = mutual_information_gap(codes, labels.astype(float), discrete=True)
    np.testing.assert_allclose(result["per_factor"], expected, rtol=1e-10)
    # The example: a perfect code for a 32-class factor is 20 bins against 32 classes,
    # about 0.834; binning the factor into 20 bins as well (the old rule for a factor with
    # more than 20 values) would have given about 0.987.
    assert expected[0] == pytest.approx(0.834, abs=0.01)
    binned = mutual_information_gap(codes, labels.astype(float), discrete=False)["per_factor"]
    assert binned[0] > 0.97 and binned[1] > expected[1] + 0.1


def test_dci_and_sap_of_factors_with_32_and_40_classes_classify_the_classes(many_classes):
    train_codes, train = many_classes(600)
    test_codes, test = many_classes(300)
    importance, train_acc, test_acc = reference_importance_gbt(train_codes, train, test_codes,
                                                               test, n_estimators=5)
    result = dci(train_codes, train.astype(float), test_codes, test.astype(float),
                 discrete=True, n_estimators=5)
    np.testing.assert_allclose(result["importance"], importance, rtol=1e-10, atol=1e-14)
    assert result["informativeness"] == pytest.approx(test_acc, rel=1e-12)
    assert result["informativeness_train"] == pytest.approx(train_acc, rel=1e-12)
    matrix = reference_sap_matrix(train_codes, train, test_codes, test)
    result = sap(train_codes, train.astype(float), test_codes, test.astype(float),
                 discrete=True)
    np.testing.assert_allclose(result["matrix"], matrix, rtol=1e-12)
    assert result["sap"] == pytest.approx(reference_sap(matrix), rel=1e-12)


# ---------------------------------------------------------------------------------- DCI
def test_dci_matches_gradient_boosted_trees_and_the_entropy_definitions(discrete_data):
    importance, train_acc, test_acc = reference_importance_gbt(*discrete_data)
    result = dci(*discrete_data, discrete=True)
    np.testing.assert_allclose(result["importance"], importance, rtol=1e-10, atol=1e-14)
    assert result["disentanglement"] == pytest.approx(reference_disentanglement(importance),
                                                      rel=1e-9)
    assert result["completeness"] == pytest.approx(reference_completeness(importance), rel=1e-9)
    assert result["informativeness"] == pytest.approx(test_acc, rel=1e-12)
    assert result["informativeness_train"] == pytest.approx(train_acc, rel=1e-12)


def test_dci_of_a_continuous_factor_uses_the_training_histogram_bins():
    rng = np.random.default_rng(4)
    train, test = rng.uniform(size=(150, 1)), rng.uniform(-0.1, 1.1, size=(60, 1))
    train_codes = np.c_[train + 0.05 * rng.standard_normal((150, 1)), rng.standard_normal(150)]
    test_codes = np.c_[test + 0.05 * rng.standard_normal((60, 1)), rng.standard_normal(60)]
    edges = np.histogram(train[:, 0], BINS)[1][:-1]
    test_labels = np.clip(np.digitize(test[:, 0], edges), 1, BINS)  # outside: end bins
    importance, _, test_acc = reference_importance_gbt(
        train_codes, np.digitize(train, edges), test_codes, test_labels[:, None])
    result = dci(train_codes, train, test_codes, test, discrete=False)
    np.testing.assert_allclose(result["importance"], importance, rtol=1e-10, atol=1e-14)
    assert result["informativeness"] == pytest.approx(test_acc, rel=1e-12)


def test_dci_entropy_scores_on_a_hand_made_importance_matrix():
    # The reference definitions themselves, checked on numbers worked out by hand. Code dim 0
    # is all on factor 0 (score 1), dim 1 split evenly (score 0); each has half the importance.
    # Factor 0 is spread 2/3, 1/3 over the dims, factor 1 is all on dim 1 (score 1); their
    # weights are 1.5 / 2 and 0.5 / 2.
    r = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert reference_disentanglement(r) == pytest.approx(0.5 * 1 + 0.5 * 0, abs=1e-9)
    entropy_0 = -(2 / 3 * np.log2(2 / 3) + 1 / 3 * np.log2(1 / 3))
    assert reference_completeness(r) == pytest.approx(0.75 * (1 - entropy_0) + 0.25 * 1,
                                                      abs=1e-9)


# ---------------------------------------------------------------------------------- SAP
def test_sap_matches_single_dim_linear_svms(discrete_data):
    matrix = reference_sap_matrix(*discrete_data)
    assert matrix[4].tolist() == [0.0, 0.0, 0.0]  # the fixture's constant dim
    result = sap(*discrete_data, discrete=True)
    np.testing.assert_allclose(result["matrix"], matrix, rtol=1e-12)
    assert result["sap"] == pytest.approx(reference_sap(matrix), rel=1e-12)


# ---------------------------------------------------------------------------------- FactorVAE
def test_factor_vae_score_matches_the_voting_definition():
    mixing = np.array([[1.0, 0.4, 0.0, 0.0], [0.0, 1.0, 0.7, 0.0], [0.3, 0.0, 1.0, 0.01]])

    def represent(factors):  # deterministic, entangled, last dim tiny and pruned
        return np.tanh(factors @ mixing)

    def sample_factors(n, rng):
        return np.c_[rng.integers(0, 3, n) / 2, rng.uniform(size=(n, 2))]

    settings = dict(batch_size=16, num_train=300, num_eval=200, num_variance_estimate=500)
    expected = reference_factor_vae(represent, sample_factors, 3, np.random.default_rng(5),
                                    threshold=0.05, **settings)
    result = factor_vae_score(represent, sample_factors, 3, np.random.default_rng(5), **settings)
    assert expected[2] == 3 and 0.5 < expected[1] < 1.0  # a case with something to get wrong
    assert (result["train_accuracy"], result["eval_accuracy"], result["num_active_dims"]) == \
        pytest.approx(expected, rel=1e-12)
