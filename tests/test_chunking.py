"""The same data as numpy, Zarr (two chunkings) and dask give the same fit."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import streammix as sm
from streammix.engine import compute as compute_module

from .conftest import blobs, write_zarr


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    X = blobs(400_000, d=4, k=3, seed=11)
    root = tmp_path_factory.mktemp("chunking")
    return X, write_zarr(root / "a.zarr", X, 200_000), write_zarr(root / "b.zarr", X, 7_777)


@pytest.mark.parametrize("init", ["kmeans", "random"])
def test_numpy_zarr_and_dask_inputs_fit_the_same(big, init):
    X, zarr_a, zarr_b = big
    fits = []
    for data in (X, zarr_a, zarr_b, da.from_array(X, chunks=(50_000, 4))):
        gm = sm.GaussianMixture(3, init_params=init, random_state=0, max_iter=200).fit(data)
        fits.append(gm)
    ref = fits[0]
    for gm in fits[1:]:
        assert gm.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(gm.weights_, ref.weights_, rtol=1e-9)
        np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-9)
        np.testing.assert_allclose(gm.covariances_, ref.covariances_, rtol=1e-9)


def test_lazy_input_gives_lazy_results_chunked_like_the_input(big):
    X, _, zarr_b = big
    gm = sm.GaussianMixture(3, random_state=0).fit(X[:20_000])
    ll = gm.score_samples(zarr_b)
    assert isinstance(ll, da.Array)
    assert ll.chunks[0][:2] == (7_777, 7_777)
    np.testing.assert_allclose(ll[:20_000].compute(), gm.score_samples(X[:20_000]), rtol=1e-12)
    assert isinstance(gm.predict(zarr_b), da.Array)
    assert gm.predict_proba(zarr_b).shape == (400_000, 3)
    assert isinstance(gm.score(zarr_b), float)


def test_one_compute_per_em_iteration(big, monkeypatch):
    _, zarr_a, _ = big
    labels = []
    real = compute_module.compute

    def counting(*collections, label="compute"):
        labels.append(label)
        return real(*collections, label=label)

    monkeypatch.setattr(compute_module, "compute", counting)
    monkeypatch.setattr("streammix.engine.data.compute", counting)
    gm = sm.GaussianMixture(3, random_state=0).fit(zarr_a)
    assert labels.count("EM") == gm.n_iter_
    assert set(labels) <= {"sample", "k-means", "init", "EM"}
    labels.clear()
    with pytest.warns(sm.ConvergenceWarning):
        sm.GaussianMixture(3, n_init=3, random_state=0, max_iter=5, tol=0.0).fit(zarr_a)
    # Three restarts share every pass.
    assert labels.count("EM") == 5


def test_library_calls_give_the_process_its_blas_threads_back():
    """Chunk tasks on dask's thread pool run BLAS single-threaded; once the
    computation that needed it ends, the caller's process has its threads again."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    X = blobs(20_000, d=4, k=2, seed=3)
    lazy = da.from_array(X, chunks=(2_000, 4))
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        gm = sm.GaussianMixture(2, random_state=0).fit(lazy)
        assert blas_threads() == before
        gm.score_samples(lazy).compute(scheduler="threads")
        assert blas_threads() == before
        gm.predict_proba(lazy).compute(scheduler="threads")
        assert blas_threads() == before


def test_ten_and_a_thousand_chunks_fit_the_same_on_a_two_worker_cluster(tmp_path):
    """Batches of chunks per task change nothing: the same rows in 10 and in 1,000
    chunks fit alike (to rounding), and a cluster's fit equals the local one exactly."""
    from distributed import Client, LocalCluster

    X = blobs(100_000, d=4, k=3, seed=2)
    few = write_zarr(tmp_path / "few.zarr", X, 10_000)
    many = write_zarr(tmp_path / "many.zarr", X, 100)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        on_cluster = [sm.GaussianMixture(3, random_state=0).fit(p) for p in (few, many)]
    local = sm.GaussianMixture(3, random_state=0).fit(many)
    a, b = on_cluster
    assert a.n_iter_ == b.n_iter_
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(getattr(b, name), getattr(local, name))
