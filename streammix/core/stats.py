"""Sufficient statistics of a Gaussian mixture: values that add.

Layer: math (numpy only; no dask, no files).

Statistics are taken in the coordinates of a :class:`~streammix.core.frame.Frame`,
``y = (x - shift) / scale``, chosen once per fit so that ``|y|`` is of the order
of one: no raw-moment cancellation when the data sit far from the origin, and
no overflow when they are huge. For responsibilities ``r_ik`` they are::

    n      = number of rows summed (float, so that blends stay exact)
    loglik = sum_i log p(x_i)            (original units)
    s0_k   = sum_i r_ik
    s1_k   = sum_i r_ik (y_i - c_k)
    s2     = family-specific second-order sums of y_i - c_k, e.g.
             sum_i r_ik (y_i - c_k) (y_i - c_k)^T for full covariances

where ``c_k`` is component ``k``'s reference point (``refs``; zero when not
given). One frame cannot centre components that lie far apart: a component of
spread 1e-5 (in frame units) at distance one from the frame's origin would lose
ten digits to ``E[yy^T] - mu mu^T``, and every digit in float32. The E-step
therefore takes each component's sums about its own mean of the previous
iteration, and the M-step adds the reference back.

They are sums, so a chunk's statistics are computed independently and added
(all chunks of a pass share their references); ``+`` is associative and
commutative up to floating-point rounding, ``zero`` is its identity, ``scale``
supports the blends of online EM, and :meth:`SufficientStats.recentered` moves
the references exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .frame import Frame

if TYPE_CHECKING:
    from .families import CovarianceFamily


@dataclass(frozen=True, slots=True, eq=False)
class SufficientStats:
    """Per-component sums over rows, in float64, in the coordinates of ``frame``.

    Parameters
    ----------
    n : float
        Rows summed (after any scaling).
    loglik : float
        Sum of the rows' log-likelihoods under the parameters that produced
        the responsibilities.
    s0 : ndarray of shape (n_components,)
    s1 : ndarray of shape (n_components, n_features)
    s2 : tuple of ndarray
        Second-order sums whose shapes the covariance family defines.
    frame : Frame
        The coordinates; statistics taken in different frames never add.
    refs : ndarray of shape (n_components, n_features) or None
        Each component's reference point in frame units (``None``: the origin);
        statistics about different references never add.

    Examples
    --------
    >>> import numpy as np
    >>> from streammix.core.frame import Frame
    >>> a = SufficientStats.zero(2, 3, ((2, 3),), Frame(np.zeros(3), 1.0))
    >>> (a + a).s0
    array([0., 0.])
    """

    n: float
    loglik: float
    s0: np.ndarray
    s1: np.ndarray
    s2: tuple[np.ndarray, ...]
    frame: Frame
    refs: np.ndarray | None = None

    @classmethod
    def zero(
        cls,
        n_components: int,
        n_features: int,
        s2_shapes: Iterable[tuple[int, ...]],
        frame: Frame,
        refs: np.ndarray | None = None,
    ) -> SufficientStats:
        """The identity of ``+`` for the given shapes."""
        return cls(
            n=0.0,
            loglik=0.0,
            s0=np.zeros(n_components),
            s1=np.zeros((n_components, n_features)),
            s2=tuple(np.zeros(s) for s in s2_shapes),
            frame=frame,
            refs=refs,
        )

    @property
    def centres(self) -> np.ndarray:
        """The references as an array (zeros for the origin)."""
        return np.zeros(self.s1.shape) if self.refs is None else self.refs

    def recentered(self, family: CovarianceFamily, refs: np.ndarray | None) -> SufficientStats:
        """The same statistics about other references (exact algebra)."""
        new = np.zeros(self.s1.shape) if refs is None else refs
        shift = self.centres - new
        if not np.any(shift):
            return replace(self, refs=refs)
        s1, s2 = family.recentered(self.s0, self.s1, self.s2, shift)
        return replace(self, s1=s1, s2=s2, refs=refs)

    @property
    def n_components(self) -> int:
        return int(self.s0.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.s1.shape[1])

    def _check_compatible(self, other: SufficientStats) -> None:
        if (
            self.s1.shape != other.s1.shape
            or len(self.s2) != len(other.s2)
            or any(a.shape != b.shape for a, b in zip(self.s2, other.s2, strict=True))
        ):
            raise ValueError("cannot add statistics of different shapes")
        if self.frame != other.frame:
            raise ValueError("cannot add statistics taken in different frames")
        if self.refs is not other.refs and not np.array_equal(self.centres, other.centres):
            raise ValueError("cannot add statistics taken about different references")

    def __add__(self, other: SufficientStats) -> SufficientStats:
        if not isinstance(other, SufficientStats):
            return NotImplemented
        self._check_compatible(other)
        return SufficientStats(
            n=self.n + other.n,
            loglik=self.loglik + other.loglik,
            s0=self.s0 + other.s0,
            s1=self.s1 + other.s1,
            s2=tuple(a + b for a, b in zip(self.s2, other.s2, strict=True)),
            frame=self.frame,
            refs=self.refs,
        )

    def scale(self, factor: float) -> SufficientStats:
        """Every sum multiplied by ``factor`` (the frame is not a sum)."""
        f = float(factor)
        return SufficientStats(
            n=self.n * f,
            loglik=self.loglik * f,
            s0=self.s0 * f,
            s1=self.s1 * f,
            s2=tuple(a * f for a in self.s2),
            frame=self.frame,
            refs=self.refs,
        )

    def blend(self, other: SufficientStats, step: float) -> SufficientStats:
        """``(1 - step) * self + step * other``, the stepwise-EM update."""
        return self.scale(1.0 - step) + other.scale(step)

    def allclose(self, other: SufficientStats, rtol: float = 1e-9, atol: float = 0.0) -> bool:
        """Equality up to rounding, for tests of the algebra."""
        try:
            self._check_compatible(other)
        except ValueError:
            return False
        pairs = [
            (np.array(self.n), np.array(other.n)),
            (np.array(self.loglik), np.array(other.loglik)),
            (self.s0, other.s0),
            (self.s1, other.s1),
            *zip(self.s2, other.s2, strict=True),
        ]
        return all(np.allclose(a, b, rtol=rtol, atol=atol) for a, b in pairs)


def total(parts: Iterable[SufficientStats]) -> SufficientStats:
    """Sum of a non-empty sequence of statistics, left to right."""
    it = iter(parts)
    acc = next(it)
    for p in it:
        acc = acc + p
    return acc


#: Rows (or total weight), mean and centred scatter of some rows, float64.
Moments = tuple[float, np.ndarray, np.ndarray]


def weighted_rows(
    X: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of ``X`` with a positive weight, and their weights as float64 (``X``
    itself when no weight is zero): a row of weight 0 is a row that is not there."""
    if weights is None:
        return X, None
    w = np.asarray(weights, dtype=np.float64)
    keep = w > 0
    if keep.all():
        return X, w
    return X[keep], w[keep]


