"""Sample weights: a row of integer weight w is w copies of it, a row of weight 0 is no row.

Every estimator that fits takes ``sample_weight`` as a numpy or dask array, a Zarr
array (or its location) or a Parquet column; the CLI takes ``--sample-weight``.
"""

from __future__ import annotations

import copy

import dask.array as da
import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.engine import quantile as quantiles
from streammix.errors import InvalidInputError, InvalidInputTypeError

from .conftest import blobs, write_zarr
from .test_cli import assert_one_line_error, run

FAMILIES = ("full", "tied", "diag", "spherical", "lowrank")


@pytest.fixture(scope="module")
def data():
    X = blobs(n=1200, d=4, k=3, seed=3)
    w = np.random.default_rng(4).integers(0, 4, size=len(X))
    return X, w.astype(np.float64), np.repeat(X, w, axis=0)


def _given_start(X, k, family="full", rank=None):
    """A fixed starting point (the first EM step is then the same for any input)."""
    gm = sm.GaussianMixture(k, covariance_type=family, rank=rank, max_iter=1, random_state=0)
    with pytest.warns(sm.ConvergenceWarning):
        gm.fit(X)
    return gm


def _start_from(X, k):
    """Constructor arguments that start a full-covariance fit at a fixed point."""
    gm = _given_start(X, k)
    return {
        "n_components": k,
        "weights_init": gm.weights_,
        "means_init": gm.means_,
        "precisions_init": gm.precisions_,
    }


def _close(a, b, rtol=1e-9):
    for name in ("weights_", "means_", "covariances_"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.max(np.abs(y)), err_msg=name)


def _sorted(gm):
    """Components in the order of their first mean coordinate (fits from different
    starts number them differently)."""
    order = np.argsort(gm.means_[:, 0])
    out = type("Sorted", (), {})()
    out.weights_, out.means_ = gm.weights_[order], gm.means_[order]
    cov = gm.covariances_
    out.covariances_ = cov if gm.covariance_type == "tied" else cov[order]
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_integer_weights_equal_repeated_rows_for_gaussian_mixture(data, family):
    X, w, R = data
    if family == "lowrank":
        # factor-analyser EM converges slowly: the same start and 40 iterations each
        start = _given_start(X, 3, "lowrank", 2)
        with pytest.warns(sm.ConvergenceWarning):
            weighted = sm.GaussianMixture.from_model(start, max_iter=40, tol=0.0)
            weighted.fit(X, sample_weight=w)
        with pytest.warns(sm.ConvergenceWarning):
            repeated = sm.GaussianMixture.from_model(start, max_iter=40, tol=0.0).fit(R)
        _close(weighted, repeated)
    else:
        kw = dict(covariance_type=family, tol=1e-12, max_iter=500, random_state=0)
        weighted = sm.GaussianMixture(3, **kw).fit(X, sample_weight=w)
        repeated = sm.GaussianMixture(3, **kw).fit(R)
        _close(_sorted(weighted), _sorted(repeated))
    assert weighted.bic(X, sample_weight=w) == pytest.approx(repeated.bic(R), rel=1e-9)
    assert weighted.aic(X, sample_weight=w) == pytest.approx(repeated.aic(R), rel=1e-9)
    assert weighted.score(X, sample_weight=w) == pytest.approx(repeated.score(R), rel=1e-9)


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random_from_data", "random"])
def test_every_initialisation_takes_weights(data, init):
    X, w, R = data
    kw = dict(init_params=init, n_init=4, tol=1e-12, max_iter=500, random_state=1)
    weighted = sm.GaussianMixture(3, **kw).fit(X, sample_weight=w)
    repeated = sm.GaussianMixture(3, **kw).fit(R)
    # different random draws, the same well-separated optimum
    _close(_sorted(weighted), _sorted(repeated), rtol=1e-6)


def test_weighted_kmeans_start_ignores_rows_of_weight_zero():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (500, 2)), rng.normal(50, 1, (500, 2))])
    w = np.r_[np.ones(500), np.zeros(500)]
    gm = sm.GaussianMixture(2, max_iter=0, random_state=0).fit(X, sample_weight=w)
    assert np.all(np.abs(gm.means_) < 5)  # no centre among the dropped rows


def test_zero_weight_equals_dropping_the_row(data):
    X, w, _ = data
    kw = dict(_start_from(X, 3), max_iter=20, tol=0.0)
    with pytest.warns(sm.ConvergenceWarning):
        a = sm.GaussianMixture(**kw).fit(X, sample_weight=w)
    with pytest.warns(sm.ConvergenceWarning):
        b = sm.GaussianMixture(**kw).fit(X[w > 0], sample_weight=w[w > 0])
    _close(a, b, rtol=1e-12)
    # a row of weight zero may even be far away
    Y = X.copy()
    Y[np.flatnonzero(w == 0)[0]] = 1e30
    with pytest.warns(sm.ConvergenceWarning):
        c = sm.GaussianMixture(**kw).fit(Y, sample_weight=w)
    _close(a, c, rtol=1e-12)


