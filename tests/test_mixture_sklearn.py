"""Differential tests against scikit-learn's GaussianMixture from the same start."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGM

import streammix as sm
from streammix.core.families import FAMILY_NAMES

from .conftest import blobs

X_OFFSET = blobs(3000, d=5, k=4, seed=0, offset=100.0)


def _start(cov_type: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        sk = SklearnGM(4, covariance_type=cov_type, random_state=0, max_iter=1).fit(X_OFFSET)
    return {"weights_init": sk.weights_, "means_init": sk.means_, "precisions_init": sk.precisions_}


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12 * np.max(np.abs(b)))))


@pytest.mark.parametrize("cov_type", FAMILY_NAMES)
def test_twenty_iterations_match_sklearn(cov_type):
    start = _start(cov_type)
    kw = dict(n_components=4, covariance_type=cov_type, tol=0.0, max_iter=20, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        sk = SklearnGM(**kw).fit(X_OFFSET)
    with pytest.warns(sm.ConvergenceWarning):
        gm = sm.GaussianMixture(**kw).fit(X_OFFSET)
    assert _rel(gm.weights_, sk.weights_) < 1e-6
    assert _rel(gm.means_, sk.means_) < 1e-6
    assert _rel(gm.covariances_, sk.covariances_) < 1e-6
    assert _rel(gm.precisions_, sk.precisions_) < 1e-6
    assert _rel(gm.score_samples(X_OFFSET), sk.score_samples(X_OFFSET)) < 1e-6
    assert gm.n_iter_ == sk.n_iter_ == 20
    np.testing.assert_allclose(gm.lower_bounds_, sk.lower_bounds_, rtol=1e-9)
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-9)
    np.testing.assert_allclose(gm.predict_proba(X_OFFSET), sk.predict_proba(X_OFFSET), atol=1e-8)
    np.testing.assert_array_equal(gm.predict(X_OFFSET), sk.predict(X_OFFSET))
    assert gm.bic(X_OFFSET) == pytest.approx(sk.bic(X_OFFSET), rel=1e-9)
    assert gm.aic(X_OFFSET) == pytest.approx(sk.aic(X_OFFSET), rel=1e-9)
    assert gm.score(X_OFFSET) == pytest.approx(sk.score(X_OFFSET), rel=1e-9)


@pytest.mark.parametrize("cov_type", FAMILY_NAMES)
def test_converges_like_sklearn_with_default_tol(cov_type):
    start = _start(cov_type)
    sk = SklearnGM(4, covariance_type=cov_type, **start).fit(X_OFFSET)
    gm = sm.GaussianMixture(4, covariance_type=cov_type, **start).fit(X_OFFSET)
    assert gm.converged_ and sk.converged_
    assert gm.n_iter_ == sk.n_iter_
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-9)


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_method_reaches_a_comparable_optimum(init):
    X = blobs(2000, d=3, k=3, seed=5)
    sk = SklearnGM(3, init_params=init, n_init=3, random_state=0).fit(X)
    gm = sm.GaussianMixture(3, init_params=init, n_init=3, random_state=0).fit(X)
    assert gm.converged_
    assert gm.lower_bound_ > sk.lower_bound_ - 0.05


def test_to_sklearn_gives_an_equivalent_estimator():
    X = blobs(1000, d=3, k=2, seed=1)
    gm = sm.GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    sk = gm.to_sklearn()
    assert isinstance(sk, SklearnGM)
    np.testing.assert_allclose(sk.score_samples(X), gm.score_samples(X), rtol=1e-10)
    np.testing.assert_array_equal(sk.predict(X), gm.predict(X))
    assert sk.sample(5)[0].shape == (5, 3)


def test_warm_start_continues_from_the_fitted_parameters():
    X = np.random.default_rng(2).standard_normal((1000, 3))
    with pytest.warns(sm.ConvergenceWarning):
        gm = sm.GaussianMixture(3, max_iter=2, tol=0.0, random_state=0, warm_start=True).fit(X)
    first = gm.means_.copy()
    with pytest.warns(sm.ConvergenceWarning):
        gm.fit(X)
    with pytest.warns(sm.ConvergenceWarning):
        ref = sm.GaussianMixture(3, max_iter=4, tol=0.0, random_state=0).fit(X)
    assert np.max(np.abs(first - gm.means_)) > 1e-4
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-10)
    np.testing.assert_allclose(gm.lower_bounds_, ref.lower_bounds_[2:], rtol=1e-10)


def test_wide_data_use_the_whitening_kernel_and_still_match_sklearn():
    from streammix.core.families.full import PACKED_MAX_FEATURES

    rng = np.random.default_rng(0)
    d = PACKED_MAX_FEATURES + 16
    X = rng.normal(size=(3000, d)) @ rng.normal(size=(d, d)) * 0.3
    X += rng.integers(0, 3, (3000, 1)) * 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        sk0 = SklearnGM(3, random_state=0, max_iter=1).fit(X)
    kw = dict(
        weights_init=sk0.weights_,
        means_init=sk0.means_,
        precisions_init=sk0.precisions_,
        tol=0.0,
        max_iter=10,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        sk = SklearnGM(3, **kw).fit(X)
    with pytest.warns(sm.ConvergenceWarning):
        gm = sm.GaussianMixture(3, **kw).fit(X)
    assert _rel(gm.covariances_, sk.covariances_) < 1e-6
    assert _rel(gm.score_samples(X), sk.score_samples(X)) < 1e-6


# ----------------------------------------------------------- warm start convergence
def _one_iteration_fits_until_converged(make, X, limit=200):
    """Fit ``make()`` (warm_start, max_iter=1) again and again until it converges; the
    number of fits and every fit's history."""
    est = make()
    history = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        warnings.simplefilter("ignore", sm.ConvergenceWarning)
        for n_fits in range(1, limit + 1):
            est.fit(X)
            history.append((est.converged_, est.n_iter_, list(est.lower_bounds_)))
            if est.converged_:
                return n_fits, history, est
    return None, history, est


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_warm_start_convergence_is_measured_from_the_previous_fit(cov_type):
    """scikit-learn compares a continued fit's first lower bound with the previous fit's
    last one: one-iteration fits converge after as many fits as scikit-learn's."""
    X = blobs(1500, d=3, k=3, seed=3)
    # a poor shared start (random responsibilities), so that EM needs many iterations
    sk0 = SklearnGM(3, covariance_type=cov_type, init_params="random", max_iter=0)
    sk0.set_params(random_state=0).fit(X)
    start = {
        "weights_init": sk0.weights_,
        "means_init": sk0.means_,
        "precisions_init": sk0.precisions_,
    }
    kw = dict(covariance_type=cov_type, warm_start=True, max_iter=1, tol=1e-4, **start)
    sk_fits, sk_history, sk = _one_iteration_fits_until_converged(lambda: SklearnGM(3, **kw), X)
    gm_fits, gm_history, gm = _one_iteration_fits_until_converged(
        lambda: sm.GaussianMixture(3, **kw), X
    )
    assert sk_fits is not None and 2 < sk_fits < 200
    assert gm_fits == sk_fits
    # each fit's own history: one iteration, one bound, converged only at the end
    assert [h[:2] for h in gm_history] == [h[:2] for h in sk_history]
    for (_, _, ours), (_, _, theirs) in zip(gm_history, sk_history, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-9)