def row_moments(
    X: np.ndarray, offset: int, full: bool = True, weights: np.ndarray | None = None
) -> Moments:
    """Count (sum of ``weights``), mean and centred scatter of the rows of ``X``: the
    ``D x D`` scatter matrix, or with ``full=False`` its diagonal (sums of squares).
    The signature of a chunk function (``offset`` is unused)."""
    x, w = weighted_rows(np.asarray(X, dtype=np.float64), weights)
    d = x.shape[1]
    if x.shape[0] == 0:
        return 0.0, np.zeros(d), np.zeros((d, d) if full else d)
    n = float(x.shape[0]) if w is None else float(w.sum())
    mean = x.mean(axis=0) if w is None else (w @ x) / n
    centred = x - mean
    weighted = centred if w is None else centred * w[:, None]
    scatter = weighted.T @ centred if full else np.einsum("ij,ij->j", weighted, centred)
    return n, mean, scatter


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Chan et al.'s merge of the moments of two disjoint sets of rows."""
    if b[0] == 0.0:
        return a
    if a[0] == 0.0:
        return b
    n = a[0] + b[0]
    delta = b[1] - a[1]
    mean = a[1] + delta * (b[0] / n)
    cross = np.outer(delta, delta) if a[2].ndim == 2 else delta**2
    return n, mean, a[2] + b[2] + cross * (a[0] * b[0] / n)
