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