def test_weights_from_zarr_dask_and_parquet_give_the_numpy_fit(data, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, w, _ = data
    kw = dict(n_components=3, tol=1e-10, max_iter=300, random_state=0)
    ref = sm.GaussianMixture(**kw).fit(X, sample_weight=w)
    xz = write_zarr(tmp_path / "x.zarr", X, 100)
    wz = zarr.create_array(str(tmp_path / "w.zarr"), shape=(len(X),), chunks=(70,), dtype="i4")
    wz[:] = w.astype(np.int32)
    table = {f"f{j}": X[:, j] for j in range(X.shape[1])}
    pq.write_table(pa.table({**table, "w": w}), tmp_path / "x.parquet", row_group_size=300)
    fits = {
        "zarr+zarr path": (xz, str(tmp_path / "w.zarr")),
        "zarr+zarr array": (xz, wz),
        "zarr+numpy": (xz, w),
        "zarr+dask": (xz, da.from_array(w, chunks=250)),
        "dask+dask": (da.from_array(X, chunks=(500, 4)), da.from_array(w, chunks=250)),
        "numpy+dask": (X, da.from_array(w, chunks=250)),
        "numpy+zarr": (X, wz),
        "parquet column": (str(tmp_path / "x.parquet"), "w"),
        "(n, 1) weights": (X, w[:, None]),
    }
    for name, (x, weights) in fits.items():
        got = sm.GaussianMixture(**kw).fit(x, sample_weight=weights)
        assert got.n_features_in_ == 4, name
        _close(_sorted(got), _sorted(ref), rtol=1e-9)


@pytest.mark.parametrize(
    "weights, match",
    [
        (lambda n: np.r_[-1.0, np.ones(n - 1)], "row 0 is negative"),
        (lambda n: np.r_[np.ones(n - 1), np.nan], "is not finite"),
        (lambda n: np.r_[np.ones(5), np.inf, np.ones(n - 6)], "row 5 is not finite"),
        (lambda n: np.zeros(n), "Every sample_weight is zero"),
        (lambda n: np.ones(n - 1), "has 1199 values but X has 1200 rows"),
        (lambda n: np.ones((n, 2)), "must be 1-D"),
    ],
)
def test_bad_weights_are_clear_errors(data, weights, match):
    X = data[0]
    for estimator in (
        sm.GaussianMixture(2),
        sm.BayesianGaussianMixture(n_components=2),
        sm.OnlineGaussianMixture(2),
        sm.KernelDensity(),
        sm.OutlierDetector(),
    ):
        with pytest.raises(InvalidInputError, match=match):
            estimator.fit(X, sample_weight=weights(len(X)))
    lazy = da.from_array(weights(len(X)), chunks=100)
    with pytest.raises(InvalidInputError, match=match):
        sm.GaussianMixture(2).fit(da.from_array(X, chunks=(200, 4)), sample_weight=lazy)


def test_weights_that_are_not_numbers(data):
    with pytest.raises(InvalidInputTypeError, match="must be numbers"):
        sm.GaussianMixture(2).fit(data[0], sample_weight=["a"] * len(data[0]))
    with pytest.raises(InvalidInputError, match="neither a column of the Parquet input"):
        sm.GaussianMixture(2).fit(data[0], sample_weight="weights")


@pytest.mark.parametrize("prior", ["dirichlet_process", "dirichlet_distribution"])
def test_integer_weights_equal_repeated_rows_for_bayesian_mixture(data, prior):
    X, w, R = data
    kw = dict(n_components=4, weight_concentration_prior_type=prior, random_state=0)
    # the same posterior to start from (the order of components matters to a
    # Dirichlet process, and k-means draws differ between the two inputs)
    start = sm.BayesianGaussianMixture(max_iter=1, **kw)
    with pytest.warns(sm.ConvergenceWarning):
        start.fit(X, sample_weight=w)
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    for est in (a, b):
        est.set_params(warm_start=True, max_iter=50, tol=0.0)
    with pytest.warns(sm.ConvergenceWarning):
        a.fit(X, sample_weight=w)
    with pytest.warns(sm.ConvergenceWarning):
        b.fit(R)
    _close(a, b)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-9)