def test_resuming_a_continued_fit_ends_with_the_uninterrupted_history():
    X = blobs(1000, d=2, k=2, seed=4)

    def first():
        with pytest.warns(sm.ConvergenceWarning):
            return sm.GaussianMixture(2, max_iter=2, tol=0.0, random_state=0, warm_start=True).fit(
                X
            )

    checkpoints = []
    whole = first().set_params(max_iter=4)
    with pytest.warns(sm.ConvergenceWarning):
        whole.fit(X, on_iteration=lambda r: checkpoints.append(r.checkpoint()))
    resumed = first().set_params(max_iter=4)
    with pytest.warns(sm.ConvergenceWarning):
        resumed.fit(X, resume=checkpoints[1])
    assert whole.n_iter_ == resumed.n_iter_ == 4
    np.testing.assert_allclose(resumed.lower_bounds_, whole.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(resumed.means_, whole.means_, rtol=1e-12)


# ------------------------------------------------------------ means_init without precisions
def _start_for(X, cov_type, k):
    """A start scikit-learn and streammix share: parameters after one scikit-learn step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        sk = SklearnGM(k, covariance_type=cov_type, random_state=0, max_iter=1).fit(X)
    return {"weights_init": sk.weights_, "means_init": sk.means_, "precisions_init": sk.precisions_}


def _translated_copies(n=1000, d=3, centres=((0.0, 0.0, 0.0), (30.0, 0.0, 0.0), (0.0, 30.0, 0.0))):
    """Clusters that are translated copies of one anisotropic cloud: k-means finds them
    in both libraries, and every cluster has the same weight and covariance, so a start
    that pairs the given means with the clusters in any order is the same start."""
    rng = np.random.default_rng(21)
    cloud = rng.normal(size=(n, d)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]])
    return np.concatenate([cloud + np.asarray(c) for c in centres])


X_COPIES = _translated_copies()


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("max_iter", [0, 1, 20])
def test_means_init_alone_starts_where_scikit_learn_starts(cov_type, max_iter):
    """Given means only, the start keeps the init method's weights and covariances
    (scikit-learn's ``_initialize``) and replaces the means; the fits then agree.

    scikit-learn pairs the given means with its k-means clusters in the order k-means
    found them (which depends on its random stream); here every cluster has the same
    weight and covariance, so the pairing cannot matter. Two given means lie in one
    cluster and the third between the two others: assigning rows to their nearest
    given mean would start from other covariances."""
    means = np.array([[-3.0, 0.0, 0.0], [3.0, 0.0, 0.0], [15.0, 15.0, 0.0]])
    kw = dict(covariance_type=cov_type, means_init=means, tol=0.0, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        warnings.simplefilter("ignore", sm.ConvergenceWarning)
        sk = SklearnGM(3, random_state=0, **kw).fit(X_COPIES)
        gm = sm.GaussianMixture(3, random_state=0, **kw).fit(X_COPIES)
    assert _rel(gm.weights_, sk.weights_) < 1e-7
    assert _rel(gm.means_, sk.means_) < 1e-7
    assert _rel(gm.covariances_, sk.covariances_) < 1e-7
    assert gm.n_iter_ == sk.n_iter_ == max_iter
    if max_iter:
        np.testing.assert_allclose(gm.lower_bounds_, sk.lower_bounds_, rtol=1e-9)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_means_init_alone_replaces_only_the_means_of_the_method_start(init_params):
    X = blobs(2000, d=3, k=3, seed=12)
    means = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1e4, 1e4, 1e4]])  # the last: no row
    kw = dict(init_params=init_params, random_state=5, max_iter=0)
    method = sm.GaussianMixture(3, **kw).fit(X)
    given = sm.GaussianMixture(3, means_init=means, **kw).fit(X)
    np.testing.assert_array_equal(given.means_, means)
    np.testing.assert_array_equal(given.weights_, method.weights_)
    np.testing.assert_array_equal(given.covariances_, method.covariances_)
    # and EM runs from there: the far component empties, as in scikit-learn, no error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sm.ConvergenceWarning)
        fitted = sm.GaussianMixture(3, means_init=means, init_params=init_params, random_state=5)
        fitted.fit(X)
    assert fitted.weights_[2] < 1e-6 and np.all(np.isfinite(fitted.score_samples(X)))


# ------------------------------------------------------------------ float32 weights_init
def test_float32_weights_init_is_checked_at_float32_precision():
    X = blobs(1000, d=2, k=3, seed=13)
    weights = np.full(3, 1 / 3, dtype=np.float32)
    assert abs(float(np.sum(weights, dtype=np.float64)) - 1.0) > 1e-8  # the float32 rounding
    sk = SklearnGM(3, weights_init=weights, random_state=0).fit(X)
    gm = sm.GaussianMixture(3, weights_init=weights, random_state=0).fit(X)
    assert gm.converged_ and sk.converged_
    # float64 weights are held to 1e-8, and float32 ones still to 1e-6
    with pytest.raises(sm.InvalidParameterError, match="should be normalized"):
        sm.GaussianMixture(3, weights_init=weights.astype(np.float64)).fit(X)
    with pytest.raises(sm.InvalidParameterError, match="should be normalized"):
        sm.GaussianMixture(3, weights_init=weights * np.float32(1.00001)).fit(X)
