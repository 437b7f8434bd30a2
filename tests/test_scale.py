"""Passes over many chunks: few tasks, the same numbers whatever the batching, and
decoded chunks held between iterations on request."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streammix as sm
from streammix.engine import batches
from streammix.engine import data as data_module
from streammix.engine.batch_em import estep_chunk
from streammix.engine.batches import TASKS_PER_THREAD, batch_level, batch_ranges, runs
from streammix.engine.data import ChunkedData
from streammix.engine.init import add_tuples, params_frame
from streammix.engine.reduce import SPLIT_EVERY, tree_reduce
from streammix.errors import InvalidParameterError, NonFiniteInput
from streammix.io.inputs import as_chunked
from streammix.jobs.fit_options import fit_estimator

from .conftest import blobs, write_zarr


class FakeReader:
    """A huge array nobody reads: only its shape and dtype are used."""

    def __init__(self, n_rows: int, n_features: int) -> None:
        self.shape = (n_rows, n_features)
        self.dtype = np.dtype("float64")
        self.ndim = 2

    def __getitem__(self, key):
        raise AssertionError("building a graph must not read data")


@given(
    values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=700),
    level=st.integers(0, 3),
)
@settings(max_examples=60, deadline=None)
def test_reducing_aligned_batches_adds_in_the_chunk_by_chunk_order(values, level):
    """Batches of SPLIT_EVERY**level chunks are subtrees of the reduction: reducing
    within them and then across them gives the same bits as reducing chunk by chunk."""
    x = [np.float64(v) for v in values]
    per_batch = [tree_reduce(x[r.start : r.stop], np.add) for r in batch_ranges(len(x), level)]
    assert tree_reduce(per_batch, np.add) == tree_reduce(x, np.add)


def test_batches_grow_with_the_chunks_and_tasks_with_the_threads():
    assert batch_level(10, 2) == 0
    assert batch_level(1000, 2) == 2
    for n, threads in [(100_000, 1), (100_000, 16), (100_000, 1000), (40_000, 64)]:
        count = len(batch_ranges(n, batch_level(n, threads)))
        assert TASKS_PER_THREAD * threads <= count < SPLIT_EVERY * TASKS_PER_THREAD * threads
    assert runs([0, 1, 2, 5, 6, 9], 2) == [(0, 1), (2,), (5, 6), (9,)]


@pytest.mark.parametrize("threads", [2, 16, 1000])
def test_a_pass_over_100k_chunks_schedules_tasks_by_threads_not_chunks(threads):
    """The graph of an EM pass over 100,000 chunks is built without reading, and its
    size is bounded by the worker threads."""
    data = ChunkedData.from_reader(FakeReader(1_000_000_000, 4), 10_000, "fake", dtype="f8")
    assert data.n_chunks == 100_000
    p = sm.GaussianMixture(2, random_state=0).fit(blobs(500, d=4, k=2)).params_
    prep = (p.prepare(params_frame(p, data.dtype), data.dtype),)
    graph = dict(
        data.reduce_graph(
            estep_chunk, prep, None, combine=add_tuples, threads=threads
        ).__dask_graph__()
    )
    n_leaves = len(data.leaf_spans())
    tasks = [k for k in graph if str(k).startswith("batch-")]
    assert len(tasks) <= min(n_leaves, SPLIT_EVERY * TASKS_PER_THREAD * threads)
    # batch tasks, the combining tree above them (a seventh more), reader and arguments
    assert len(graph) <= len(tasks) * 8 // 7 + 8
    if threads == 2:
        assert len(graph) < 100


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    X = blobs(64_000, d=3, k=3, seed=5)
    root = tmp_path_factory.mktemp("scale")
    return X, write_zarr(root / "few.zarr", X, 6_400), write_zarr(root / "many.zarr", X, 64)


def _pass(data: ChunkedData, threads: int) -> tuple:
    p = sm.GaussianMixture(3, random_state=0, max_iter=2, tol=0).fit(blobs(2000, d=3, k=3)).params_
    prep = (p.prepare(params_frame(p, data.dtype), data.dtype),)
    graph = data.reduce_graph(estep_chunk, prep, None, combine=add_tuples, threads=threads)
    (stats,) = dask.compute(graph, scheduler="sync")[0]
    return (stats.n, stats.loglik, stats.s0, stats.s1, *stats.s2)


@pytest.mark.filterwarnings("ignore::streammix.ConvergenceWarning")
@pytest.mark.parametrize("leaf_bytes", [1, data_module.LEAF_BYTES])
def test_statistics_are_bit_identical_whatever_the_number_of_workers(
    stores, monkeypatch, leaf_bytes
):
    _, _, many = stores
    monkeypatch.setattr(data_module, "LEAF_BYTES", leaf_bytes)
    data = as_chunked(many)
    assert data.n_chunks == 1000
    ref = _pass(data, 1)
    for threads in (2, 7, 64, 1000):
        for a, b in zip(_pass(data, threads), ref, strict=True):
            assert np.array_equal(a, b)
    held = data.persist(threads=3)
    assert held.resident and len(held.resident) <= len(data.leaf_spans())
    for a, b in zip(_pass(held, 1), ref, strict=True):
        assert np.array_equal(a, b)


def test_cached_fit_equals_the_re_reading_fit(stores):
    _, few, many = stores
    for path in (few, many):
        plain = sm.GaussianMixture(3, random_state=0).fit(path)
        cached = sm.GaussianMixture(3, random_state=0, cache="memory").fit(path)
        assert cached.n_iter_ == plain.n_iter_
        np.testing.assert_array_equal(cached.means_, plain.means_)
        np.testing.assert_array_equal(cached.covariances_, plain.covariances_)


def test_cache_falls_back_to_reading_when_the_data_do_not_fit(stores, monkeypatch):
    _, _, many = stores
    data = as_chunked(many)
    assert data.cache("memory").resident
    assert data.cache(None) is data
    monkeypatch.setattr(data_module, "_memory_room", lambda: 1000.0)
    assert data.cache("memory") is data
    with pytest.raises(InvalidParameterError, match="'cache' parameter of GaussianMixture"):
        sm.GaussianMixture(2, cache="disk").fit(many)


def test_cache_is_a_fit_option():
    est = fit_estimator({"method": "batch", "n_components": 2, "cache": "memory"})
    assert est.get_params()["cache"] == "memory"


def test_chunk_jobs_run_in_batches_and_report_every_chunk(stores, monkeypatch):
    _, _, many = stores
    data = as_chunked(many)
    seen: list[int] = []
    real = data_module.run_tasks

    def counting(tasks, progress=None, label="tasks", sizes=None):
        seen.append(len(tasks))
        return real(tasks, progress, label, sizes)

    monkeypatch.setattr(data_module, "run_tasks", counting)
    reports: list[tuple[int, int]] = []
    todo = [3, 4, 5, 100, 101, *range(500, 1000)]
    out = data.map_chunks(_first_value, chunks=todo, progress=lambda d, t: reports.append((d, t)))
    assert [c for c, _, _ in out] == todo
    assert all(o == data.offsets[c] for c, o, _ in out)
    X = np.asarray(data.to_numpy())
    assert all(v == X[data.offsets[c], 0] for c, _, v in out)
    assert seen[0] < len(todo) / 8
    assert reports[-1] == (len(todo), len(todo))


def _first_value(X: np.ndarray, offset: int, chunk: int) -> tuple[int, int, float]:
    return chunk, offset, float(X[0, 0])


def test_batch_tasks_name_the_global_row_of_a_bad_value(tmp_path):
    X = blobs(5_000, d=2, k=2)
    X[3_217, 1] = np.nan
    path = write_zarr(tmp_path / "bad.zarr", X, 50)
    with pytest.raises(NonFiniteInput, match="3217"):
        sm.GaussianMixture(2, random_state=0).fit(path)


def test_batches_module_has_no_client_at_import():
    assert batches.parallelism() >= 1


def test_an_online_epoch_over_many_chunks_is_a_few_tasks_with_the_same_result(
    tmp_path, monkeypatch
):
    """Online EM is a chain of updates; over a store read through its reader, runs of
    units are walked inside tasks (O(workers) tasks an epoch), with the updates, and so
    the model, of one task per chunk."""
    X = blobs(40_000, d=3, k=2, seed=8)
    store = write_zarr(tmp_path / "x.zarr", X, 100)  # 400 chunks
    sizes: list[int] = []
    original = data_module.compute

    def counting(*nodes, **kwargs):
        if kwargs.get("label") == "online epoch":
            sizes.append(sum(len(n.__dask_graph__()) for n in nodes))
        return original(*nodes, **kwargs)

    monkeypatch.setattr(data_module, "compute", counting)
    settings_ = dict(batch_size=None, shuffle=True, random_state=0)
    lazy = sm.OnlineGaussianMixture(2, **settings_).fit(store)
    # runs, plus the reader, the starting state and the settings
    assert sizes and max(sizes) <= TASKS_PER_THREAD * batches.parallelism() + 3
    in_memory = sm.OnlineGaussianMixture(2, **settings_).fit(ChunkedData.from_numpy(X, 100))
    np.testing.assert_allclose(lazy.means_, in_memory.means_, rtol=1e-12)
    np.testing.assert_allclose(lazy.covariances_, in_memory.covariances_, rtol=1e-12)
