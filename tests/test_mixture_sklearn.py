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
