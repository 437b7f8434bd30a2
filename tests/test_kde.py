"""KernelDensity: scipy's and scikit-learn's log-densities on chunked input, sampling, files.

scikit-learn's tree-based ``KernelDensity`` is compared on queries drawn from
the data's own distribution only: in low-density regions its estimates are off
by percents even with ``rtol=0`` (scikit-learn issues #7492 and #27186), while
ours equal a brute-force log-sum-exp there (tested below).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import warnings

import dask.array as da
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import gaussian_kde
from sklearn.neighbors import KernelDensity as SklearnKernelDensity
from sklearn.utils.estimator_checks import parametrize_with_checks

import streammix as sm
from streammix.core.kde_math import MomentStats, bandwidth_factor, partial_logsumexp
from streammix.engine.data import ChunkedData
from streammix.estimators import kernel_density as kde_module
from streammix.estimators.kernel_density import KernelDensity
from streammix.io.modelfile import META_FILE

from .conftest import write_zarr

RNG = np.random.default_rng(7)
D = 3
MIX = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.2, 0.5]])
# Correlated rows far from the origin: centring and whitening matter.
X = RNG.standard_normal((2000, D)) @ MIX.T + np.array([40.0, -25.0, 7.0])
Q = RNG.standard_normal((300, D)) @ MIX.T + np.array([40.0, -25.0, 7.0])
# Isotropic unit-scale rows for the isotropic float bandwidth.
XI = RNG.standard_normal((2000, D)) + 5.0
QI = RNG.standard_normal((300, D)) + 5.0

INPUTS = ["numpy", "dask", "zarr"]


def as_input(kind: str, A: np.ndarray, tmp_path, name: str, rows: int = 450):
    """``A`` as chunked input of the given kind, several chunks each (uneven last one)."""
    if kind == "numpy":
        return ChunkedData.from_numpy(A, chunk_rows=rows)
    if kind == "dask":
        return da.from_array(A, chunks=(rows, A.shape[1]))
    return write_zarr(tmp_path / f"{name}.zarr", A, rows)


def check_rel(got, want, rtol: float = 1e-8) -> None:
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=0.0)


# --------------------------------------------------------------- differential
@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_log_density_equals_scipy_gaussian_kde(rule, kind, tmp_path):
    ref = gaussian_kde(X.T, bw_method=rule)
    kde = KernelDensity(bandwidth=rule).fit(as_input(kind, X, tmp_path, "train"))
    assert kde.n_samples_fit_ == X.shape[0] and kde.n_features_in_ == D
    np.testing.assert_allclose(kde.factor_, ref.factor, rtol=1e-14)
    np.testing.assert_allclose(kde.covariance_, ref.covariance, rtol=1e-10)
    np.testing.assert_allclose(kde.cholesky_ @ kde.cholesky_.T, ref.covariance, rtol=1e-10)
    want = ref.logpdf(Q.T)
    check_rel(kde.score_samples(Q), want)
    lazy = kde.score_samples(as_input(kind, Q, tmp_path, "query", rows=70))
    if kind != "numpy":
        assert isinstance(lazy, da.Array)
        assert lazy.chunks[0] == (70, 70, 70, 70, 20)
    check_rel(np.asarray(lazy), want)
    assert kde.score(Q) == pytest.approx(float(np.mean(want)), rel=1e-10)


@pytest.mark.parametrize("kind", INPUTS)
def test_float_bandwidth_equals_sklearn(kind, tmp_path):
    want = SklearnKernelDensity(bandwidth=0.4).fit(XI).score_samples(QI)
    kde = KernelDensity(bandwidth=0.4).fit(as_input(kind, XI, tmp_path, "train"))
    np.testing.assert_array_equal(kde.covariance_, 0.4**2 * np.eye(D))
    check_rel(kde.score_samples(QI), want)
    check_rel(np.asarray(kde.score_samples(as_input(kind, QI, tmp_path, "query", 64))), want)


def brute_force(A: np.ndarray, queries: np.ndarray, cov: np.ndarray) -> np.ndarray:
    L = np.linalg.cholesky(cov)
    diff = queries[:, None, :] - A[None, :, :]
    z = np.linalg.solve(L, diff.reshape(-1, A.shape[1]).T).T.reshape(diff.shape)
    log_det = np.sum(np.log(np.diag(L)))
    const = np.log(A.shape[0]) + 0.5 * A.shape[1] * np.log(2 * np.pi) + log_det
    return logsumexp(-0.5 * np.sum(z * z, axis=2), axis=1) - const


def test_far_from_the_data_the_density_does_not_underflow():
    kde = KernelDensity(bandwidth=0.05).fit(XI)
    far = np.array([[5.0, 5.0, 5.0], [15.0, 5.0, 5.0], [5.0, -60.0, 5.0], [1e3, 1e3, 1e3]])
    got = kde.score_samples(far)
    assert np.all(np.isfinite(got)) and got[-1] < -1e8
    check_rel(got, brute_force(XI, far, kde.covariance_), rtol=1e-10)


def test_bandwidth_rules_follow_scipys_formulas():
    assert bandwidth_factor("scott", 2000, 3) == pytest.approx(2000 ** (-1 / 7), rel=1e-15)
    assert bandwidth_factor("silverman", 2000, 3) == pytest.approx(
        (2000 * 5 / 4) ** (-1 / 7), rel=1e-15
    )


# ------------------------------------------------------------------ chunking
def test_result_does_not_depend_on_the_chunking(tmp_path):
    want = KernelDensity().fit(X).score_samples(Q)
    fits = [
        ChunkedData.from_numpy(X, chunk_rows=333),
        da.from_array(X, chunks=(1999, D)),
        da.from_array(X, chunks=((7, 993, 1, 999), (D,))),
        write_zarr(tmp_path / "a.zarr", X, 128),
    ]
    queries = [Q, da.from_array(Q[:40], chunks=(3, D)), ChunkedData.from_numpy(Q, chunk_rows=17)]
    for train in fits:
        kde = KernelDensity().fit(train)
        check_rel(kde.score_samples(queries[0]), want, rtol=1e-12)
        check_rel(np.asarray(kde.score_samples(queries[1])), want[:40], rtol=1e-12)
        check_rel(kde.score_samples(queries[2]), want, rtol=1e-12)


@pytest.mark.parametrize(
    ("query_rows", "ref_rows"), [(1, 97), (120, 1), (7, 300), (300, 2000), (64, 13)]
)
def test_partial_log_sum_exps_do_not_depend_on_sub_blocks(query_rows, ref_rows):
    Zq, Zr = RNG.standard_normal((120, D)), RNG.standard_normal((500, D)) * 3.0
    want = logsumexp(-0.5 * np.sum((Zq[:, None] - Zr[None]) ** 2, axis=2), axis=1)
    got = partial_logsumexp(Zq, Zr, query_rows=query_rows, ref_rows=ref_rows)
    check_rel(got, want, rtol=1e-12)
    halves = np.logaddexp(partial_logsumexp(Zq, Zr[:200]), partial_logsumexp(Zq, Zr[200:]))
    check_rel(halves, want, rtol=1e-12)


def test_merged_moments_equal_the_moments_of_everything():
    A = RNG.standard_normal((1001, D)) * [1.0, 1e-3, 50.0] + 1e8
    shift = A[:10].mean(axis=0)
    whole = MomentStats.of_rows(A, shift)
    cuts = [0, 1, 2, 500, 999, 1001]
    merged = MomentStats.zero(shift)
    for a, b in itertools.pairwise(cuts):
        merged = merged + MomentStats.of_rows(A[a:b], shift)
    np.testing.assert_allclose(merged.covariance(), whole.covariance(), rtol=1e-9, atol=0)
    np.testing.assert_allclose(merged.location(), whole.location(), rtol=1e-15)
    np.testing.assert_allclose(merged.covariance(), np.cov(A, rowvar=False), rtol=1e-7, atol=0)


def test_covariance_of_data_far_from_the_origin_does_not_cancel():
    Z = RNG.standard_normal((4000, D)) @ MIX.T
    kde = KernelDensity().fit(da.from_array(Z + 1e8, chunks=(700, D)))
    want = np.cov(Z, rowvar=False) * bandwidth_factor("scott", 4000, D) ** 2
    np.testing.assert_allclose(kde.covariance_, want, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ sampling
def test_samples_have_the_mean_and_covariance_of_the_kde():
    kde = KernelDensity(bandwidth="silverman").fit(X)
    S = kde.sample(200_000, random_state=0)
    assert S.shape == (200_000, D) and S.dtype == np.float64
    np.testing.assert_allclose(S.mean(axis=0), X.mean(axis=0), atol=0.01)
    want = np.cov(X, rowvar=False, ddof=0) + kde.covariance_
    # Sampling error is ~0.004; the kernel covariance adds up to ~0.1 (must be seen).
    np.testing.assert_allclose(np.cov(S, rowvar=False), want, atol=0.02)
    assert np.max(np.abs(np.cov(S, rowvar=False) - np.cov(X, rowvar=False, ddof=0))) > 0.08


def test_sampling_is_seeded_and_reads_lazy_data_alike(tmp_path):
    a = KernelDensity().fit(X)
    b = KernelDensity().fit(write_zarr(tmp_path / "x.zarr", X, 300))
    # The same rows and draws; the kernel factors differ in rounding (other chunk sums).
    check_rel(a.sample(50, random_state=3), b.sample(50, random_state=3), rtol=1e-12)
    assert a.sample().shape == (1, D)
    assert not np.array_equal(a.sample(5, random_state=1), a.sample(5, random_state=2))


# ------------------------------------------------------------------- files
def test_save_and_load_round_trip(tmp_path):
    kde = KernelDensity(bandwidth="silverman").fit(X.astype(np.float32))
    path = kde.save(tmp_path / "model")
    loaded = sm.load(path)
    assert type(loaded) is KernelDensity and loaded.get_params() == kde.get_params()
    assert loaded.reference_.dtype == np.float32
    np.testing.assert_array_equal(loaded.score_samples(Q), kde.score_samples(Q))
    np.testing.assert_array_equal(loaded.covariance_, kde.covariance_)
    np.testing.assert_array_equal(loaded.sample(9, random_state=0), kde.sample(9, random_state=0))
    meta = json.loads((tmp_path / "model" / META_FILE).read_text())
    assert meta["kind"] == "KernelDensity" and meta["reference"]["stored"] is True


def test_float_bandwidth_and_lazy_training_data_round_trip(tmp_path):
    kde = KernelDensity(bandwidth=0.4).fit(da.from_array(XI, chunks=(300, D)))
    loaded = sm.load(kde.save(tmp_path / "model"))
    assert loaded.bandwidth == 0.4 and loaded.reference_path_ is None
    check_rel(loaded.score_samples(QI), kde.score_samples(QI), rtol=1e-13)


def test_large_data_fitted_from_a_path_point_to_it(tmp_path, monkeypatch):
    monkeypatch.setattr(kde_module, "MAX_SAVED_VALUES", 100)
    src = write_zarr(tmp_path / "train.zarr", X, 500)
    kde = KernelDensity().fit(src)
    loaded = sm.load(kde.save(tmp_path / "model"))
    assert not [p for p in (tmp_path / "model").iterdir() if p.name.startswith("reference")]
    assert loaded.reference_path_ == os.path.abspath(src)
    assert isinstance(loaded.reference_, da.Array)
    check_rel(loaded.score_samples(Q), kde.score_samples(Q), rtol=1e-15)
    shutil.rmtree(src)
    write_zarr(src, X[:-1], 500)
    with pytest.raises(sm.ModelFileError, match=r"shape \(1999, 3\).*fitted on shape"):
        sm.load(tmp_path / "model")
    (tmp_path / "train.zarr" / "zarr.json").unlink()
    with pytest.raises(sm.ModelFileError, match="training data at .* cannot be opened"):
        sm.load(tmp_path / "model")


def test_large_data_without_a_path_are_not_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(kde_module, "MAX_SAVED_VALUES", 100)
    kde = KernelDensity().fit(da.from_array(X, chunks=(500, D)))
    with pytest.raises(sm.ModelFileError, match="exceed the 100 values.*fit from its path"):
        kde.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_inconsistent_model_file_is_refused(tmp_path):
    path = tmp_path / "model"
    KernelDensity().fit(X).save(path)
    meta = json.loads((path / META_FILE).read_text())
    meta["n_samples"] = 5
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(sm.ModelFileError, match="model.json does not match its checksum"):
        sm.load(path)
    del meta["metadata_sha256"]  # as a model saved before metadata checksums existed
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(sm.ModelFileError, match="'reference' has shape"):
        sm.load(path)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("bad", ["scot", "", 0, -1.0, float("inf"), float("nan"), True, None])
def test_invalid_bandwidth_is_refused(bad):
    msg = (
        r"The 'bandwidth' parameter of KernelDensity must be a str among "
        r"\{'scott', 'silverman'\} or a float in \(0, inf\)\. Got .* instead\."
    )
    with pytest.raises(sm.InvalidParameterError, match=msg):
        KernelDensity(bandwidth=bad).fit(X)


def test_invalid_sample_arguments_are_refused():
    kde = KernelDensity().fit(X)
    with pytest.raises(sm.InvalidParameterError, match="'n_samples' parameter of Kernel"):
        kde.sample(0)
    with pytest.raises(sm.InvalidParameterError, match="'random_state' parameter"):
        kde.sample(2, random_state="seed")


def test_rule_bandwidths_refuse_collinear_data():
    """Collinear features give a singular covariance whatever the rounding: scipy's
    gaussian_kde refuses it only when its Cholesky factorisation happens to fail."""
    from sklearn.datasets import make_classification

    redundant, _ = make_classification(n_samples=30, n_features=10, random_state=42)
    with pytest.raises(np.linalg.LinAlgError):
        gaussian_kde(redundant.T)
    for data in (redundant, np.column_stack([X[:, 0], 2.0 * X[:, 0]])):
        with pytest.raises(sm.InvalidInputError, match="data covariance is singular"):
            KernelDensity().fit(data)
        KernelDensity(bandwidth=0.5).fit(data)


def test_input_errors_name_the_cause():
    bad = X.copy()
    bad[1234, 1] = np.nan
    with pytest.raises(sm.InvalidInputError, match="row 1234 is the first"):
        KernelDensity().fit(bad)
    with pytest.raises(sm.InvalidInputError, match="row 1234 is the first"):
        KernelDensity().fit(da.from_array(bad, chunks=(300, D)))
    kde = KernelDensity().fit(X)
    with pytest.raises(sm.InvalidInputError, match="row 5 is one"):
        kde.score_samples(da.from_array(bad[1229:1240], chunks=(4, D))).compute()
    with pytest.raises(sm.InvalidInputError, match="X has 2 features, but KernelDensity is"):
        kde.score_samples(Q[:, :2])
    with pytest.raises(sm.NotFittedError, match="not fitted yet"):
        KernelDensity().score_samples(Q)
    with pytest.raises(sm.InvalidInputError, match="at least 2 samples.*n_samples = 1"):
        KernelDensity().fit(X[:1])
    assert KernelDensity(1.0).fit(X[:1]).score_samples(X[:1])[0] == pytest.approx(
        -1.5 * np.log(2 * np.pi)
    )
    with pytest.raises(sm.InvalidInputError, match="data covariance is singular"):
        KernelDensity().fit(np.column_stack([X[:, 0], 2.0 * X[:, 0]]))


def test_the_model_does_not_follow_later_changes_to_the_training_array():
    A = X.copy()
    kde = KernelDensity().fit(A)
    before = kde.score_samples(Q)
    A += 100.0
    np.testing.assert_array_equal(kde.score_samples(Q), before)


with warnings.catch_warnings():
    # The checks warn that the class does not inherit sklearn.base.BaseEstimator.
    warnings.simplefilter("ignore", UserWarning)
    _checks = parametrize_with_checks(
        [KernelDensity(), KernelDensity(bandwidth=0.5)],
        expected_failed_checks=lambda est: (
            {
                # Its data, make_classification(n_features=10), hold two features that are
                # linear combinations of others: a singular covariance, which a rule
                # bandwidth cannot be scaled from (scipy's gaussian_kde refuses it too).
                "check_array_api_input": "singular data covariance with a rule bandwidth",
                # 15 rows in 30 dimensions: singular too (the float-bandwidth estimator
                # runs this check; tests/test_weights.py covers the rules).
                "check_sample_weight_equivalence_on_dense_data": (
                    "singular data covariance with a rule bandwidth"
                ),
            }
            if isinstance(est.bandwidth, str)
            else {}
        ),
    )


@_checks
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
