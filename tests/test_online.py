"""Online (stepwise) EM: accuracy against batch EM, exact continuation, drift."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.core.families import get_family
from streammix.core.params import MixtureParams
from streammix.core.sampling import sample
from streammix.datasets import true_mixture


@pytest.fixture(scope="module")
def stream_data(tmp_path_factory):
    """1,000,000 x 8 rows of an 8-component mixture in a 40-chunk Zarr array, plus
    100,000 held-out rows and a perturbed start."""
    truth = true_mixture(8, 8, seed=21)
    X, _ = sample(truth, 1_100_000, np.random.default_rng(0))
    path = str(tmp_path_factory.mktemp("online") / "x.zarr")
    z = zarr.create_array(path, shape=(1_000_000, 8), chunks=(25_000, 8), dtype="f8")
    z[:] = X[:1_000_000]
    means0 = truth.means + np.random.default_rng(1).normal(0.0, 1.0, truth.means.shape)
    return path, X[1_000_000:], means0


def test_one_epoch_is_within_a_hundredth_of_a_nat_of_batch_em(stream_data):
    path, held_out, means0 = stream_data
    batch = sm.GaussianMixture(8, means_init=means0, tol=1e-4, max_iter=500).fit(path)
    online = sm.OnlineGaussianMixture(8, means_init=means0, max_epochs=1, random_state=0)
    online.fit(path)
    gap = batch.score(held_out) - online.score(held_out)
    assert abs(gap) < 0.01, gap
    assert online.n_iter_ == 1 and online.n_updates_ == 40
    assert online.n_rows_seen_ == 1_000_000


def _stream(n_batches=20, rows=500, seed=0):
    truth = true_mixture(4, 3, seed=seed)
    X, _ = sample(truth, n_batches * rows, np.random.default_rng(seed))
    return [X[i * rows : (i + 1) * rows] for i in range(n_batches)]


def _state_arrays(model):
    st = model.checkpoint().state
    out = {
        "weights": model.weights_,
        "means": model.means_,
        "cov": model.covariances_,
        "chol": model.precisions_cholesky_,
        "s0": st.stats.s0,
        "s1": st.stats.s1,
        "p_means": st.params.means,
    }
    out.update({f"s2_{i}": a for i, a in enumerate(st.stats.s2)})
    return out


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(averaging=3, covariance_type="diag"),
        dict(batch_size=120, covariance_type="tied"),
        dict(batch_size=7, covariance_type="spherical"),  # saves during warm-up
    ],
)
def test_partial_fit_continues_bit_identically_across_save_and_load(tmp_path, kwargs):
    batches = _stream(rows=70 if kwargs.get("batch_size") == 7 else 500)
    straight = sm.OnlineGaussianMixture(3, random_state=0, **kwargs)
    for b in batches:
        straight.partial_fit(b)
    first = sm.OnlineGaussianMixture(3, random_state=0, **kwargs)
    for b in batches[:10]:
        first.partial_fit(b)
    first.save(tmp_path / "m")
    resumed = sm.load(tmp_path / "m")
    assert type(resumed) is sm.OnlineGaussianMixture
    for b in batches[10:]:
        resumed.partial_fit(b)
    a, b = _state_arrays(straight), _state_arrays(resumed)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    st_a, st_b = straight.checkpoint().state, resumed.checkpoint().state
    assert (st_a.n_updates, st_a.n_rows, st_a.warm, st_a.loglik_sum) == (
        st_b.n_updates,
        st_b.n_rows,
        st_b.warm,
        st_b.loglik_sum,
    )
    assert st_a.stats.n == st_b.stats.n and st_a.stats.loglik == st_b.stats.loglik


def test_partial_fit_accepts_numpy_dask_and_zarr(tmp_path):
    X = np.concatenate(_stream(4))
    z = zarr.create_array(str(tmp_path / "p.zarr"), shape=X.shape, chunks=(500, 4), dtype="f8")
    z[:] = X
    models = []
    for data in (X, da.from_array(X, chunks=(500, 4)), str(tmp_path / "p.zarr")):
        m = sm.OnlineGaussianMixture(3, random_state=0, batch_size=500)
        m.partial_fit(data)
        models.append(m)
    for m in models[1:]:
        np.testing.assert_allclose(m.means_, models[0].means_, rtol=1e-12)


def test_drifting_stream_is_tracked_with_forget():
    rng = np.random.default_rng(3)
    shift = np.array([6.0, 0.0])
    before = [rng.normal(0.0, 1.0, size=(1000, 2)) for _ in range(30)]
    after = [rng.normal(0.0, 1.0, size=(1000, 2)) + shift for _ in range(30)]
    fixed = sm.OnlineGaussianMixture(1, random_state=0)
    forgetful = sm.OnlineGaussianMixture(1, random_state=0, forget=0.2)
    for b in before + after:
        fixed.partial_fit(b)
        forgetful.partial_fit(b)
    assert np.allclose(forgetful.means_[0], [6.0, 0.0], atol=0.15)
    # With decaying steps the old regime keeps a weight that forgetting removes.
    lag_fixed = abs(fixed.means_[0, 0] - 6.0)
    lag_forgetful = abs(forgetful.means_[0, 0] - 6.0)
    assert lag_fixed > 0.1 and lag_fixed > 3 * lag_forgetful


def _hard_mixture(d=16, k=8, seed=5):
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, (k, d))
    cov = np.empty((k, d, d))
    for j in range(k):
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        cov[j] = a @ a.T * 0.5 + 0.1 * np.eye(d)
    weights = rng.dirichlet(np.full(k, 2.0))
    return MixtureParams.from_covariances(get_family("full"), weights, means, cov)


def test_overlapping_components_in_higher_dimension_stay_close_to_batch_em():
    truth = _hard_mixture()
    X, _ = sample(truth, 320_000, np.random.default_rng(0))
    train, test = X[:300_000], X[300_000:]
    means0 = truth.means + np.random.default_rng(1).normal(0.0, 0.3, truth.means.shape)
    batch = sm.GaussianMixture(8, means_init=means0, tol=1e-4, max_iter=300).fit(train)
    online = sm.OnlineGaussianMixture(
        8, means_init=means0, batch_size=10_000, random_state=0, averaging=True
    ).fit(train)
    assert batch.score(test) - online.score(test) < 0.02


def test_starved_components_are_reseeded():
    truth = _hard_mixture(d=4, k=3)
    X, _ = sample(truth, 60_000, np.random.default_rng(2))
    means0 = truth.means.copy()
    # Start a component on the most remote row: it begins with a handful of rows
    # and starves as soon as the updates start.
    far = np.argmax(np.linalg.norm(X - X.mean(0), axis=1))
    means0[2] = X[far] * 1.5
    online = sm.OnlineGaussianMixture(3, means_init=means0, batch_size=2000, random_state=0)
    online.fit(X)
    assert online.checkpoint().state.n_reseeded >= 1
    assert np.all(online.weights_ > 0.01)


def test_batch_model_continues_online_and_online_model_is_polished_by_batch_em():
    truth = true_mixture(4, 3, seed=8)
    X, _ = sample(truth, 60_000, np.random.default_rng(4))
    batch = sm.GaussianMixture(3, random_state=0).fit(X[:30_000])
    online = sm.OnlineGaussianMixture.from_model(batch, n_rows=30_000)
    np.testing.assert_allclose(online.means_, batch.means_)
    np.testing.assert_allclose(online.covariances_, batch.covariances_, rtol=1e-9)
    online.partial_fit(X[30_000:])
    assert online.n_rows_seen_ == 60_000
    assert np.max(np.abs(online.means_ - batch.means_)) < 0.2
    polished = sm.GaussianMixture.from_model(online).fit(X)
    assert polished.warm_start and polished.converged_
    assert polished.score(X) >= online.score(X) - 1e-9
    reference = sm.GaussianMixture(
        3,
        weights_init=online.weights_,
        means_init=online.means_,
        precisions_init=online.precisions_,
    ).fit(X)
    np.testing.assert_allclose(polished.means_, reference.means_, rtol=1e-8)


def test_same_seed_same_model_and_shuffled_epochs_differ():
    X = np.concatenate(_stream(8, rows=2000))
    a = sm.OnlineGaussianMixture(3, random_state=4, batch_size=1000).fit(X)
    b = sm.OnlineGaussianMixture(3, random_state=4, batch_size=1000).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    c = sm.OnlineGaussianMixture(3, random_state=4, batch_size=1000, shuffle=False).fit(X)
    assert not np.array_equal(a.means_, c.means_)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(learning_decay=0.5), "'learning_decay' parameter .* in \\(0.5, 1\\]"),
        (dict(forget=1.5), "'forget' parameter .* in \\(0, 1\\) or None"),
        (dict(batch_size=0), "'batch_size' parameter"),
        (dict(max_epochs=0), "'max_epochs' parameter"),
    ],
)
def test_out_of_range_options_are_refused(kwargs, match):
    with pytest.raises(sm.InvalidParameterError, match=match):
        sm.OnlineGaussianMixture(2, **kwargs).fit(np.zeros((10, 2)))
