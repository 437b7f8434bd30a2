"""Numerical robustness: offsets, float32, degenerate components, extreme values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

import streammix as sm
from streammix.core.families import FAMILY_NAMES
from streammix.errors import UnscorableInput

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
    # fitted attributes keep the training data's dtype, as scikit-learn's do
    assert b.means_.dtype == b.covariances_.dtype == np.float32
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


FLOAT32_FAMILIES = [
    ("full", {}),
    ("tied", {}),
    ("diag", {}),
    ("spherical", {}),
    ("lowrank", {"rank": 2}),
]
FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


@pytest.mark.parametrize(("cov_type", "extra"), FLOAT32_FAMILIES)
def test_float32_in_float32_out_as_scikit_learn(cov_type, extra, tmp_path):
    """Float32 data give float32 fitted arrays, log-likelihoods and probabilities (the
    statistics still add up in float64); model files and loading keep the dtype."""
    import dask.array as da

    X = blobs(3000, d=4, k=3, seed=6)
    X32 = X.astype(np.float32)
    gm = sm.GaussianMixture(3, covariance_type=cov_type, random_state=0, **extra).fit(X32)
    for name in FITTED_ARRAYS:
        assert getattr(gm, name).dtype == np.float32, name
    assert gm.score_samples(X32).dtype == np.float32
    assert gm.predict_proba(X32).dtype == np.float32
    lazy = gm.score_samples(da.from_array(X32, chunks=(700, 4)))
    assert lazy.dtype == np.float32 and lazy.compute().dtype == np.float32
    assert isinstance(gm.score(X32), float)
    assert gm.score(X32) == pytest.approx(float(np.mean(gm.score_samples(X32))), rel=1e-6)
    # float64 rows under a float32 model, and float32 rows under a float64 model, are
    # scored in float64 (numpy's promotion, as in scikit-learn)
    assert gm.score_samples(X).dtype == gm.predict_proba(X).dtype == np.float64
    g64 = sm.GaussianMixture(3, covariance_type=cov_type, random_state=0, **extra).fit(X)
    assert g64.means_.dtype == g64.score_samples(X32).dtype == np.float64
    loaded = sm.load(gm.save(tmp_path / "model"))
    for name in FITTED_ARRAYS:
        assert getattr(loaded, name).dtype == np.float32, name
    np.testing.assert_array_equal(loaded.score_samples(X32), gm.score_samples(X32))
    # a warm start from a float32 model on float32 data stays float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sm.ConvergenceWarning)
        gm.set_params(warm_start=True, max_iter=2).fit(X32)
    assert all(getattr(gm, name).dtype == np.float32 for name in FITTED_ARRAYS)


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
def test_float32_dtypes_equal_scikit_learns(cov_type):
    from sklearn.mixture import GaussianMixture as SklearnGM

    X = blobs(2000, d=3, k=2, seed=7)
    X32 = X.astype(np.float32)
    for fit_on in (X32, X):
        sk = SklearnGM(2, covariance_type=cov_type, random_state=0).fit(fit_on)
        gm = sm.GaussianMixture(2, covariance_type=cov_type, random_state=0).fit(fit_on)
        for name in FITTED_ARRAYS:
            assert getattr(gm, name).dtype == getattr(sk, name).dtype, name
        for rows in (X32, X):
            assert gm.score_samples(rows).dtype == sk.score_samples(rows).dtype
            assert gm.predict_proba(rows).dtype == sk.predict_proba(rows).dtype


@pytest.mark.parametrize("cov_type", ["full", "tied"])
def test_ill_conditioned_float32_model_loads(cov_type, tmp_path):
    """The float32 precision factor is the factor of the float32 covariances, so the
    file's factor matches its covariances however ill-conditioned they are."""
    rng = np.random.default_rng(17)
    d = 12
    A = rng.normal(size=(d, d)) * np.logspace(0, 3, d)
    X = rng.normal(size=(5000, d)) @ A + rng.integers(0, 3, (5000, 1)) * 50.0
    gm = sm.GaussianMixture(3, covariance_type=cov_type, random_state=17).fit(X.astype(np.float32))
    loaded = sm.load(gm.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.precisions_cholesky_, gm.precisions_cholesky_)


