"""Each covariance family against dense Gaussian algebra (scipy), what families say
about themselves, and their block kernels."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from streammix.core.families import COVARIANCE_TYPES, FAMILY_NAMES, family_for, get_family
from streammix.core.families.full import (
    PACKED_MAX_FEATURES,
    FullCovariance,
    PackedKernel,
    WhiteningKernel,
    WhiteningPrepared,
)
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
    lp, _ = prep.kernel.log_joint(prep.kernel.features(y), y, prep)
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
    prep = params.prepare(frame, X.dtype)
    (stats,) = estep(X, [prep])
    new = m_step(stats, params.family, reg_covar=1e-6)

    y = frame.to_frame(X, np.dtype(np.float64))
    resp, _ = normalise(prep.kernel.log_joint(prep.kernel.features(y), y, prep)[0])
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


# ---------------------------------------------------------------- what families say
def any_params(name: str, seed: int = 0, n_features: int = D) -> MixtureParams:
    """Random parameters of any registered family (``"lowrank"`` with rank 2)."""
    if name != "lowrank" and n_features == D:
        return random_params(name, seed)
    rng = np.random.default_rng(seed)
    d = n_features
    family = get_family(name, 2 if name == "lowrank" else None)
    if name == "lowrank":
        cov = np.concatenate(
            [rng.normal(size=(K, d, 2)), rng.uniform(0.5, 2.0, size=(K, d, 1))], axis=2
        )
    elif name == "full":
        a = rng.normal(size=(K, d, d)) / np.sqrt(d)
        cov = a @ np.swapaxes(a, 1, 2) + np.eye(d)
    else:
        raise AssertionError(name)
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(0.0, 3.0, size=(K, d)) + 50.0
    return MixtureParams.from_covariances(family, weights, means, cov)


@pytest.mark.parametrize("name", COVARIANCE_TYPES)
def test_rescaled_covariances_are_those_of_the_scaled_variable(name):
    params = any_params(name)
    fam = params.family
    scale = np.full(D, 2.5) if name == "spherical" else np.array([0.5, 2.0, 3.0, 1e-3])
    got = fam.rescaled(params.covariances, scale)
    assert got.shape == params.covariances.shape
    expected = scale[:, None] * params.dense_covariances() * scale[None, :]
    np.testing.assert_allclose(fam.dense(got, K, D), expected, rtol=1e-12)


def test_spherical_covariances_refuse_unequal_scales():
    fam = get_family("spherical")
    with pytest.raises(ValueError, match="covariance_type='spherical'.*unequal per-feature"):
        fam.rescaled(np.ones(K), np.array([1.0, 2.0, 1.0, 1.0]))


def test_scikit_learn_names():
    assert {get_family(n).sklearn_name for n in FAMILY_NAMES} == {
        "full",
        "tied",
        "diag",
        "spherical",
    }
    assert all(get_family(n).sklearn_name == n for n in FAMILY_NAMES)
    assert get_family("lowrank", 3).sklearn_name is None


@pytest.mark.parametrize("name", COVARIANCE_TYPES)
def test_structural_parameters_select_the_family_again(name):
    fam = any_params(name).family
    assert family_for(fam.name, **fam.structural_parameters()) is fam
    assert get_family(fam.name, **fam.structural_parameters()) is fam
    assert pickle.loads(pickle.dumps(fam)) is fam


def test_family_for_reads_the_rank_off_lowrank_covariances():
    packed = np.ones((2, 5, 4))
    assert family_for("lowrank", packed) is get_family("lowrank", 3)
    assert family_for("lowrank", packed, rank=2) is get_family("lowrank", 2)
    assert family_for("lowrank", rank=1) is get_family("lowrank", 1)
    assert family_for("diag", np.ones((2, 5))) is get_family("diag")
    assert family_for("full") is get_family("full")
    with pytest.raises(ValueError, match="needs a rank of at least 1"):
        family_for("lowrank", np.ones((2, 5)))
    with pytest.raises(ValueError, match="needs a rank of at least 1"):
        family_for("lowrank", np.ones((2, 5, 1)))
    with pytest.raises(ValueError, match="Unknown covariance_type 'banded'"):
        family_for("banded", packed)


@pytest.mark.parametrize("name", COVARIANCE_TYPES)
def test_dense_family_holds_the_dense_covariances(name):
    params = any_params(name)
    full = get_family("full")
    assert params.family.dense_family() is full
    dense = params.to_full()
    assert dense.family is full
    np.testing.assert_allclose(dense.covariances, params.dense_covariances(), rtol=1e-12)
    assert dense.to_full() is dense


@pytest.mark.parametrize("name", COVARIANCE_TYPES)
def test_only_the_tied_family_shares_its_covariance(name):
    fam = any_params(name).family
    assert fam.shared_covariance == (name == "tied")
    if fam.shared_covariance:
        assert fam.describe_degenerate((0, 2)) == "the shared (tied) covariance"
    else:
        assert fam.describe_degenerate((1,)) == "component 1"
        assert fam.describe_degenerate((0, 2)) == "components 0, 2"


# ------------------------------------------------------------------ block kernels
def test_full_kernel_is_chosen_once_per_width():
    fam = get_family("full")
    assert isinstance(fam.kernel(PACKED_MAX_FEATURES), PackedKernel)
    assert isinstance(fam.kernel(PACKED_MAX_FEATURES + 1), WhiteningKernel)
    wide = any_params("full", n_features=PACKED_MAX_FEATURES + 1)
    X = np.random.default_rng(0).normal(50.0, 3.0, size=(10, PACKED_MAX_FEATURES + 1))
    prep = wide.prepare(make_frame(X), X.dtype)
    assert isinstance(prep, WhiteningPrepared)
    assert prep.whiteners.shape == (K, PACKED_MAX_FEATURES + 1, PACKED_MAX_FEATURES + 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_both_full_kernels_give_the_same_densities_and_statistics(dtype):
    params = random_params("full")
    X = np.random.default_rng(3).normal(50.0, 3.0, size=(400, D)).astype(dtype)
    frame = make_frame(X, dtype)
    fam = params.family
    assert isinstance(fam, FullCovariance)
    preps = [
        kernel.prepare(
            params.weights, params.means, params.precisions_cholesky, frame, np.dtype(dtype)
        )
        for kernel in (PackedKernel(fam), WhiteningKernel(fam))
    ]
    packed, whitened = estep(X, preps)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert whitened.allclose(packed, rtol=tol, atol=tol)
    y = frame.to_frame(X, np.dtype(dtype))
    lps = [p.kernel.log_joint(p.kernel.features(y), y, p)[0] for p in preps]
    np.testing.assert_allclose(lps[1], lps[0], rtol=tol)


def test_kernels_compare_by_kind_and_family():
    diag = get_family("diag")
    assert diag.kernel(3) == diag.kernel(7)
    assert hash(diag.kernel(3)) == hash(diag.kernel(7))
    assert diag.kernel(3) != get_family("spherical").kernel(3)
    assert get_family("lowrank", 1).kernel(3) != get_family("lowrank", 2).kernel(3)
    full = get_family("full")
    assert full.kernel(2) != full.kernel(PACKED_MAX_FEATURES + 1)


@pytest.mark.parametrize(
    ("name", "n_features"),
    [(n, D) for n in COVARIANCE_TYPES] + [("full", PACKED_MAX_FEATURES + 1)],
)
def test_prepared_values_travel_by_pickle(name, n_features):
    params = any_params(name, n_features=n_features)
    X = np.random.default_rng(4).normal(50.0, 3.0, size=(50, n_features))
    prep = params.prepare(make_frame(X), X.dtype)
    back = pickle.loads(pickle.dumps(prep))
    assert type(back) is type(prep)
    assert back.kernel == prep.kernel and back.family is params.family
    (a,) = estep(X, [prep])
    (b,) = estep(X, [back])
    assert b.allclose(a, rtol=0.0)
