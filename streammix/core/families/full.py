"""Full covariance matrices, one per component.

Layer: math (numpy/scipy only).

Two block kernels, chosen once per width of data by :meth:`FullCovariance.kernel`:

* :class:`PackedKernel`, up to ``PACKED_MAX_FEATURES`` features: with ``F = [y;
  y_i y_j for i <= j]`` (``D + D(D+1)/2`` rows), the log-density of every
  component is one GEMM ``A @ F`` (``A`` holds ``P'm'`` and the upper triangle
  of ``-P'/2`` with doubled off-diagonals), and every component's first and
  second moments are one GEMM ``F @ resp.T``. Packing the triangle halves both
  GEMMs against the dense ``y y^T``, and stacking the components makes them large.
* :class:`WhiteningKernel`, beyond that width, where ``F`` would outgrow any
  cache (``D^2 / 2`` rows per block): each component whitens the block with its
  own factor, ``z = L'^T (y - m')``, and accumulates ``(y r) y^T``: ``4 N K D^2``
  flops in ``D x D`` GEMMs.

Both give the statistics in the same layout, so the M-step does not know which ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import linalg

from ...errors import CholeskyFailure
from ..frame import Frame
from .interface import BlockKernel, CovarianceFamily, Prepared, frame_means, log_constants
from .linear_kernel import LinearKernel, LinearPrepared

# Widest data for the packed-features kernel (its feature matrix has D(D+1)/2 + D rows).
PACKED_MAX_FEATURES = 64


@lru_cache(maxsize=64)
def _triu(n_features: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n_features)


def build_features(y: np.ndarray) -> np.ndarray:
    """``[y; upper triangle of y y^T]`` for a ``(D, n)`` block, row by row."""
    d, n = y.shape
    F = np.empty((d + d * (d + 1) // 2, n), dtype=y.dtype)
    F[:d] = y
    row = d
    for i in range(d):
        np.multiply(y[i], y[i:], out=F[row : row + d - i])
        row += d - i
    return F


def cholesky_upper_precisions(covariances: np.ndarray) -> np.ndarray:
    """``L_k`` (upper) with ``inv(cov_k) = L_k L_k^T`` for a stack of matrices."""
    out = np.empty_like(covariances, dtype=np.float64)
    bad = []
    eye = np.eye(covariances.shape[-1])
    for k, cov in enumerate(covariances):
        try:
            c = linalg.cholesky(cov, lower=True)
        except linalg.LinAlgError:
            bad.append(k)
            continue
        if not np.all(np.isfinite(c)) or np.min(np.abs(np.diag(c))) == 0.0:
            bad.append(k)
            continue
        out[k] = linalg.solve_triangular(c, eye, lower=True).T
    if bad:
        raise CholeskyFailure(tuple(bad))
    return out


def check_spd(matrices: np.ndarray, what: str) -> None:
    """Raise unless every matrix of a ``(..., D, D)`` stack is symmetric positive definite."""
    stack = matrices.reshape(-1, *matrices.shape[-2:])
    for m in stack:
        if not np.allclose(m, m.T):
            raise ValueError(f"{what!r} should be symmetric, positive-definite")
        if np.any(linalg.eigvalsh(m) <= 0.0):
            raise ValueError(f"{what!r} should be symmetric, positive-definite")


@dataclass(frozen=True, slots=True)
class PackedKernel(LinearKernel):
    """``F = [y; upper triangle of y y^T]``: one GEMM for all log-densities, one for
    all sums."""

    family: FullCovariance

    def prepare(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        prec_chol: np.ndarray,
        frame: Frame,
        dtype: np.dtype,
    ) -> LinearPrepared:
        d = means.shape[1]
        m = frame_means(means, frame)
        L = prec_chol * frame.scale
        P = np.matmul(L, np.swapaxes(L, -1, -2))
        Pm = np.einsum("kij,kj->ki", P, m)
        iu = _triu(d)
        quad = -P[:, iu[0], iu[1]]
        quad[:, iu[0] == iu[1]] *= 0.5
        linear = np.concatenate([Pm, quad], axis=1)
        const = log_constants(
            weights, self.family.log_det_cholesky(L, d), np.einsum("ki,ki->k", m, Pm), d, frame
        )
        return LinearPrepared(self, frame, np.dtype(dtype), const, linear.astype(dtype))

    def features(self, y: np.ndarray) -> np.ndarray:
        return build_features(y)

    def sums_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        d = n_features
        return (d + d * (d + 1) // 2, n_components)

    def split_sums(
        self, acc: np.ndarray, n_components: int, n_features: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        d = n_features
        s1 = np.ascontiguousarray(acc[:d].T)
        iu = _triu(d)
        s2 = np.empty((n_components, d, d))
        s2[:, iu[0], iu[1]] = acc[d:].T
        s2[:, iu[1], iu[0]] = acc[d:].T
        return s1, (s2,)


@dataclass(frozen=True, slots=True, eq=False)
class WhiteningPrepared(Prepared):
    """Constants of the whitening kernel.

    Parameters
    ----------
    whiteners : ndarray of shape (n_components, n_features, n_features)
        ``L'_k^T``: ``|L'_k^T (y - m'_k)|^2`` is component ``k``'s squared
        Mahalanobis distance.
    means : ndarray of shape (n_components, n_features)
        ``m'_k``, the means in frame units.
    """

    whiteners: np.ndarray
    means: np.ndarray


@dataclass(frozen=True, slots=True)
class WhiteningKernel(BlockKernel[WhiteningPrepared]):
    """Each component whitens the block with its own factor; no feature matrix."""

    family: FullCovariance

    def prepare(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        prec_chol: np.ndarray,
        frame: Frame,
        dtype: np.dtype,
    ) -> WhiteningPrepared:
        k, d = means.shape
        m = frame_means(means, frame)
        L = prec_chol * frame.scale
        const = log_constants(weights, self.family.log_det_cholesky(L, d), np.zeros(k), d, frame)
        LT = np.ascontiguousarray(np.swapaxes(L, 1, 2))
        return WhiteningPrepared(
            self, frame, np.dtype(dtype), const, LT.astype(dtype), m.astype(dtype)
        )

    def features(self, y: np.ndarray) -> np.ndarray:
        return y

    def log_joint(
        self, F: np.ndarray, y: np.ndarray, prep: WhiteningPrepared
    ) -> tuple[np.ndarray, Any]:
        k = prep.n_components
        lp = np.empty((k, y.shape[1]), dtype=y.dtype)
        for j in range(k):
            z = prep.whiteners[j] @ (y - prep.means[j][:, None])
            lp[j] = -0.5 * np.einsum("ij,ij->j", z, z)
        lp += prep.const.astype(lp.dtype)[:, None]
        return lp, None

    def sums_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        d = n_features
        return (n_components, d + d * d)

    def add_block_sums(
        self,
        acc: np.ndarray,
        F: np.ndarray,
        y: np.ndarray,
        resp: np.ndarray,
        prep: WhiteningPrepared | None = None,
        ctx: Any = None,
    ) -> None:
        d = y.shape[0]
        acc[:, :d] += resp @ y.T
        for j in range(resp.shape[0]):
            acc[j, d:] += ((y * resp[j]) @ y.T).reshape(d * d)

    def split_sums(
        self, acc: np.ndarray, n_components: int, n_features: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        d = n_features
        s2 = acc[:, d:].reshape(n_components, d, d)
        return acc[:, :d].copy(), (0.5 * (s2 + np.swapaxes(s2, 1, 2)),)


class FullCovariance(CovarianceFamily):
    name = "full"
    sklearn_name = "full"

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components, n_features, n_features)

    def s2_shapes(self, n_components: int, n_features: int) -> tuple[tuple[int, ...], ...]:
        return ((n_components, n_features, n_features),)

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components * n_features * (n_features + 1) // 2

    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        return cholesky_upper_precisions(covariances)

    def covariances_from_precision_cholesky(self, prec_chol: np.ndarray) -> np.ndarray:
        out = np.empty_like(prec_chol)
        eye = np.eye(prec_chol.shape[-1])
        for k, L in enumerate(prec_chol):
            inv = linalg.solve_triangular(L, eye, lower=False)  # L^-1, upper
            out[k] = inv.T @ inv
        return out

    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        return np.matmul(prec_chol, np.swapaxes(prec_chol, -1, -2))

    def precision_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        out = np.empty_like(precisions, dtype=np.float64)
        bad = []
        for k, p in enumerate(precisions):
            # Upper L with P = L L^T: the lower Cholesky factor of P flipped both ways.
            try:
                c = linalg.cholesky(p[::-1, ::-1], lower=True)
            except linalg.LinAlgError:
                bad.append(k)
                continue
            out[k] = c[::-1, ::-1]
        if bad:
            raise CholeskyFailure(tuple(bad))
        return out

    def log_det_cholesky(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray:
        return np.sum(np.log(np.diagonal(prec_chol, axis1=-2, axis2=-1)), axis=-1)

    def dense(self, covariances: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        return np.asarray(covariances, dtype=np.float64)

    def dense_family(self) -> CovarianceFamily:
        return self

    def marginal(self, covariances: np.ndarray, features: np.ndarray) -> np.ndarray:
        return covariances[:, features][:, :, features]

    def rescaled(self, covariances: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return covariances * np.outer(scale, scale)

    def check_positive_definite(self, matrices: np.ndarray, what: str) -> None:
        check_spd(matrices, what)

    def kernel(self, n_features: int) -> PackedKernel | WhiteningKernel:
        if n_features <= PACKED_MAX_FEATURES:
            return PackedKernel(self)
        return WhiteningKernel(self)

    def covariances_from_stats(
        self,
        s0: np.ndarray,
        means: np.ndarray,
        s2: tuple[np.ndarray, ...],
        reg: float,
    ) -> np.ndarray:
        cov = s2[0] / s0[:, None, None] - means[:, :, None] * means[:, None, :]
        idx = np.arange(means.shape[1])
        cov[:, idx, idx] += reg
        return cov

    def recentered(
        self, s0: np.ndarray, s1: np.ndarray, s2: tuple[np.ndarray, ...], shift: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        cross = s1[:, :, None] * shift[:, None, :]
        outer = s0[:, None, None] * shift[:, :, None] * shift[:, None, :]
        moved = s2[0] + cross + np.swapaxes(cross, 1, 2) + outer
        return s1 + s0[:, None] * shift, (moved,)

    def s2_from_dense(self, moments: np.ndarray) -> tuple[np.ndarray, ...]:
        return (moments.copy(),)

    def second_moments(
        self, s0: np.ndarray, means: np.ndarray, covariances: np.ndarray, reg: float
    ) -> tuple[np.ndarray, ...]:
        inner = covariances - reg * np.eye(means.shape[1]) + means[:, :, None] * means[:, None, :]
        return (s0[:, None, None] * inner,)
