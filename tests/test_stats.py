"""Algebra of SufficientStats: a commutative monoid with scaling, and chunk merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streammix.core.families import FAMILY_NAMES, get_family
from streammix.core.frame import Frame, make_frame
from streammix.core.kernel import estep
from streammix.core.params import MixtureParams
from streammix.core.stats import SufficientStats

from .conftest import blobs

FRAME = Frame(np.zeros(3), 1.0)


def _random_stats(seed: int) -> SufficientStats:
    rng = np.random.default_rng(seed)
    return SufficientStats(
        n=float(rng.integers(1, 100)),
        loglik=float(rng.normal()),
        s0=rng.random(2),
        s1=rng.normal(size=(2, 3)),
        s2=(rng.normal(size=(2, 3, 3)),),
        frame=FRAME,
    )


seeds = st.integers(0, 2**31 - 1)


@given(seeds, seeds, seeds)
def test_addition_is_associative_and_commutative(a, b, c):
    x, y, z = _random_stats(a), _random_stats(b), _random_stats(c)
    assert ((x + y) + z).allclose(x + (y + z), rtol=1e-12)
    assert (x + y).allclose(y + x, rtol=1e-12)


@given(seeds)
def test_zero_is_the_identity(a):
    x = _random_stats(a)
    zero = SufficientStats.zero(2, 3, ((2, 3, 3),), FRAME)
    assert (x + zero).allclose(x, rtol=0.0)
    assert (zero + x).allclose(x, rtol=0.0)


@given(seeds, st.floats(0.01, 0.99))
def test_blend_is_a_convex_combination(a, step):
    x, y = _random_stats(a), _random_stats(a + 1)
    blended = x.blend(y, step)
    assert np.allclose(blended.s1, (1 - step) * x.s1 + step * y.s1)
    assert blended.scale(2.0).allclose(x.scale(2 * (1 - step)) + y.scale(2 * step))


def test_statistics_from_different_frames_do_not_add():
    x = _random_stats(1)
    other = SufficientStats(x.n, x.loglik, x.s0, x.s1, x.s2, Frame(np.ones(3), 1.0))
    with pytest.raises(ValueError, match="different frames"):
        _ = x + other


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
@settings(max_examples=15, deadline=None)
@given(split=st.integers(1, 599))
def test_merging_two_halves_equals_the_whole(family_name, split):
    X = blobs(600, d=3, k=2, seed=3)
    family = get_family(family_name)
    rng = np.random.default_rng(0)
    means = X[rng.choice(len(X), 2, replace=False)]
    cov = _unit_cov(family, 2, 3)
    params = MixtureParams.from_covariances(family, np.array([0.3, 0.7]), means, cov)
    frame = make_frame(X)
    prep = params.prepare(frame, X.dtype)
    (whole,) = estep(X, [prep])
    (left,) = estep(X[:split], [prep])
    (right,) = estep(X[split:], [prep])
    assert (left + right).allclose(whole, rtol=1e-10, atol=1e-10)
    assert whole.n == 600


def _unit_cov(family, k, d):
    """Identity covariances in the family's layout."""
    shape = family.covariance_shape(k, d)
    if family.name in ("diag", "spherical"):
        return np.ones(shape)
    return np.broadcast_to(np.eye(d), shape).copy()


# ----------------------------------------------------------- references (centring)
def _tight_far_apart(rng: np.random.Generator, n: int, dtype: type) -> tuple[np.ndarray, list]:
    """Two far-apart components of very different spreads, and their true parameters."""
    loc = float(10.0 ** rng.uniform(1, 4))
    tight = float(10.0 ** rng.uniform(-3, -1)) * loc / 1000
    a = rng.normal(loc, tight, size=(n, 2))
    b = rng.normal(-loc, 1.0, size=(n, 2))
    return np.concatenate([a, b]).astype(dtype), [loc, tight]


@pytest.mark.parametrize("name", (*FAMILY_NAMES, "lowrank"))
def test_recentring_is_exact_algebra(name):
    """Statistics about references c, moved to c', equal those taken about c'."""
    rng = np.random.default_rng(4)
    X = blobs(3000, d=3, k=2, seed=5)
    family = get_family(name, 1 if name == "lowrank" else None)
    frame = make_frame(X)
    cov = {
        "full": np.array([np.eye(3)] * 2),
        "tied": np.eye(3),
        "diag": np.ones((2, 3)),
        "spherical": np.ones(2),
        "lowrank": np.concatenate([np.full((2, 3, 1), 0.3), np.ones((2, 3, 1))], axis=2),
    }[name]
    params = MixtureParams.from_covariances(family, [0.5, 0.5], X[:2] + 0.1, cov)
    (about_means,) = estep(X, [params.prepare(frame, X.dtype)])
    other = rng.normal(size=about_means.centres.shape)
    moved = about_means.recentered(family, other).recentered(family, about_means.refs)
    assert moved.allclose(about_means, rtol=1e-9, atol=1e-9)
    at_origin = about_means.recentered(family, None)
    assert at_origin.refs is None
    assert at_origin.recentered(family, about_means.refs).allclose(
        about_means, rtol=1e-9, atol=1e-9
    )


@settings(max_examples=25, deadline=None)
@given(seeds)
def test_float32_statistics_of_far_apart_tight_components_keep_float32_accuracy(seed):
    """Merging the statistics of two halves of float32 data, each component about its
    own mean, gives every component's variance to float32 accuracy, however far the
    components lie from each other and from the frame's origin."""
    rng = np.random.default_rng(seed)
    X, _ = _tight_far_apart(rng, 2000, np.float32)
    exact = X.astype(np.float64)
    truth = np.array([exact[:2000].var(axis=0), exact[2000:].var(axis=0)])
    family = get_family("diag")
    params = MixtureParams.from_covariances(
        family, [0.5, 0.5], [exact[:2000].mean(0), exact[2000:].mean(0)], truth
    )
    frame = make_frame(exact, np.float32)
    prep = params.prepare(frame, np.float32)
    halves = estep(X[::2], [prep])[0] + estep(X[1::2], [prep])[0]
    whole = estep(X, [prep])[0]
    for stats in (halves, whole):
        _, cov = family.mstep_frame(stats.s0, stats.s1, stats.s2, 0.0)
        np.testing.assert_allclose(cov * frame.scale**2, truth, rtol=1e-4)
