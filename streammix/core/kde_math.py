"""Kernel density estimation with a Gaussian kernel: bandwidths and the blockwise kernel.

Layer: math (numpy/scipy only; no dask, no files). Pure functions and values.

A Gaussian KDE is the mixture with one component per reference row ``x_j``,
equal weights ``1/n`` and one shared kernel covariance ``H = L L^T``::

    log p(x) = log sum_j exp(-||z - z_j||^2 / 2) - log n - d/2 log(2 pi) - log det L,
    z = L^{-1} (x - c),

for any centre ``c`` (the data mean is used: coordinates stay near the origin).
The kernel covariance is, as in ``scipy.stats.gaussian_kde``, the unbiased
(``ddof=1``) data covariance times ``factor**2`` with::

    scott:      factor = n ** (-1 / (d + 4))
    silverman:  factor = (n * (d + 2) / 4) ** (-1 / (d + 4))

or, for a float ``h`` (scikit-learn's ``KernelDensity(bandwidth=h)``), ``h**2 I``.

The data covariance comes from :class:`MomentStats`, a value that adds: each
chunk is summarised around a fixed shift and by its own mean, and chunks merge
by Chan et al.'s rule, so no raw second moment ``E[xx^T] - mu mu^T`` is ever
formed. Log-densities are evaluated on pairs of (query block, reference block):
squared distances between whitened rows come from one GEMM per sub-block, and
sub-blocks are combined by log-sum-exp, so the query x reference matrix is
never formed and no term underflows to a zero density. The GEMM form
``|a|^2 + |b|^2 - 2 a.b`` rounds by about ``eps * (|a|^2 + |b|^2)``; in whitened
coordinates centred on the data that is ~1e-13 for the bandwidth rules, and grows
only for float bandwidths many orders of magnitude below the data's spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from ..errors import SingularCovariance

BANDWIDTH_RULES = ("scott", "silverman")

# Sub-block sizes of the pairwise kernel: a (QUERY_ROWS, REF_ROWS) float64 block
# is 8 MiB, large enough for an efficient GEMM, small enough to stay bounded.
QUERY_ROWS = 1024
REF_ROWS = 1024

_LOG_2PI = math.log(2.0 * math.pi)


# Residual variance, relative to the feature's variance, below which the data covariance
# counts as singular.
SINGULAR_RATIO = 1e-12


def bandwidth_factor(rule: str, n_samples: float, n_features: int) -> float:
    """The factor multiplying the data's standard deviations, as in scipy's ``gaussian_kde``.

    Parameters
    ----------
    rule : {"scott", "silverman"}
    n_samples : float
        The rows, or the sum of their weights (repeated-row semantics; scipy's
        weighted ``gaussian_kde`` uses Kish's effective size instead).
    n_features : int

    Examples
    --------
    >>> round(bandwidth_factor("scott", 10_000, 1), 6)
    0.158489
    """
    n, d = float(n_samples), float(n_features)
    if rule == "scott":
        return float(n ** (-1.0 / (d + 4.0)))
    if rule == "silverman":
        return float((n * (d + 2.0) / 4.0) ** (-1.0 / (d + 4.0)))
    raise ValueError(f"unknown bandwidth rule {rule!r}; expected one of {BANDWIDTH_RULES}")


@dataclass(frozen=True, slots=True, eq=False)
class MomentStats:
    """Count, mean and centred scatter of rows, relative to a fixed ``shift``.

    Parameters
    ----------
    n : float
        Rows summarised.
    mean : ndarray of shape (n_features,)
        Mean of ``x - shift``.
    scatter : ndarray of shape (n_features, n_features)
        ``sum_i (x_i - shift - mean)(x_i - shift - mean)^T``.
    shift : ndarray of shape (n_features,)
        The reference point; statistics with different shifts never add.

    Examples
    --------
    >>> X = np.array([[1.0, 2.0], [3.0, 5.0], [4.0, 4.0]])
    >>> s = MomentStats.of_rows(X[:1], X[0]) + MomentStats.of_rows(X[1:], X[0])
    >>> np.allclose(s.covariance(), np.cov(X, rowvar=False))
    True
    """

    n: float
    mean: np.ndarray
    scatter: np.ndarray
    shift: np.ndarray

    @classmethod
    def zero(cls, shift: np.ndarray) -> MomentStats:
        d = shift.shape[0]
        return cls(0.0, np.zeros(d), np.zeros((d, d)), shift)

    @classmethod
    def of_rows(
        cls, X: np.ndarray, shift: np.ndarray, weights: np.ndarray | None = None
    ) -> MomentStats:
        """Statistics of the rows of ``X`` (float64 arithmetic, two passes); with
        ``weights`` (positive), each row counts its weight and ``n`` is their sum."""
        if X.shape[0] == 0:
            return cls.zero(shift)
        y = np.subtract(X, shift, dtype=np.float64)
        if weights is None:
            mean = y.mean(axis=0)
            y -= mean
            return cls(float(X.shape[0]), mean, y.T @ y, shift)
        w = np.asarray(weights, dtype=np.float64)
        n = float(w.sum())
        mean = (w @ y) / n
        y -= mean
        return cls(n, mean, (y * w[:, None]).T @ y, shift)

    def __add__(self, other: MomentStats) -> MomentStats:
        if not isinstance(other, MomentStats):
            return NotImplemented
        if self.shift is not other.shift and not np.array_equal(self.shift, other.shift):
            raise ValueError("moment statistics taken around different shifts do not add")
        if other.n == 0.0:
            return self
        if self.n == 0.0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.n * other.n / n)
        return MomentStats(n, mean, scatter, self.shift)

    def location(self) -> np.ndarray:
        """The mean of the rows in original units."""
        return np.asarray(self.shift + self.mean, dtype=np.float64)

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """The data covariance, unbiased (``ddof=1``) by default, symmetrised."""
        if self.n <= ddof:
            raise ValueError(f"a covariance with ddof={ddof} needs more than {ddof} row(s)")
        cov = self.scatter / (self.n - ddof)
        return np.asarray(0.5 * (cov + cov.T))


def kernel_cholesky(
    bandwidth: str | float, stats: MomentStats
) -> tuple[np.ndarray, np.ndarray, float]:
    """The kernel covariance, its lower Cholesky factor and the bandwidth factor.

    For a rule the covariance is ``data covariance * factor**2`` and the factor is
    the rule's; for a float ``h`` it is ``h**2 I`` and the factor is ``h``.

    Raises
    ------
    SingularCovariance
        For a rule, when the data covariance is not positive definite.
    """
    d = stats.shift.shape[0]
    if isinstance(bandwidth, str):
        factor = bandwidth_factor(bandwidth, stats.n, d)
        data_cov = stats.covariance(ddof=1)
        try:
            data_chol = np.linalg.cholesky(data_cov)
        except np.linalg.LinAlgError:
            raise SingularCovariance() from None
        # A pivot is the variance of a feature left after regressing out the features
        # before it; a relative residual of 1e-12 or less is collinearity lost in rounding.
        pivots = np.diag(data_chol) ** 2
        if not np.all(np.isfinite(data_chol)) or not np.all(
            pivots > SINGULAR_RATIO * np.diag(data_cov)
        ):
            raise SingularCovariance()
        return data_cov * factor**2, data_chol * factor, factor
    h = float(bandwidth)
    return np.eye(d) * h**2, np.eye(d) * h, h


@dataclass(frozen=True, slots=True, eq=False)
class KernelPrep:
    """What the pairwise kernel needs: centre, whitening factor, normaliser.

    Parameters
    ----------
    centre : ndarray of shape (n_features,)
    whitener : ndarray of shape (n_features, n_features)
        ``W = L^{-1}``, the inverse of the kernel covariance's lower Cholesky
        factor ``L`` (the precision's Cholesky factor, lower triangular): rows
        are whitened by one GEMM instead of a triangular solve per chunk, which
        on small chunks costs far more than the product.
    log_norm : float
        ``-log n_ref - d/2 log(2 pi) - log det L``.
    """

    centre: np.ndarray
    whitener: np.ndarray
    log_norm: float

    @classmethod
    def build(cls, centre: np.ndarray, cholesky: np.ndarray, n_reference: float) -> KernelPrep:
        """From the kernel covariance's lower Cholesky factor ``L`` (diagonal > 0)."""
        L = np.asarray(cholesky, dtype=np.float64)
        d = L.shape[0]
        whitener = solve_triangular(L, np.eye(d), lower=True)
        log_det = float(np.sum(np.log(np.diag(L))))
        return cls(
            np.asarray(centre, dtype=np.float64),
            np.ascontiguousarray(whitener),
            -math.log(n_reference) - 0.5 * d * _LOG_2PI - log_det,
        )


def whiten(X: np.ndarray, prep: KernelPrep) -> np.ndarray:
    """Rows in whitened, centred coordinates ``L^{-1}(x - c)``, float64, C-contiguous.

    Returns
    -------
    Z : ndarray of shape (n_rows, n_features)
    """
    y = np.subtract(X, prep.centre, dtype=np.float64)
    return np.ascontiguousarray(y @ prep.whitener.T)


def _block_logsumexp(
    zq: np.ndarray,
    half_q: np.ndarray,
    zr: np.ndarray,
    half_r: np.ndarray,
    log_w: np.ndarray | None = None,
) -> np.ndarray:
    """``log sum_j w_j exp(-||zq_i - zr_j||^2 / 2)`` for every row ``i`` of a
    sub-block (``w_j = 1`` without ``log_w``)."""
    g = zq @ zr.T  # the GEMM: zq.zr = (|zq|^2 + |zr|^2 - ||zq - zr||^2) / 2
    g -= half_q[:, None]
    g -= half_r[None, :]
    # Rounding can leave slightly positive values for near-identical rows.
    np.minimum(g, 0.0, out=g)
    if log_w is not None:
        g += log_w[None, :]
    top = g.max(axis=1)
    g -= top[:, None]
    np.exp(g, out=g)
    return top + np.log(g.sum(axis=1))


def partial_logsumexp(
    Zq: np.ndarray,
    Zr: np.ndarray,
    query_rows: int = QUERY_ROWS,
    ref_rows: int = REF_ROWS,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Log-sum-exp of the kernel terms of every query row over the given reference rows.

    Parameters
    ----------
    Zq : ndarray of shape (n_query, n_features)
        Whitened query rows.
    Zr : ndarray of shape (n_ref, n_features)
        Whitened reference rows.
    weights : ndarray of shape (n_ref,), optional
        Positive weights of the reference rows (each term is multiplied by its row's).

    Returns
    -------
    ndarray of shape (n_query,), float64
        ``log sum_j exp(-||zq_i - zr_j||^2 / 2)``; ``-inf`` when ``n_ref == 0``.
        Partial results over disjoint reference sets combine with ``numpy.logaddexp``.
    """
    out = np.full(Zq.shape[0], -np.inf)
    if Zr.shape[0] == 0 or Zq.shape[0] == 0:
        return out
    half_q = 0.5 * np.einsum("ij,ij->i", Zq, Zq)
    half_r = 0.5 * np.einsum("ij,ij->i", Zr, Zr)
    log_w = None if weights is None else np.log(np.asarray(weights, dtype=np.float64))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for qs in range(0, Zq.shape[0], query_rows):
            qe = qs + query_rows
            acc = out[qs:qe]
            for rs in range(0, Zr.shape[0], ref_rows):
                re = rs + ref_rows
                lw = None if log_w is None else log_w[rs:re]
                part = _block_logsumexp(Zq[qs:qe], half_q[qs:qe], Zr[rs:re], half_r[rs:re], lw)
                np.logaddexp(acc, part, out=acc)
    return out


def combine_partials(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Partial log-sum-exps over two disjoint reference sets, combined."""
    with np.errstate(invalid="ignore"):
        return np.logaddexp(a, b)


def sample_rows(rows: np.ndarray, cholesky: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Given reference rows (one per draw), add kernel noise ``L e``, ``e ~ N(0, I)``.

    Returns
    -------
    ndarray of shape rows.shape, float64
    """
    noise = rng.standard_normal(rows.shape) @ cholesky.T
    return np.asarray(rows, dtype=np.float64) + noise
