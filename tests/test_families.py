"""Each covariance family against dense Gaussian algebra (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from streammix.core.families import FAMILY_NAMES, get_family
from streammix.core.frame import make_frame
from streammix.core.kernel import estep, normalise
from streammix.core.mstep import m_step
from streammix.core.params import MixtureParams
from streammix.errors import CholeskyFailure

K, D = 3, 4


def random_params(name: str, seed: int = 0) -> MixtureParams:
    rng = np.random.default_rng(seed)
    family = get_family(name)
    shape = family.covariance_shape(K, D)
    if name == "full":
        a = rng.normal(size=(K, D, D))
        cov = a @ np.swapaxes(a, 1, 2) + np.eye(D)
    elif name == "tied":
        a = rng.normal(size=(D, D))
        cov = a @ a.T + np.eye(D)
    else:
        cov = rng.uniform(0.5, 2.0, size=shape)
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(0.0, 3.0, size=(K, D)) + 50.0
    return MixtureParams.from_covariances(family, weights, means, cov)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_log_joint_matches_scipy(name):
    params = random_params(name)
    rng = np.random.default_rng(1)
    X = rng.normal(50.0, 3.0, size=(200, D))
    frame = make_frame(X)
    prep = params.prepare(frame, X.dtype)
    y = frame.to_frame(X, np.dtype(np.float64))
    lp, _ = prep.family.log_joint(prep.family.features(y), y, prep)
    dense = params.dense_covariances()
    expected = np.stack(
        [
            np.log(params.weights[k]) + multivariate_normal(params.means[k], dense[k]).logpdf(X)
            for k in range(K)
        ]
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-10)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_m_step_matches_weighted_moments(name):
    params = random_params(name)
    rng = np.random.default_rng(2)
    X = rng.normal(50.0, 3.0, size=(500, D))
    frame = make_frame(X)
    (stats,) = estep(X, [params.prepare(frame, X.dtype)])
    new = m_step(stats, params.family, reg_covar=1e-6)

    y = frame.to_frame(X, np.dtype(np.float64))
    resp, _ = normalise(
        params.family.log_joint(params.family.features(y), y, params.prepare(frame, X.dtype))[0]
    )
    r = resp.T
    nk = r.sum(axis=0)
    means = (r.T @ X) / nk[:, None]
    np.testing.assert_allclose(new.means, means, rtol=1e-10)
    np.testing.assert_allclose(new.weights, nk / nk.sum(), rtol=1e-10)
    full = np.stack(
        [((X - means[k]).T * r[:, k]) @ (X - means[k]) / nk[k] for k in range(K)]
    ) + 1e-6 * np.eye(D)
    expected = {
        "full": full,
        "diag": np.diagonal(full, axis1=1, axis2=2),
        "spherical": np.trace(full, axis1=1, axis2=2) / D,
        "tied": np.einsum("k,kij->ij", nk, full - 1e-6 * np.eye(D)) / nk.sum() + 1e-6 * np.eye(D),
    }[name]
    np.testing.assert_allclose(new.covariances, expected, rtol=1e-9)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_precision_factors_round_trip(name):
    params = random_params(name)
    fam = params.family
    back = fam.covariances_from_precision_cholesky(params.precisions_cholesky)
    np.testing.assert_allclose(back, params.covariances, rtol=1e-10)
    again = fam.precision_cholesky_from_precisions(params.precisions)
    np.testing.assert_allclose(fam.precisions(again), params.precisions, rtol=1e-10)
    dense_prec = np.linalg.inv(params.dense_covariances())
    np.testing.assert_allclose(
        fam.dense(fam.precisions(params.precisions_cholesky), K, D)
        if name != "tied"
        else np.broadcast_to(params.precisions, (K, D, D)),
        dense_prec,
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_parameter_counts(name):
    expected = {
        "full": K * D * (D + 1) // 2,
        "tied": D * (D + 1) // 2,
        "diag": K * D,
        "spherical": K,
    }[name]
    assert get_family(name).n_covariance_parameters(K, D) == expected


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_singular_covariances_are_reported(name):
    fam = get_family(name)
    shape = fam.covariance_shape(K, D)
    cov = np.zeros(shape)
    with pytest.raises(CholeskyFailure):
        fam.precision_cholesky(cov)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="Unknown covariance_type 'banded'"):
        get_family("banded")
