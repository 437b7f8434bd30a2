"""Sampling, exact conditionals and imputation through the estimators and jobs."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.cluster import ClusterOptions, connect
from streammix.core import conditional
from streammix.jobs import impute_job, kde_job, sample_job

from .test_jobs import tree_digest


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 4, 4))
    cov = a @ np.swapaxes(a, 1, 2) + np.eye(4)
    return sm.GaussianMixture.from_parameters([0.2, 0.5, 0.3], rng.normal(0, 4, (3, 4)), cov)


def test_samples_match_the_mixture_moments_and_come_shuffled(mixture):
    mixture.random_state = 0
    X, labels = mixture.sample(400_000)
    p = mixture.params_
    mean = p.weights @ p.means
    dense = p.dense_covariances()
    cov = np.einsum("k,kij->ij", p.weights, dense) + np.einsum(
        "k,ki,kj->ij", p.weights, p.means - mean, p.means - mean
    )
    scale = np.sqrt(np.diag(cov))
    assert np.all(np.abs(X.mean(0) - mean) < 5 * scale / np.sqrt(400_000))
    np.testing.assert_allclose(np.cov(X, rowvar=False), cov, atol=0.02 * scale.max() ** 2)
    np.testing.assert_allclose(np.bincount(labels) / 400_000, p.weights, atol=0.005)
    # Not grouped by component: the label changes between consecutive rows about as
    # often as for independent draws.
    changes = np.count_nonzero(np.diff(labels))
    expected = 400_000 * (1 - np.sum(p.weights**2))
    assert abs(changes - expected) < 0.02 * expected


def test_marginal_and_condition_return_fitted_mixtures(mixture):
    m = mixture.marginal([2, 0])
    assert isinstance(m, sm.GaussianMixture) and m.means_.shape == (3, 2)
    np.testing.assert_allclose(m.means_, mixture.means_[:, [2, 0]])
    c = mixture.condition([1], [0.5])
    ref = conditional.condition(mixture.params_, [1], [0.5])
    np.testing.assert_allclose(c.weights_, ref.weights)
    np.testing.assert_allclose(c.covariances_, ref.covariances)
    assert np.all(np.isfinite(c.score_samples(np.zeros((2, 3)))))


def test_impute_on_numpy_dask_and_zarr(mixture, tmp_path):
    mixture.random_state = 1
    X, _ = mixture.sample(10_000)
    holes = X.copy()
    holes[np.random.default_rng(0).random(X.shape) < 0.3] = np.nan
    expected = conditional.impute(mixture.params_, holes)
    np.testing.assert_allclose(mixture.impute(holes), expected, rtol=1e-12)
    lazy = mixture.impute(da.from_array(holes, chunks=(1_500, 4)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-12)
    path = tmp_path / "holes.zarr"
    z = zarr.create_array(str(path), shape=holes.shape, chunks=(2_000, 4), dtype="f8")
    z[:] = holes
    np.testing.assert_allclose(mixture.impute(str(path)).compute(), expected, rtol=1e-12)
    draws = mixture.impute(holes, n_draws=3, random_state=0)
    assert draws.shape == (3, 10_000, 4)
    observed = ~np.isnan(holes)
    assert np.all(draws[:, observed] == holes[observed])
    with pytest.raises(sm.InvalidParameterError, match="n_draws"):
        mixture.impute(holes, n_draws=-1)


def test_sample_job_does_not_depend_on_the_workers(mixture, tmp_path):
    model = tmp_path / "model"
    mixture.save(model)
    digests = []
    for i, workers in enumerate((1, 2)):
        out = tmp_path / f"s{i}.zarr"
        with connect(ClusterOptions(n_workers=workers)):
            summary = sample_job.sample(model, out, 50_000, chunk_rows=7_000, seed=5)
        assert summary["complete"]
        digests.append(tree_digest(out))
    assert digests[0] == digests[1]
    X = zarr.open_group(str(tmp_path / "s0.zarr"), mode="r")["X"][:]
    assert X.shape == (50_000, 4) and np.isfinite(X).all()


def test_impute_and_kde_jobs_write_row_aligned_outputs(mixture, tmp_path):
    model = tmp_path / "model"
    mixture.save(model)
    mixture.random_state = 2
    X, _ = mixture.sample(6_000)
    X[::7, 1] = np.nan
    path = tmp_path / "d.zarr"
    z = zarr.create_array(str(path), shape=X.shape, chunks=(1_000, 4), dtype="f8")
    z[:] = X
    impute_job.impute(str(path), model, tmp_path / "filled.zarr")
    filled = zarr.open_group(str(tmp_path / "filled.zarr"), mode="r")
    np.testing.assert_allclose(filled["X"][:], conditional.impute(mixture.params_, X))
    assert filled.attrs["complete"] is True
    clean = tmp_path / "clean.zarr"
    zc = zarr.create_array(str(clean), shape=X.shape, chunks=(1_000, 4), dtype="f8")
    zc[:] = np.nan_to_num(X)
    kde_job.kde(str(clean), tmp_path / "density.zarr", bandwidth=0.5)
    density = zarr.open_group(str(tmp_path / "density.zarr"), mode="r")["log_density"][:]
    ref = sm.KernelDensity(bandwidth=0.5).fit(np.nan_to_num(X)).score_samples(np.nan_to_num(X))
    np.testing.assert_allclose(density, ref, rtol=1e-10)
