"""Marginals, conditionals and missing values against dense Gaussian algebra.

The references below work one row at a time with explicit inverses and scipy's
densities: slow and plain, and independent of the pattern grouping and the
Cholesky solves of :mod:`streammix.core.conditional`.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from streammix import GaussianMixture, InvalidInputError, InvalidParameterError
from streammix.core.conditional import (
    condition,
    impute,
    log_marginal_density,
    marginal,
    remaining_features,
)
from streammix.core.families import FAMILY_NAMES, get_family
from streammix.core.params import MixtureParams
from streammix.core.sampling import sample
from streammix.engine.compute import single_threaded_blas

K, D = 3, 5
RTOL = 1e-9


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # As the engine runs these functions: tiny triangular solves otherwise wait
    # on BLAS threads competing for the cores (milliseconds per call).
    with single_threaded_blas():
        yield


def random_params(name: str, k: int = K, d: int = D, seed: int = 0) -> MixtureParams:
    rng = np.random.default_rng(seed)
    family = get_family(name)
    if name == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, 1, 2) / d + 0.3 * np.eye(d)
    elif name == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T / d + 0.3 * np.eye(d)
    elif name in ("diag", "spherical"):
        cov = rng.uniform(0.5, 2.0, size=family.covariance_shape(k, d))
    else:  # a new family: teach this helper (and check the module docstring's rule)
        raise NotImplementedError(name)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(0.0, 2.0, size=(k, d)) + 10.0
    return MixtureParams.from_covariances(family, weights, means, cov)


def rows_with_gaps(params: MixtureParams, n: int = 60, seed: int = 1) -> np.ndarray:
    """Rows drawn from the mixture with random NaN, plus every edge pattern."""
    rng = np.random.default_rng(seed)
    X, _ = sample(params, n, rng)
    X[rng.random(X.shape) < 0.4] = np.nan
    d = params.n_features
    X[0] = sample(params, 1, rng)[0][0]  # nothing missing
    X[1] = np.nan  # everything missing
    X[2, 1:] = np.nan  # a single feature observed
    X[3] = sample(params, 1, rng)[0][0]
    X[3, d - 1] = np.nan  # a single feature missing
    X[4] = X[2]  # a repeated pattern with the same values
    return X


# --------------------------------------------------------------- references
def ref_condition(params: MixtureParams, obs: np.ndarray, v: np.ndarray):
    """Weights (Bayes' rule with scipy), means and covariances with explicit inverses."""
    d = params.n_features
    mis = np.setdiff1d(np.arange(d), obs)
    S = params.dense_covariances()
    joint, means, covs = [], [], []
    for k in range(params.n_components):
        mu, s = params.means[k], S[k]
        s_oo_inv = np.linalg.inv(s[np.ix_(obs, obs)])
        s_uo = s[np.ix_(mis, obs)]
        means.append(mu[mis] + s_uo @ s_oo_inv @ (v - mu[obs]))
        covs.append(s[np.ix_(mis, mis)] - s_uo @ s_oo_inv @ s_uo.T)
        density = multivariate_normal(mu[obs], s[np.ix_(obs, obs)]).pdf(v)
        joint.append(params.weights[k] * density)  # Bayes' rule, in linear space
    return np.array(joint) / np.sum(joint), np.array(means), np.array(covs)


def ref_row(params: MixtureParams, x: np.ndarray):
    """Log-density of the observed entries, the row with its conditional mean filled
    in, and the mixture's conditional covariance of the missing entries."""
    obs = np.flatnonzero(~np.isnan(x))
    mis = np.flatnonzero(np.isnan(x))
    S = params.dense_covariances()
    if obs.size == 0:
        log_density, (w, m, c) = 0.0, (params.weights, params.means, S)
    else:
        log_density = logsumexp(
            [
                np.log(params.weights[k])
                + multivariate_normal(params.means[k][obs], S[k][np.ix_(obs, obs)]).logpdf(x[obs])
                for k in range(params.n_components)
            ]
        )
        if mis.size == 0:
            return log_density, x.copy(), np.zeros((0, 0))
        w, m, c = ref_condition(params, obs, x[obs])
    mean = w @ m
    second = np.einsum("k,kij->ij", w, c + m[:, :, None] * m[:, None, :])
    filled = x.copy()
    filled[mis] = mean
    return log_density, filled, second - np.outer(mean, mean)


# ----------------------------------------------------------------- marginal
@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("features", [[3, 0], [2], [0, 1, 2, 3, 4]])
def test_marginal_is_the_dense_sub_block(name, features):
    params = random_params(name)
    m = marginal(params, features)
    assert m.family is params.family
    np.testing.assert_array_equal(m.weights, params.weights)
    np.testing.assert_array_equal(m.means, params.means[:, features])
    dense = params.dense_covariances()[:, features][:, :, features]
    np.testing.assert_allclose(m.dense_covariances(), dense, rtol=RTOL)
    # precision factors belong to the marginal covariances (ready for scoring)
    np.testing.assert_allclose(
        m.precisions_cholesky, m.family.precision_cholesky(m.covariances), rtol=RTOL
    )


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_marginal_density_agrees_with_rows_observed_on_those_features(name):
    params = random_params(name)
    X, _ = sample(params, 20, np.random.default_rng(3))
    features = [4, 1]
    gappy = np.full_like(X, np.nan)
    gappy[:, features] = X[:, features]
    np.testing.assert_allclose(
        log_marginal_density(params, gappy),
        log_marginal_density(marginal(params, features), X[:, features]),
        rtol=RTOL,
    )


def test_marginal_accepts_a_boolean_mask():
    params = random_params("full")
    mask = np.array([True, False, True, False, False])
    assert marginal(params, mask).allclose(marginal(params, [0, 2]))


# ---------------------------------------------------------------- condition
@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("observed", [[1], [4, 0], [0, 2, 3, 1]])
def test_condition_matches_dense_algebra_and_bayes(name, observed):
    params = random_params(name)
    obs = np.array(observed)
    v = sample(params, 1, np.random.default_rng(4))[0][0, obs] + 0.5
    c = condition(params, obs, v)
    w, m, cov = ref_condition(params, obs, v)
    assert c.family is params.family
    assert c.n_features == D - obs.size
    np.testing.assert_allclose(c.weights, w, rtol=RTOL, atol=1e-300)
    np.testing.assert_allclose(c.means, m, rtol=RTOL)
    np.testing.assert_allclose(c.dense_covariances(), cov, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(
        c.precisions_cholesky, c.family.precision_cholesky(c.covariances), rtol=1e-8
    )


@pytest.mark.parametrize("name", ["diag", "spherical"])
def test_condition_of_independent_coordinates_moves_only_the_weights(name):
    params = random_params(name)
    c = condition(params, [1, 3], [9.0, 11.0])
    rest = remaining_features(D, [1, 3])
    np.testing.assert_array_equal(rest, [0, 2, 4])
    np.testing.assert_allclose(c.means, params.means[:, rest], rtol=1e-15)
    np.testing.assert_allclose(
        c.covariances, params.family.marginal(params.covariances, rest), rtol=1e-13
    )
    assert not np.allclose(c.weights, params.weights)


def test_condition_tied_stays_tied():
    params = random_params("tied")
    c = condition(params, [2], [10.0])
    assert c.family is get_family("tied")
    assert c.covariances.shape == (D - 1, D - 1)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_condition_result_is_a_valid_estimator(name):
    params = random_params(name)
    c = condition(params, [0, 3], [8.0, 12.0])
    gm = GaussianMixture.from_parameters(c.weights, c.means, c.covariances, covariance_type=name)
    assert gm.params_.allclose(c, rtol=1e-12)


def test_condition_on_nothing_returns_the_mixture():
    params = random_params("full")
    assert condition(params, [], []) is params


def test_condition_one_component_is_the_gaussian_conditional():
    params = random_params("full", k=1)
    c = condition(params, [1], [10.5])
    np.testing.assert_array_equal(c.weights, [1.0])
    _, m, cov = ref_condition(params, np.array([1]), np.array([10.5]))
    np.testing.assert_allclose(c.means, m, rtol=RTOL)
    np.testing.assert_allclose(c.covariances, cov, rtol=RTOL)


def test_condition_far_in_the_tail_stays_finite():
    params = random_params("full")
    c = condition(params, [0], [1e4])  # every density underflows in linear space
    assert np.all(np.isfinite(c.weights))
    np.testing.assert_allclose(c.weights.sum(), 1.0, rtol=1e-15)


def test_condition_ignores_empty_components():
    params = random_params("full")
    w = np.append(params.weights, 0.0)
    means = np.vstack([params.means, np.zeros(D)])
    covs = np.concatenate([params.covariances, np.eye(D)[None]])
    padded = MixtureParams.from_covariances(params.family, w, means, covs)
    c, cp = condition(params, [1], [10.0]), condition(padded, [1], [10.0])
    assert cp.weights[-1] == 0.0
    np.testing.assert_allclose(cp.weights[:-1], c.weights, rtol=RTOL)
    np.testing.assert_allclose(cp.means[:-1], c.means, rtol=RTOL)


@pytest.mark.parametrize(
    ("features", "values", "match"),
    [
        ([0, 1, 2, 3, 4], np.zeros(5), "nothing is left to condition"),
        ([1, 1], [0.0, 0.0], "must not repeat"),
        ([5], [0.0], r"indices in \[0, 5\)"),
        ([-1], [0.0], r"indices in \[0, 5\)"),
        ([0.5], [0.0], "integer indices or a boolean mask"),
        ([[0, 1]], [0.0, 0.0], "1-D sequence"),
        (np.ones(3, dtype=bool), [0.0], r"boolean mask of features must have shape \(5,\)"),
        ([0, 1], [0.0], r"values must have shape \(2,\)"),
        ([0], [np.nan], "values must be finite"),
    ],
)
def test_condition_rejects_bad_arguments(features, values, match):
    with pytest.raises(InvalidParameterError, match=match):
        condition(random_params("full"), features, values)


def test_marginal_rejects_no_features():
    with pytest.raises(InvalidParameterError, match="at least one feature"):
        marginal(random_params("diag"), [])


# ----------------------------------------------------- log_marginal_density
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_log_marginal_density_matches_scipy_row_by_row(name):
    params = random_params(name)
    X = rows_with_gaps(params)
    expected = np.array([ref_row(params, x)[0] for x in X])
    got = log_marginal_density(params, X)
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    assert got[1] == 0.0  # nothing observed


def test_log_marginal_density_of_complete_rows_is_score_samples():
    params = random_params("full")
    gm = GaussianMixture.from_parameters(
        params.weights, params.means, params.covariances, covariance_type="full"
    )
    X, _ = sample(params, 50, np.random.default_rng(5))
    np.testing.assert_allclose(log_marginal_density(params, X), gm.score_samples(X), rtol=1e-9)


# ------------------------------------------------------------ impute (mean)
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_impute_mean_matches_dense_algebra_row_by_row(name):
    params = random_params(name)
    X = rows_with_gaps(params)
    expected = np.array([ref_row(params, x)[1] for x in X])
    got = impute(params, X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    observed = ~np.isnan(X)
    np.testing.assert_array_equal(got[observed], X[observed])
    np.testing.assert_array_equal(got[0], X[0])  # complete row untouched
    np.testing.assert_allclose(got[1], params.weights @ params.means, rtol=RTOL)  # mixture mean


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_impute_mean_is_the_mean_of_condition(name):
    params = random_params(name)
    X = rows_with_gaps(params, n=10, seed=7)
    got = impute(params, X)
    for x, filled in zip(X, got, strict=True):
        obs = np.flatnonzero(~np.isnan(x))
        if obs.size in (0, D):
            continue
        c = condition(params, obs, x[obs])
        np.testing.assert_allclose(filled[remaining_features(D, obs)], c.weights @ c.means)


def test_impute_does_not_depend_on_row_order_or_grouping():
    params = random_params("full")
    X = rows_with_gaps(params, n=80, seed=8)
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(impute(params, X[perm]), impute(params, X)[perm], rtol=1e-13)
    np.testing.assert_allclose(impute(params, X[5:6]), impute(params, X)[5:6], rtol=1e-13)


def test_impute_one_component_single_feature_observed():
    params = random_params("full", k=1, d=3)
    x = np.array([[np.nan, 10.5, np.nan]])
    _, m, _ = ref_condition(params, np.array([1]), np.array([10.5]))
    np.testing.assert_allclose(impute(params, x)[0, [0, 2]], m[0], rtol=RTOL)


def test_impute_without_missing_values_returns_a_copy():
    params = random_params("tied")
    X, _ = sample(params, 7, np.random.default_rng(0))
    out = impute(params, X)
    np.testing.assert_array_equal(out, X)
    assert out is not X


def test_impute_float32_rows_compute_in_float64():
    params = random_params("diag")
    X = rows_with_gaps(params).astype(np.float32)
    np.testing.assert_allclose(impute(params, X), impute(params, X.astype(np.float64)), rtol=1e-15)


def test_empty_chunks():
    params = random_params("full")
    empty = np.empty((0, D))
    assert impute(params, empty).shape == (0, D)
    assert impute(params, empty, 3, np.random.default_rng(0)).shape == (3, 0, D)
    assert log_marginal_density(params, empty).shape == (0,)


@pytest.mark.parametrize(
    ("X", "kwargs", "error", "match"),
    [
        (np.zeros(D), {}, InvalidInputError, "must be 2-D"),
        (np.zeros((2, D + 1)), {}, InvalidInputError, "has 6 features, but the mixture has 5"),
        (np.array([[0.0, np.inf, 0, 0, 0]]), {}, InvalidInputError, "infinity in row 0"),
        (np.zeros((1, D)), {"n_draws": -1}, InvalidParameterError, "n_draws must be an int"),
        (np.zeros((1, D)), {"n_draws": 2.0}, InvalidParameterError, "n_draws must be an int"),
        (np.zeros((1, D)), {"n_draws": 2}, InvalidParameterError, "rng must be a numpy"),
        (np.zeros((1, D)), {"n_draws": 2, "rng": 0}, InvalidParameterError, "rng must be"),
    ],
)
def test_impute_rejects_bad_arguments(X, kwargs, error, match):
    with pytest.raises(error, match=match):
        impute(random_params("full"), X, **kwargs)


# ----------------------------------------------------------- impute (draws)
def bimodal_params(name: str) -> MixtureParams:
    """Two components whose conditionals given x0 = 0 share the weight about evenly."""
    family = get_family(name)
    means = np.array([[-1.0, 2.0, -3.0], [1.2, -2.0, 4.0]])
    shape = family.covariance_shape(2, 3)
    if name == "full":
        cov = np.array(
            [
                [[1.0, 0.6, -0.3], [0.6, 1.5, 0.2], [-0.3, 0.2, 0.8]],
                [[1.2, -0.4, 0.5], [-0.4, 0.7, 0.1], [0.5, 0.1, 1.1]],
            ]
        )
    elif name == "tied":
        cov = np.array([[1.0, 0.6, -0.3], [0.6, 1.5, 0.2], [-0.3, 0.2, 0.8]])
    else:
        cov = np.linspace(0.6, 1.4, int(np.prod(shape))).reshape(shape)
    return MixtureParams.from_covariances(family, np.array([0.45, 0.55]), means, cov)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_draws_have_the_conditional_mean_and_covariance(name):
    params = bimodal_params(name)
    X = np.array(
        [
            [0.0, np.nan, np.nan],  # bimodal conditional
            [np.nan, 0.1, np.nan],
            [np.nan, np.nan, np.nan],  # the whole mixture
            [0.3, -0.2, 0.5],  # complete
        ]
    )
    n_draws = 100_000
    draws = impute(params, X, n_draws, np.random.default_rng(20240601))
    assert draws.shape == (n_draws, 4, 3)
    np.testing.assert_array_equal(draws[:, 3], np.broadcast_to(X[3], (n_draws, 3)))
    np.testing.assert_array_equal(draws[:, 0, 0], 0.0)
    np.testing.assert_array_equal(draws[:, 1, 1], 0.1)
    for i in range(3):
        mis = np.flatnonzero(np.isnan(X[i]))
        _, filled, cov = ref_row(params, X[i])
        sample_ = draws[:, i][:, mis]
        # Tolerances of six standard errors, estimated from the draws themselves;
        # the seed is fixed, so the check is deterministic.
        centred = sample_ - filled[mis]
        mean_se = np.sqrt(np.diag(cov) / n_draws)
        np.testing.assert_array_less(np.abs(centred.mean(axis=0)), 6 * mean_se)
        products = centred[:, :, None] * centred[:, None, :]
        cov_se = products.std(axis=0) / np.sqrt(n_draws)
        np.testing.assert_array_less(np.abs(products.mean(axis=0) - cov), 6 * cov_se + 1e-12)
    # Responsibilities near one half: picking the component wrongly would move the
    # mean by about the gap between the components' conditional means, far beyond.
    w, _, _ = ref_condition(params, np.array([0]), np.array([0.0]))
    assert 0.2 < w[0] < 0.8


def test_draws_are_reproducible_and_independent_of_other_rows():
    params = random_params("full")
    X = rows_with_gaps(params, n=30, seed=9)
    a = impute(params, X, 5, np.random.default_rng(1))
    b = impute(params, X, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    Y = X.copy()
    Y[10] = np.nan  # another row changes pattern
    Y[11, :] = X[0]
    c = impute(params, Y, 5, np.random.default_rng(1))
    keep = np.setdiff1d(np.arange(len(X)), [10, 11])
    np.testing.assert_allclose(c[:, keep], a[:, keep], rtol=1e-13)


def test_draws_from_one_component_single_feature_observed():
    params = bimodal_params("full")
    one = MixtureParams.from_covariances(
        params.family, np.ones(1), params.means[:1], params.covariances[:1]
    )
    x = np.array([[np.nan, 2.5, np.nan]])
    n_draws = 50_000
    draws = impute(one, x, n_draws, np.random.default_rng(3))[:, 0, [0, 2]]
    _, m, cov = ref_condition(one, np.array([1]), np.array([2.5]))
    se = np.sqrt(np.diag(cov[0]) / n_draws)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - m[0]), 6 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov[0], rtol=0.05)


def test_rows_whose_density_underflows_are_named():
    params = random_params("full")
    X = np.array([[10.0, 10.0, 10.0, 10.0, 10.0], [1e200, np.nan, 10.0, 10.0, 10.0]])
    for call in (
        lambda: impute(params, X),
        lambda: impute(params, X, 2, np.random.default_rng(0)),
        lambda: log_marginal_density(params, X),
    ):
        with pytest.raises(InvalidInputError, match="Row 1 of X is so far from every component"):
            call()
    with pytest.raises(InvalidParameterError, match="underflows to zero"):
        condition(params, [0], [1e200])
