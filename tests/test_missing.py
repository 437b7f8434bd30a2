"""Missing-value EM (Ghahramani & Jordan 1994)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import streammix as sm
from streammix.core.families import FAMILY_NAMES
from streammix.core.frame import make_frame
from streammix.core.kernel import estep
from streammix.core.missing import estep_missing
from streammix.core.sampling import sample
from streammix.datasets import true_mixture


@pytest.mark.parametrize("cov_type", FAMILY_NAMES)
def test_without_missing_values_the_statistics_are_the_usual_ones(cov_type):
    X = np.random.default_rng(0).normal(size=(2000, 4)) * [1, 2, 3, 4] + 5
    gm = sm.GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
    frame = make_frame(X)
    (usual,) = estep(X, [gm.params_.prepare(frame, X.dtype)])
    assert estep_missing(X, gm.params_, frame).allclose(usual, rtol=1e-10, atol=1e-9)


def test_expected_statistics_with_missing_values_match_the_gaussian_conditional():
    """E[x x^T] of a missing entry under one Gaussian: conditional mean squared plus
    conditional variance; the log-likelihood is the observed entry's marginal."""
    gm = sm.GaussianMixture.from_parameters([1.0], [[1.0, -2.0]], [[[2.0, 1.2], [1.2, 1.5]]])
    X = np.array([[0.5, np.nan]])
    stats = estep_missing(X, gm.params_, make_frame(np.array([[0.0, 0.0], [1.0, 1.0]])))
    stats = stats.recentered(gm.params_.family, None)  # moments about the frame's origin
    frame = stats.frame
    m = -2.0 + 1.2 / 2.0 * (0.5 - 1.0)
    v = 1.5 - 1.2**2 / 2.0
    y_obs = (0.5 - frame.shift[0]) / frame.scale
    y_mis = (m - frame.shift[1]) / frame.scale
    second = stats.s2[0][0]
    np.testing.assert_allclose(second[1, 1], y_mis**2 + v / frame.scale**2, rtol=1e-12)
    np.testing.assert_allclose(second[0, 1], y_obs * y_mis, rtol=1e-12)
    assert stats.loglik == pytest.approx(-0.5 * np.log(2 * np.pi * 2.0) - (0.5 - 1.0) ** 2 / 4.0)


def test_missing_em_beats_fitting_the_complete_rows_only():
    truth = true_mixture(8, 4, seed=3, spread=2.0)
    X, _ = sample(truth, 14_000, np.random.default_rng(0))
    train, test = X[:10_000], X[10_000:]
    holes = train.copy()
    holes[np.random.default_rng(1).random(holes.shape) < 0.25] = np.nan
    complete = holes[~np.isnan(holes).any(axis=1)]
    assert len(complete) < 1_200
    em = sm.GaussianMixture(4, missing="em", random_state=0).fit(holes)
    only = sm.GaussianMixture(4, random_state=0).fit(complete)
    assert em.score(test) > only.score(test) + 0.05
    assert np.all(np.diff(em.lower_bounds_) > -1e-9)  # EM never decreases the bound


def test_lazy_input_with_missing_values_fits_the_same():
    truth = true_mixture(3, 2, seed=1)
    X, _ = sample(truth, 6_000, np.random.default_rng(2))
    X[np.random.default_rng(3).random(X.shape) < 0.2] = np.nan
    a = sm.GaussianMixture(2, missing="em", random_state=0).fit(X)
    b = sm.GaussianMixture(2, missing="em", random_state=0).fit(da.from_array(X, chunks=(1_000, 3)))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)


def test_default_refuses_nan_and_em_refuses_infinity():
    X = np.random.default_rng(0).normal(size=(100, 2))
    X[5, 0] = np.nan
    with pytest.raises(sm.InvalidInputError, match="row 5"):
        sm.GaussianMixture(2).fit(X)
    X[7, 1] = np.inf
    with pytest.raises(sm.InvalidInputError, match="row 7"):
        sm.GaussianMixture(2, missing="em").fit(X)
