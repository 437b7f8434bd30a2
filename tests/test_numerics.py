"""Numerical robustness: offsets, float32, degenerate components, extreme values."""

from __future__ import annotations

import numpy as np
import pytest

import streammix as sm
from streammix.core.families import FAMILY_NAMES

from .conftest import blobs


@pytest.mark.parametrize("cov_type", FAMILY_NAMES)
def test_data_offset_by_a_million_fit_the_same_up_to_the_shift(cov_type):
    X = blobs(4000, d=4, k=3, seed=4)
    shifted = X + 1e6
    a = sm.GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
    b = sm.GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(shifted)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(b.weights_, a.weights_, rtol=1e-7)
    np.testing.assert_allclose(b.means_ - 1e6, a.means_, atol=1e-6)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-6)
    assert b.lower_bound_ == pytest.approx(a.lower_bound_, rel=1e-8)
    np.testing.assert_allclose(b.score_samples(shifted), a.score_samples(X), rtol=1e-7)


def test_raw_moments_would_have_cancelled():
    """At offset 1e8 with unit spread, E[x^2] - E[x]^2 loses every digit in float64;
    the fit in a centred frame still recovers the variances."""
    rng = np.random.default_rng(0)
    X = rng.normal(0.0, 1.0, size=(20_000, 2)) * [1.0, 2.0] + 1e8
    gm = sm.GaussianMixture(1, covariance_type="diag").fit(X)
    np.testing.assert_allclose(gm.covariances_[0], [1.0, 4.0], rtol=0.05)


@pytest.mark.parametrize("cov_type", FAMILY_NAMES)
def test_float32_fit_is_close_to_float64(cov_type):
    X = blobs(6000, d=4, k=3, seed=6)
    a = sm.GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
    b = sm.GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X.astype(np.float32))
    assert b.means_.dtype == np.float64
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-3, atol=1e-4)
    assert b.lower_bound_ == pytest.approx(a.lower_bound_, rel=1e-5)


def _far_component_start(X):
    means = np.array([X[:100].mean(0), X[-100:].mean(0), X.mean(0) + 1e4])
    return dict(means_init=means, weights_init=[0.4, 0.4, 0.2])


def test_empty_component_is_kept_by_default_as_scikit_learn_keeps_it():
    X = blobs(1000, d=2, k=2, seed=8)
    gm = sm.GaussianMixture(3, **_far_component_start(X)).fit(X)
    assert gm.weights_[2] < 1e-10 and np.all(gm.weights_[:2] > 0.1)
    assert np.all(np.isfinite(gm.covariances_)) and np.all(np.isfinite(gm.score_samples(X)))
    # scikit-learn's example: ten components on two distinct rows
    Y = np.concatenate([np.ones((5, 1)), np.zeros((5, 1))])
    weights = np.sort(sm.GaussianMixture(10, random_state=0).fit(Y).weights_)[::-1]
    np.testing.assert_allclose(weights[:2], [0.5, 0.5], rtol=1e-6)
    assert np.all(weights[2:] < 1e-10)


def test_empty_component_is_reseeded_on_request():
    X = blobs(1000, d=2, k=2, seed=8)
    gm = sm.GaussianMixture(3, on_degenerate="reseed", max_iter=300, **_far_component_start(X)).fit(
        X
    )
    assert np.all(gm.weights_ > 0.01)
    assert np.all(np.isfinite(gm.covariances_))


def test_collapsed_component_without_regularisation():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(300, 2)), np.tile([[8.0, 8.0]], (60, 1))])
    with pytest.raises(sm.DegenerateComponentError, match="ill-defined covariance"):
        sm.GaussianMixture(2, reg_covar=0.0, random_state=0).fit(X)
    with pytest.warns(sm.ConvergenceWarning):
        gm = sm.GaussianMixture(
            2, reg_covar=0.0, random_state=0, on_degenerate="reseed", max_iter=20
        ).fit(X)
    assert np.all(np.isfinite(gm.covariances_)) and np.all(np.isfinite(gm.score_samples(X)))


def test_zero_variance_feature_is_regularised():
    X = blobs(1000, d=3, k=2, seed=9)
    X[:, 1] = 5.0
    gm = sm.GaussianMixture(2, random_state=0).fit(X)
    assert np.all(np.isfinite(gm.score_samples(X)))
    assert gm.covariances_[:, 1, 1] == pytest.approx(1e-6, rel=1e-3)


def test_identical_rows_fit_a_point_mass_with_reg_covar():
    X = np.full((50, 3), 1e300)
    gm = sm.GaussianMixture(1).fit(X)
    np.testing.assert_allclose(gm.means_, X[:1])
    np.testing.assert_allclose(gm.covariances_[0], 1e-6 * np.eye(3))
    assert np.all(np.isfinite(gm.score_samples(X)))


def test_spread_too_large_for_float64_covariances_is_refused():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2)) * 1e300
    with pytest.raises(sm.InvalidInputError, match="too large.*Rescale"):
        sm.GaussianMixture(1).fit(X)


def test_huge_but_representable_values_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2)) * 1e120 + 1e121
    gm = sm.GaussianMixture(1).fit(X)
    np.testing.assert_allclose(gm.covariances_[0], np.eye(2) * 1e240, rtol=0.1, atol=1e239)
    assert np.all(np.isfinite(gm.score_samples(X)))