def test_integer_weights_equal_repeated_rows_for_online_updates(data):
    X, w, _ = data
    kw = dict(_start_from(X, 3), batch_size=10_000)
    a, b = sm.OnlineGaussianMixture(**kw), sm.OnlineGaussianMixture(**kw)
    for lo in range(0, len(X), 200):
        part, pw = X[lo : lo + 200], w[lo : lo + 200]
        a.partial_fit(part, sample_weight=pw)
        b.partial_fit(np.repeat(part, pw.astype(int), axis=0))
    _close(a, b, rtol=1e-9)
    assert a.n_rows_seen_ == b.n_rows_seen_ == int(w.sum())


def test_online_fit_over_zarr_with_weights(data, tmp_path):
    X, w, _ = data
    xz = write_zarr(tmp_path / "x.zarr", X, 100)
    wz = zarr.create_array(str(tmp_path / "w.zarr"), shape=(len(X),), chunks=(100,), dtype="f8")
    wz[:] = w
    kw = dict(n_components=3, batch_size=300, max_epochs=2, random_state=0)
    a = sm.OnlineGaussianMixture(**kw).fit(xz, sample_weight=str(tmp_path / "w.zarr"))
    # the same chunks (units of updates follow the chunking), weights in memory
    b = sm.OnlineGaussianMixture(**kw).fit(da.from_array(X, chunks=(100, 4)), sample_weight=w)
    _close(a, b, rtol=1e-12)
    unweighted = sm.OnlineGaussianMixture(**kw).fit(xz)
    assert not np.allclose(unweighted.means_, a.means_, rtol=1e-6)


@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.7])
def test_integer_weights_equal_repeated_rows_for_kernel_density(data, tmp_path, bandwidth):
    X, w, R = data
    Q = blobs(n=100, d=4, k=3, seed=9)
    a = sm.KernelDensity(bandwidth=bandwidth).fit(X, sample_weight=w)
    b = sm.KernelDensity(bandwidth=bandwidth).fit(R)
    np.testing.assert_allclose(a.score_samples(Q), b.score_samples(Q), rtol=1e-9)
    np.testing.assert_allclose(a.covariance_, b.covariance_, rtol=1e-9)
    c = sm.KernelDensity(bandwidth=bandwidth).fit(
        write_zarr(tmp_path / "x.zarr", X, 100), sample_weight=da.from_array(w, chunks=300)
    )
    np.testing.assert_allclose(c.score_samples(Q), b.score_samples(Q), rtol=1e-9)
    a.save(tmp_path / "kde")
    loaded = sm.load(tmp_path / "kde")
    np.testing.assert_array_equal(loaded.score_samples(Q), a.score_samples(Q))


def test_weighted_kde_samples_only_rows_with_weight():
    X = np.r_[np.zeros((500, 1)), np.full((500, 1), 100.0)]
    w = np.r_[np.ones(500), np.zeros(500)]
    kde = sm.KernelDensity(bandwidth=0.1).fit(X, sample_weight=w)
    assert np.all(np.abs(kde.sample(400, random_state=0)) < 1)
    lazy = sm.KernelDensity(bandwidth=0.1).fit(da.from_array(X, chunks=(100, 1)), sample_weight=w)
    assert np.all(np.abs(lazy.sample(400, random_state=0)) < 1)


def test_integer_weights_equal_repeated_rows_for_the_outlier_detector(data):
    X, w, R = data
    a = sm.OutlierDetector(contamination=0.05, random_state=0).fit(X, sample_weight=w)
    b = sm.OutlierDetector(contamination=0.05, random_state=0).fit(R)
    _close(_sorted(a), _sorted(b), rtol=1e-9)
    assert a.threshold_ == pytest.approx(b.threshold_, rel=1e-9)
    np.testing.assert_allclose(a.score_coefficients_, b.score_coefficients_, rtol=1e-9)
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X), rtol=1e-9, atol=1e-9)
    c = sm.OutlierDetector(contamination=0.05, random_state=0).fit(
        da.from_array(X, chunks=(250, 4)), sample_weight=w
    )
    _close(c, a, rtol=1e-9)
    assert c.threshold_ == pytest.approx(b.threshold_, rel=1e-9)


def test_missing_value_em_takes_weights(data):
    X, w, _ = data
    Y = X.copy()
    Y[::7, 1] = np.nan
    kw = dict(_start_from(X, 3), missing="em", tol=1e-12, max_iter=200)
    a = sm.GaussianMixture(**kw).fit(Y, sample_weight=w)
    b = sm.GaussianMixture(**kw).fit(np.repeat(Y, w.astype(int), axis=0))
    _close(a, b, rtol=1e-9)


