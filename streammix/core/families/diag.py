"""Diagonal covariances: one variance per component and feature.

Layer: math (numpy only).

Kernel: ``F = [y; y*y]`` (``2D`` rows); log-densities are ``A @ F`` with
``A = [P'm', -P'/2]`` and the sums are ``F @ resp.T``, two GEMMs of inner or
outer size ``2D``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import CholeskyFailure
from ..frame import Frame
from .interface import CovarianceFamily, frame_means, log_constants
from .linear_kernel import LinearKernel, LinearPrepared


def positive_variances_precision_cholesky(variances: np.ndarray) -> np.ndarray:
    """``1 / sqrt(var)`` for variances of shape ``(K, ...)``; raises on ``var <= 0``."""
    variances = np.asarray(variances, dtype=np.float64)
    flat = variances.reshape(variances.shape[0], -1)
    bad = np.flatnonzero(~np.all(np.isfinite(flat) & (flat > 0.0), axis=1))
    if bad.size:
        raise CholeskyFailure(tuple(int(k) for k in bad))
    return 1.0 / np.sqrt(variances)


def check_positive(values: np.ndarray, what: str) -> None:
    if np.any(np.asarray(values) <= 0.0):
        raise ValueError(f"{what!r} should be positive")


def squares_features(y: np.ndarray) -> np.ndarray:
    """``[y; y*y]`` for a ``(D, n)`` block."""
    d = y.shape[0]
    F = np.empty((2 * d, y.shape[1]), dtype=y.dtype)
    F[:d] = y
    np.multiply(y, y, out=F[d:])
    return F


@dataclass(frozen=True, slots=True)
class DiagKernel(LinearKernel):
    """``F = [y; y*y]``, ``A = [P'm', -P'/2]``."""

    family: DiagCovariance

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
        P = L * L
        linear = np.concatenate([P * m, -0.5 * P], axis=1)
        const = log_constants(
            weights, self.family.log_det_cholesky(L, d), np.sum(P * m * m, axis=1), d, frame
        )
        return LinearPrepared(self, frame, np.dtype(dtype), const, linear.astype(dtype))

    def features(self, y: np.ndarray) -> np.ndarray:
        return squares_features(y)

    def sums_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (2 * n_features, n_components)

    def split_sums(
        self, acc: np.ndarray, n_components: int, n_features: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        d = n_features
        return np.ascontiguousarray(acc[:d].T), (np.ascontiguousarray(acc[d:].T),)


class DiagCovariance(CovarianceFamily):
    name = "diag"
    sklearn_name = "diag"

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components, n_features)

    def s2_shapes(self, n_components: int, n_features: int) -> tuple[tuple[int, ...], ...]:
        return ((n_components, n_features),)

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components * n_features

    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        return positive_variances_precision_cholesky(covariances)

    def covariances_from_precision_cholesky(self, prec_chol: np.ndarray) -> np.ndarray:
        return 1.0 / prec_chol**2

    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        return prec_chol**2

    def precision_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        return 1.0 / positive_variances_precision_cholesky(precisions)

    def log_det_cholesky(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray:
        return np.sum(np.log(prec_chol), axis=1)

    def dense(self, covariances: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        out = np.zeros((n_components, n_features, n_features))
        idx = np.arange(n_features)
        out[:, idx, idx] = covariances
        return out

    def marginal(self, covariances: np.ndarray, features: np.ndarray) -> np.ndarray:
        return covariances[:, features]

    def rescaled(self, covariances: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return covariances * scale**2

    def check_positive_definite(self, matrices: np.ndarray, what: str) -> None:
        check_positive(matrices, what)

    def kernel(self, n_features: int) -> DiagKernel:
        return DiagKernel(self)

    def covariances_from_stats(
        self,
        s0: np.ndarray,
        means: np.ndarray,
        s2: tuple[np.ndarray, ...],
        reg: float,
    ) -> np.ndarray:
        return s2[0] / s0[:, None] - means * means + reg

    def recentered(
        self, s0: np.ndarray, s1: np.ndarray, s2: tuple[np.ndarray, ...], shift: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        moved = s2[0] + 2.0 * shift * s1 + s0[:, None] * shift * shift
        return s1 + s0[:, None] * shift, (moved,)

    def s2_from_dense(self, moments: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.diagonal(moments, axis1=1, axis2=2).copy(),)

    def second_moments(
        self, s0: np.ndarray, means: np.ndarray, covariances: np.ndarray, reg: float
    ) -> tuple[np.ndarray, ...]:
        return (s0[:, None] * (covariances - reg + means * means),)
