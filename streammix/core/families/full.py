"""Full covariance matrices, one per component.

Layer: math (numpy/scipy only).

Kernel, up to ``PACKED_MAX_FEATURES`` features: with ``F = [y; y_i y_j for
i <= j]`` (``D + D(D+1)/2`` rows), the log-density of every component is one
GEMM ``A @ F`` (``A`` holds ``P'm'`` and the upper triangle of ``-P'/2`` with
doubled off-diagonals), and every component's first and second moments are one
GEMM ``F @ resp.T``. Packing the triangle halves both GEMMs against the dense
``y y^T``, and stacking the components makes them large.

Beyond that width ``F`` would outgrow any cache (``D^2 / 2`` rows per block), so
each component whitens the block with its own factor, ``z = L'^T (y - m')``, and
accumulates ``(y r) y^T``: ``4 N K D^2`` flops in ``D x D`` GEMMs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from scipy import linalg

from ...errors import CholeskyFailure
from ..frame import Frame
from .interface import LinearInFeatures, Prepared, frame_means

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


class FullCovariance(LinearInFeatures):
    name = "full"

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

    def marginal(self, covariances: np.ndarray, features: np.ndarray) -> np.ndarray:
        return covariances[:, features][:, :, features]

    def check_positive_definite(self, matrices: np.ndarray, what: str) -> None:
        check_spd(matrices, what)

    def prepare(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        prec_chol: np.ndarray,
        frame: Frame,
        dtype: np.dtype,
    ) -> Prepared:
        d = means.shape[1]
        m = frame_means(means, frame)
        L = prec_chol * frame.scale
        if d > PACKED_MAX_FEATURES:
            k = means.shape[0]
            const = self._const(weights, self.log_det_cholesky(L, d), np.zeros(k), d, frame)
            LT = np.ascontiguousarray(np.swapaxes(L, 1, 2)).reshape(k, d * d)
            return Prepared(self, LT.astype(dtype), const, m.astype(dtype), frame, np.dtype(dtype))
        P = np.matmul(L, np.swapaxes(L, -1, -2))
        Pm = np.einsum("kij,kj->ki", P, m)
        iu = _triu(d)
        quad = -P[:, iu[0], iu[1]]
        quad[:, iu[0] == iu[1]] *= 0.5
        linear = np.concatenate([Pm, quad], axis=1)
        const = self._const(
            weights, self.log_det_cholesky(L, d), np.einsum("ki,ki->k", m, Pm), d, frame
        )
        return Prepared(self, linear.astype(dtype), const, None, frame, np.dtype(dtype))

    def features(self, y: np.ndarray) -> np.ndarray:
        return build_features(y) if y.shape[0] <= PACKED_MAX_FEATURES else y

    def log_joint(self, F: np.ndarray, y: np.ndarray, prep: Prepared) -> tuple[np.ndarray, Any]:
        d = y.shape[0]
        if d <= PACKED_MAX_FEATURES:
            return super().log_joint(F, y, prep)
        assert prep.extra is not None
        k = prep.n_components
        lp = np.empty((k, y.shape[1]), dtype=y.dtype)
        for j in range(k):
            z = prep.linear[j].reshape(d, d) @ (y - prep.extra[j][:, None])
            lp[j] = -0.5 * np.einsum("ij,ij->j", z, z)
        lp += prep.const.astype(lp.dtype)[:, None]
        return lp, None

    def sums_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        d = n_features
        if d > PACKED_MAX_FEATURES:
            return (n_components, d + d * d)
        return (d + d * (d + 1) // 2, n_components)

    def add_block_sums(
        self,
        acc: np.ndarray,
        F: np.ndarray,
        y: np.ndarray,
        resp: np.ndarray,
        prep: Prepared | None = None,
        ctx: Any = None,
    ) -> None:
        d = y.shape[0]
        if d <= PACKED_MAX_FEATURES:
            super().add_block_sums(acc, F, y, resp)
            return
        acc[:, :d] += resp @ y.T
        for j in range(resp.shape[0]):
            acc[j, d:] += ((y * resp[j]) @ y.T).reshape(d * d)

    def split_sums(
        self, acc: np.ndarray, n_components: int, n_features: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        d = n_features
        if d > PACKED_MAX_FEATURES:
            s2 = acc[:, d:].reshape(n_components, d, d)
            return acc[:, :d].copy(), (0.5 * (s2 + np.swapaxes(s2, 1, 2)),)
        s1 = np.ascontiguousarray(acc[:d].T)
        iu = _triu(d)
        s2 = np.empty((n_components, d, d))
        s2[:, iu[0], iu[1]] = acc[d:].T
        s2[:, iu[1], iu[0]] = acc[d:].T
        return s1, (s2,)

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

    def s2_from_dense(self, moments: np.ndarray) -> tuple[np.ndarray, ...]:
        return (moments.copy(),)

    def second_moments(
        self, s0: np.ndarray, means: np.ndarray, covariances: np.ndarray, reg: float
    ) -> tuple[np.ndarray, ...]:
        inner = covariances - reg * np.eye(means.shape[1]) + means[:, :, None] * means[:, None, :]
        return (s0[:, None, None] * inner,)
