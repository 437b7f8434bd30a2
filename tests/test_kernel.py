"""The E-step kernel: blocks, dtypes, bad rows."""

from __future__ import annotations

import numpy as np
import pytest

from streammix.core.frame import make_frame
from streammix.core.kernel import estep, normalise, score_rows, score_rows_masked
from streammix.errors import NonFiniteRow

from .test_families import random_params


@pytest.mark.parametrize("block_rows", [1, 7, 64, 4096])
def test_block_size_does_not_change_the_statistics(block_rows):
    params = random_params("full")
    X = np.random.default_rng(0).normal(50.0, 3.0, size=(300, 4))
    frame = make_frame(X)
    prep = params.prepare(frame, X.dtype)
    (ref,) = estep(X, [prep], block_rows=300)
    (got,) = estep(X, [prep], block_rows=block_rows)
    assert got.allclose(ref, rtol=1e-11, atol=1e-11)


def test_several_models_in_one_pass_equal_separate_passes():
    X = np.random.default_rng(0).normal(50.0, 3.0, size=(300, 4))
    frame = make_frame(X)
    preps = [
        random_params(n, seed=s).prepare(frame, X.dtype)
        for s, n in enumerate(["full", "diag", "tied", "spherical", "full"])
    ]
    together = estep(X, preps)
    for p, st in zip(preps, together, strict=True):
        (alone,) = estep(X, [p])
        assert st.allclose(alone, rtol=0.0)


def test_float32_data_compute_in_float32_and_accumulate_in_float64():
    params = random_params("full")
    X64 = np.random.default_rng(0).normal(50.0, 3.0, size=(5000, 4))
    X32 = X64.astype(np.float32)
    frame = make_frame(X32, np.float32)
    prep32 = params.prepare(frame, np.float32)
    assert prep32.linear.dtype == np.float32
    (s32,) = estep(X32, [prep32])
    assert s32.s0.dtype == s32.s1.dtype == s32.s2[0].dtype == np.float64
    (s64,) = estep(X32.astype(np.float64), [params.prepare(frame, np.float64)])
    np.testing.assert_allclose(s32.s1, s64.s1, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(s32.s2[0], s64.s2[0], rtol=1e-4, atol=1e-3)
    assert abs(s32.loglik - s64.loglik) / abs(s64.loglik) < 1e-5


def test_tiny_responsibilities_become_exact_zeros():
    lp = np.array([[0.0, 0.0], [-80.0, -10.0]])
    resp, log_norm = normalise(lp.copy())
    assert resp[1, 0] == 0.0
    assert resp[1, 1] > 0.0
    np.testing.assert_allclose(resp.sum(axis=0), 1.0)
    np.testing.assert_allclose(log_norm, np.log(np.exp([0.0, 0.0]) + np.exp([-80.0, -10.0])))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_named(bad):
    params = random_params("diag")
    X = np.random.default_rng(0).normal(50.0, 3.0, size=(100, 4))
    X[37, 2] = bad
    X[80, 0] = bad
    prep = params.prepare(make_frame(X[:30]), X.dtype)
    with pytest.raises(NonFiniteRow) as err:
        estep(X, [prep], block_rows=16)
    assert err.value.row == 37
    with pytest.raises(NonFiniteRow):
        score_rows(X, prep)
    ll, label = score_rows_masked(X, prep)
    assert np.isnan(ll[37]) and label[37] == -1
    assert np.isfinite(np.delete(ll, [37, 80])).all()


def test_score_rows_kinds_agree():
    params = random_params("full")
    X = np.random.default_rng(0).normal(50.0, 3.0, size=(50, 4))
    prep = params.prepare(make_frame(X), X.dtype)
    proba = score_rows(X, prep, "proba")
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(score_rows(X, prep, "label"), proba.argmax(axis=1))