# ------------------------------------------- far-apart components of very different spreads
def _far_apart(n: int = 50_000, seed: int = 0) -> np.ndarray:
    """One component at 1000 with standard deviation 0.01, one at -1000 with 1."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(1000, 0.01, (n, 2)), rng.normal(-1000, 1.0, (n, 2))])


_TRUE_START = {
    "weights_init": [0.5, 0.5],
    "means_init": [[1000.0, 1000.0], [-1000.0, -1000.0]],
}
_PRECISIONS = {
    "full": np.array([np.eye(2) * 1e4, np.eye(2)]),
    "diag": np.array([[1e4, 1e4], [1.0, 1.0]]),
    "spherical": np.array([1e4, 1.0]),
    "tied": np.eye(2),
}


def _exact_variances(X: np.ndarray, n: int, reg_covar: float = 1e-6) -> np.ndarray:
    """Each component's per-feature variance plus ``reg_covar``, two-pass in float64
    (the separation makes the responsibilities exactly 0 or 1)."""
    X = X.astype(np.float64)
    return np.array([X[:n].var(axis=0), X[n:].var(axis=0)]) + reg_covar


@pytest.mark.parametrize("cov_type", FAMILY_NAMES)
def test_far_apart_tight_components_fit_exactly_in_float64(cov_type):
    from sklearn.mixture import GaussianMixture as SklearnGM

    X = _far_apart()
    start = dict(_TRUE_START, precisions_init=_PRECISIONS[cov_type], max_iter=10, tol=0.0)
    with pytest.warns(sm.ConvergenceWarning):
        gm = sm.GaussianMixture(2, covariance_type=cov_type, **start).fit(X)
    variances = np.diagonal(gm.params_.dense_covariances(), axis1=1, axis2=2)
    if cov_type == "full":  # scikit-learn centres full covariances exactly
        sk = SklearnGM(2, covariance_type="full", **start).fit(X)
        np.testing.assert_allclose(gm.covariances_, sk.covariances_, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(gm.means_, sk.means_, rtol=1e-12)
    if cov_type in ("full", "diag"):  # (its diag, spherical, tied use raw moments)
        np.testing.assert_allclose(variances, _exact_variances(X, 50_000), rtol=1e-9)
    if cov_type == "spherical":
        exact = _exact_variances(X, 50_000, 0.0).mean(axis=1) + 1e-6
        np.testing.assert_allclose(variances[:, 0], exact, rtol=1e-9)


@pytest.mark.parametrize("cov_type", FAMILY_NAMES)
def test_far_apart_tight_components_fit_to_float32_accuracy(cov_type):
    X = _far_apart()
    kwargs = {"max_iter": 5, "tol": 0.0, **_TRUE_START}
    kwargs["precisions_init"] = _PRECISIONS[cov_type]
    with pytest.warns(sm.ConvergenceWarning):
        a = sm.GaussianMixture(2, covariance_type=cov_type, **kwargs).fit(X)
    with pytest.warns(sm.ConvergenceWarning):
        b = sm.GaussianMixture(2, covariance_type=cov_type, **kwargs).fit(X.astype(np.float32))
    va = np.diagonal(a.params_.dense_covariances(), axis1=1, axis2=2)
    vb = np.diagonal(b.params_.dense_covariances(), axis1=1, axis2=2)
    np.testing.assert_allclose(vb, va, rtol=1e-4)


def test_online_em_keeps_far_apart_tight_components_in_float32():
    X = _far_apart(20_000)
    rng = np.random.default_rng(1)
    X = X[rng.permutation(len(X))].astype(np.float32)
    start = dict(_TRUE_START, precisions_init=_PRECISIONS["diag"])
    om = sm.OnlineGaussianMixture(
        2, covariance_type="diag", batch_size=4000, random_state=0, **start
    )
    om.fit(X)
    exact = X.astype(np.float64)
    order = np.argsort(om.means_[:, 0])[::-1]
    truth = np.array([exact[exact[:, 0] > 0].var(axis=0), exact[exact[:, 0] < 0].var(axis=0)])
    np.testing.assert_allclose(np.asarray(om.covariances_)[order], truth, rtol=0.05)
    # the tight component is not lost to rounding: its variance is that of the data
    assert float(np.asarray(om.covariances_)[order][0, 0]) == pytest.approx(1e-4, rel=0.05)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_property_far_apart_tight_float32_mixtures_fit_to_float32_accuracy(seed):
    rng = np.random.default_rng(seed)
    loc = float(10.0 ** rng.uniform(1, 4))
    tight = float(10.0 ** rng.uniform(-4, -2)) * loc
    n = 3000
    X = np.concatenate([rng.normal(loc, tight, (n, 2)), rng.normal(-loc, loc / 1000, (n, 2))])
    X32 = X.astype(np.float32)
    truth = _exact_variances(X32, n)
    start = {
        "weights_init": [0.5, 0.5],
        "means_init": [X32[:n].astype(np.float64).mean(0), X32[n:].astype(np.float64).mean(0)],
        "precisions_init": 1.0 / truth,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sm.ConvergenceWarning)
        gm = sm.GaussianMixture(2, covariance_type="diag", max_iter=3, **start).fit(X32)
    np.testing.assert_allclose(np.asarray(gm.covariances_, dtype=np.float64), truth, rtol=1e-4)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_property_online_em_keeps_far_apart_tight_float32_components(seed):
    """The same mixtures through OnlineGaussianMixture: a batch of every row from the
    true start is one exact M-step, to float32 accuracy however far apart."""
    from streammix.engine.data import ChunkedData

    rng = np.random.default_rng(seed)
    loc = float(10.0 ** rng.uniform(1, 4))
    tight = float(10.0 ** rng.uniform(-4, -2)) * loc
    n = 3000
    X = np.concatenate([rng.normal(loc, tight, (n, 2)), rng.normal(-loc, loc / 1000, (n, 2))])
    X32 = X[rng.permutation(2 * n)].astype(np.float32)
    high = X32[:, 0] > 0
    exact = X32.astype(np.float64)
    truth = np.array([exact[high].var(axis=0), exact[~high].var(axis=0)]) + 1e-6
    start = {
        "weights_init": [0.5, 0.5],
        "means_init": [exact[high].mean(0), exact[~high].mean(0)],
        "precisions_init": 1.0 / truth,
    }
    om = sm.OnlineGaussianMixture(2, covariance_type="diag", **start)
    om.partial_fit(ChunkedData.from_numpy(X32, 2 * n))
    np.testing.assert_allclose(np.asarray(om.covariances_, dtype=np.float64), truth, rtol=1e-4)


def _float32_model_and_overflow_rows(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, 3)).astype(np.float32)
    gm = sm.GaussianMixture(2, random_state=0).fit(X)
    Y = X[:10].copy()
    Y[7] = 1e36  # finite in float32, but its squared distance overflows
    assert np.all(np.isfinite(Y))
    return X, gm, Y


def test_an_overflowing_finite_row_is_an_error_naming_it_never_a_nan_score():
    _, gm, Y = _float32_model_and_overflow_rows()
    for method in (gm.score_samples, gm.predict, gm.predict_proba, gm.score):
        with pytest.raises(UnscorableInput, match="Row 7 has zero density"):
            method(Y)


def test_streammix_score_names_the_global_overflowing_row_or_applies_on_invalid(tmp_path):
    from streammix.io.outputs import UNSCORABLE

    from .conftest import write_zarr
    from .test_cli import assert_one_line_error, run

    X, gm, _ = _float32_model_and_overflow_rows()
    gm.save(tmp_path / "m")
    Z = np.concatenate([X, X])
    Z[2500] = 1e36
    write_zarr(tmp_path / "x.zarr", Z, 1000)
    code, _, err = run(
        "score", tmp_path / "x.zarr", "--model", tmp_path / "m", "--output",
        tmp_path / "a.zarr", check=False,
    )  # fmt: skip
    assert_one_line_error(code, err, 3, "Row 2500 has zero density under every component")
    run(
        "flag", tmp_path / "x.zarr", "--model", tmp_path / "m", "--output",
        tmp_path / "b.zarr", "--threshold", "-20", "--on-invalid", "skip",
    )  # fmt: skip
    out = zarr.open_group(tmp_path / "b.zarr", mode="r")
    ll = out["log_likelihood"][:]
    assert np.isnan(ll[2500]) and np.isfinite(np.delete(ll, 2500)).all()
    assert out["flag"][2500] == UNSCORABLE
