"""Low-rank plus diagonal covariances (mixtures of factor analysers)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import streammix as sm
from streammix.core.families import get_family
from streammix.core.sampling import sample


def lowrank_mixture(k=3, d=7, r=2, seed=0, offset=10.0):
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(k, d, r))
    noise = rng.uniform(0.3, 1.0, (k, d))
    packed = np.concatenate([factors, noise[:, :, None]], axis=2)
    weights = rng.dirichlet(np.full(k, 3.0))
    means = rng.normal(0.0, 3.0, (k, d)) + offset
    return sm.GaussianMixture.from_parameters(weights, means, packed, "lowrank")


def test_log_density_is_the_dense_gaussian_algebra():
    gm = lowrank_mixture()
    assert gm.rank == 2
    X = np.random.default_rng(1).normal(10.0, 3.0, (400, 7))
    dense = gm.params_.dense_covariances()
    ref = np.log(
        sum(
            w * multivariate_normal(m, c).pdf(X)
            for w, m, c in zip(gm.weights_, gm.means_, dense, strict=True)
        )
    )
    np.testing.assert_allclose(gm.score_samples(X), ref, rtol=1e-10)
    np.testing.assert_allclose(gm.precisions_, np.linalg.inv(dense), rtol=1e-9, atol=1e-12)


def test_statistics_never_hold_a_feature_by_feature_matrix():
    fam = get_family("lowrank", 4)
    shapes = fam.s2_shapes(16, 512)
    assert all(int(np.prod(s)) / 16 < 512 * 512 for s in shapes)
    assert fam.kernel(512).sums_shape(16, 512) == (16, 2 * 512 + 512 * 4 + 4 + 16)


def test_em_increases_the_likelihood_and_recovers_the_density():
    truth = lowrank_mixture(seed=2)
    X, _ = sample(truth.params_, 30_000, np.random.default_rng(3))
    fit = sm.GaussianMixture(
        3, covariance_type="lowrank", rank=2, random_state=0, max_iter=300, tol=1e-6
    ).fit(X)
    assert np.all(np.diff(fit.lower_bounds_) > -1e-9)
    assert fit.score(X) > truth.score(X) - 0.01


def test_chunked_input_fits_the_same():
    truth = lowrank_mixture(seed=4)
    X, _ = sample(truth.params_, 8_000, np.random.default_rng(5))
    a = sm.GaussianMixture(3, covariance_type="lowrank", rank=2, random_state=0).fit(X)
    b = sm.GaussianMixture(3, covariance_type="lowrank", rank=2, random_state=0).fit(
        da.from_array(X, chunks=(1_100, 7))
    )
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-8, atol=1e-12)


def test_beats_diagonal_covariances_on_digits_by_more_than_five_nats():
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    X = load_digits().data + rng.uniform(0.0, 1.0, (1797, 64))
    order = rng.permutation(len(X))
    train, test = X[order[:1400]], X[order[1400:]]
    lowrank = sm.GaussianMixture(
        10, covariance_type="lowrank", rank=6, random_state=0, max_iter=300
    ).fit(train)
    diag = sm.GaussianMixture(10, covariance_type="diag", random_state=0, max_iter=300).fit(train)
    assert lowrank.score(test) - diag.score(test) > 5.0


def test_files_marginals_conditionals_sampling_and_online(tmp_path):
    gm = lowrank_mixture()
    gm.save(tmp_path / "m")
    back = sm.load(tmp_path / "m")
    assert back.covariance_type == "lowrank" and back.rank == 2
    X = np.random.default_rng(6).normal(10.0, 3.0, (50, 7))
    np.testing.assert_array_equal(back.score_samples(X), gm.score_samples(X))
    marg = gm.marginal([1, 4])
    dense = gm.params_.dense_covariances()
    np.testing.assert_allclose(marg.params_.dense_covariances(), dense[:, [1, 4]][:, :, [1, 4]])
    cond = gm.condition([0, 1], X[0, :2])
    assert cond.covariance_type == "full" and cond.means_.shape == (3, 5)
    gm.random_state = 0
    draws, _ = gm.sample(1000)
    assert draws.shape == (1000, 7)
    # Factors start small, so online EM needs a few epochs to grow them.
    online = sm.OnlineGaussianMixture(
        3, covariance_type="lowrank", rank=2, batch_size=2000, random_state=0, max_epochs=10
    )
    Y, _ = sample(gm.params_, 20_000, np.random.default_rng(7))
    online.fit(Y)
    assert online.score(Y) > gm.score(Y) - 0.05
    assert isinstance(gm.to_sklearn().covariances_, np.ndarray)


def test_lowrank_needs_a_rank_and_refuses_what_it_cannot_do():
    with pytest.raises(sm.InvalidParameterError, match="needs a rank"):
        sm.GaussianMixture(2, covariance_type="lowrank").fit(np.zeros((10, 3)))
    with pytest.raises(sm.InvalidParameterError, match="missing='em' is not available"):
        X = np.random.default_rng(0).normal(size=(200, 4))
        X[3, 1] = np.nan
        sm.GaussianMixture(2, covariance_type="lowrank", rank=1, missing="em").fit(X)


def test_fits_far_from_unit_scale_keep_covariances_and_factors_consistent(tmp_path):
    """The frame's scale rescales the factor by the scale and the variances by its
    square: covariances_ describe the density the precision factors score."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 3)) @ np.diag([1.0, 2.0, 0.5]) * 10 + 50
    gm = sm.GaussianMixture(2, covariance_type="lowrank", rank=1, random_state=0).fit(X)
    family = gm.params_.family
    np.testing.assert_allclose(
        family.precision_cholesky(gm.covariances_), gm.precisions_cholesky_, rtol=1e-9
    )
    gm.save(tmp_path / "m")
    np.testing.assert_array_equal(sm.load(tmp_path / "m").score_samples(X), gm.score_samples(X))
    online = sm.OnlineGaussianMixture.from_model(gm)
    np.testing.assert_allclose(online.covariances_, gm.covariances_, rtol=1e-9)