def test_model_selection_uses_the_sum_of_weights(data):
    X, w, R = data
    a = sm.select(X, n_components=range(1, 5), random_state=0, sample_weight=w)
    b = sm.select(R, n_components=range(1, 5), random_state=0)
    # one component, and three for three clusters, have one optimum (two and four
    # components have several, which different draws of the start may reach)
    for ra, rb in zip(a.table, b.table, strict=True):
        if ra["n_components"] in (1, 3):
            assert ra["bic"] == pytest.approx(rb["bic"], rel=1e-9)
            assert ra["aic"] == pytest.approx(rb["aic"], rel=1e-9)
    assert a.best_.n_components == b.best_.n_components == 3


@pytest.mark.parametrize("q", [0.0, 0.01, 0.1, 0.5, 0.97, 1.0])
def test_weighted_quantiles_are_those_of_repeated_values(q):
    rng = np.random.default_rng(0)
    v = rng.normal(size=50_000)
    w = rng.integers(0, 4, size=v.size)
    lazy = quantiles.quantile(da.from_array(v, chunks=7000), q, da.from_array(w, chunks=9000))
    assert lazy == np.quantile(np.repeat(v, w), q)


# ------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def stores(tmp_path_factory, data):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    root = tmp_path_factory.mktemp("weights")
    X, w, _ = data
    write_zarr(root / "x.zarr", X, 200)
    wz = zarr.create_array(str(root / "w.zarr"), shape=(len(X),), chunks=(200,), dtype="f8")
    wz[:] = w
    bad = zarr.create_array(str(root / "bad.zarr"), shape=(len(X),), chunks=(200,), dtype="f8")
    bad[:] = np.r_[w[:700], -2.0, w[701:]]
    short = zarr.create_array(str(root / "short.zarr"), shape=(10,), chunks=(10,), dtype="f8")
    short[:] = 1.0
    cols = {f"f{j}": X[:, j] for j in range(X.shape[1])}
    pq.write_table(pa.table({**cols, "w": w}), root / "x.parquet", row_group_size=400)
    return root


def test_cli_fit_and_kde_with_sample_weight(stores, data):
    X, w, _ = data
    root = stores
    run("fit", root / "x.zarr", "--model", root / "m1", "--n-components", "3",
        "--sample-weight", root / "w.zarr")  # fmt: skip
    run("fit", root / "x.parquet", "--model", root / "m2", "--n-components", "3",
        "--sample-weight", "w")  # fmt: skip
    ref = sm.GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    for m in ("m1", "m2"):
        model = sm.load(root / m)
        assert model.n_features_in_ == 4
        _close(_sorted(model), _sorted(ref), rtol=1e-9)
    run("kde", root / "x.zarr", "--output", root / "kde.zarr", "--sample-weight", root / "w.zarr")
    kde = sm.KernelDensity().fit(X, sample_weight=w)
    written = zarr.open_group(str(root / "kde.zarr"), mode="r")["log_density"][:]
    np.testing.assert_allclose(written, kde.score_samples(X), rtol=1e-12)


@pytest.mark.parametrize(
    "weights, match",
    [
        ("bad.zarr", "sample_weight of row 700 is negative (-2)"),
        ("short.zarr", "sample_weight has 10 values but X has 1200 rows"),
        ("absent.zarr", "neither a column of the Parquet input nor a Zarr array"),
    ],
)
def test_cli_bad_weights_exit_3_with_one_line(stores, weights, match):
    root = stores
    code, _, err = run(
        "fit", root / "x.zarr", "--model", root / f"bad-{weights}", "--n-components", "2",
        "--sample-weight", root / weights, check=False,
    )  # fmt: skip
    assert_one_line_error(code, err, 3, match)
    assert not (root / f"bad-{weights}").exists()


def test_pipeline_steps_take_sample_weight(stores, data, tmp_path):
    from streammix.cluster import ClusterOptions
    from streammix.pipeline import load_pipeline, run_pipeline

    X, w, _ = data
    root = stores
    text = (
        f'[[step]]\njob = "fit"\ndata = "{root / "x.parquet"}"\nmodel = "{tmp_path / "m"}"\n'
        'n_components = 3\nsample_weight = "w"\n\n'
        f'[[step]]\njob = "select"\ndata = "{root / "x.zarr"}"\nmodel = "{tmp_path / "s"}"\n'
        f'n_components = "2-4"\nsample_weight = "{root / "w.zarr"}"\n'
    )
    (tmp_path / "p.toml").write_text(text)
    run_pipeline(load_pipeline(tmp_path / "p.toml"), ClusterOptions(n_workers=1))
    ref = sm.GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    _close(_sorted(sm.load(tmp_path / "m")), _sorted(ref), rtol=1e-9)
    chosen = sm.select(X, n_components=range(2, 5), random_state=0, sample_weight=w)
    assert sm.load(tmp_path / "s").n_components == chosen.best_.n_components
