"""Spherical covariances: one variance per component.

Layer: math (numpy only).

Kernel: ``F = [y; |y|^2]`` (``D + 1`` rows); log-densities are ``A @ F`` with
``A = [P'm', -P'/2]`` and the sums are ``F @ resp.T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..frame import Frame
from .diag import check_positive, positive_variances_precision_cholesky
from .interface import CovarianceFamily, frame_means, log_constants
from .linear_kernel import LinearKernel, LinearPrepared


@dataclass(frozen=True, slots=True)
class SphericalKernel(LinearKernel):
    """``F = [y; |y|^2]``, ``A = [P'm', -P'/2]``."""

    family: SphericalCovariance

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
        linear = np.concatenate([P[:, None] * m, -0.5 * P[:, None]], axis=1)
        const = log_constants(
            weights, self.family.log_det_cholesky(L, d), P * np.sum(m * m, axis=1), d, frame
        )
        return LinearPrepared(self, frame, np.dtype(dtype), const, linear.astype(dtype))

    def features(self, y: np.ndarray) -> np.ndarray:
        d = y.shape[0]
        F = np.empty((d + 1, y.shape[1]), dtype=y.dtype)
        F[:d] = y
        np.einsum("ij,ij->j", y, y, out=F[d])
        return F

    def sums_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_features + 1, n_components)

    def split_sums(
        self, acc: np.ndarray, n_components: int, n_features: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        d = n_features
        return np.ascontiguousarray(acc[:d].T), (acc[d].copy(),)


class SphericalCovariance(CovarianceFamily):
    name = "spherical"
    sklearn_name = "spherical"

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components,)

    def s2_shapes(self, n_components: int, n_features: int) -> tuple[tuple[int, ...], ...]:
        return ((n_components,),)

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components

    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        return positive_variances_precision_cholesky(covariances)

    def covariances_from_precision_cholesky(self, prec_chol: np.ndarray) -> np.ndarray:
        return 1.0 / prec_chol**2

    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        return prec_chol**2

    def precision_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        return 1.0 / positive_variances_precision_cholesky(precisions)

    def log_det_cholesky(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray:
        return n_features * np.log(prec_chol)

    def dense(self, covariances: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        return covariances[:, None, None] * np.eye(n_features)

    def marginal(self, covariances: np.ndarray, features: np.ndarray) -> np.ndarray:
        return covariances.copy()

    def rescaled(self, covariances: np.ndarray, scale: np.ndarray) -> np.ndarray:
        # One variance per component stays one only when every feature scales alike.
        scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        if np.any(scale != scale[0]):
            raise ValueError(
                "covariance_type='spherical' keeps one variance per component, so it cannot "
                "be rescaled by unequal per-feature scales; use covariance_type='diag' or "
                "equal scales."
            )
        return covariances * scale[0] ** 2

    def check_positive_definite(self, matrices: np.ndarray, what: str) -> None:
        check_positive(matrices, what)

    def kernel(self, n_features: int) -> SphericalKernel:
        return SphericalKernel(self)

    def covariances_from_stats(
        self,
        s0: np.ndarray,
        means: np.ndarray,
        s2: tuple[np.ndarray, ...],
        reg: float,
    ) -> np.ndarray:
        d = means.shape[1]
        return (s2[0] / s0 - np.sum(means * means, axis=1)) / d + reg

    def recentered(
        self, s0: np.ndarray, s1: np.ndarray, s2: tuple[np.ndarray, ...], shift: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        moved = s2[0] + 2.0 * np.sum(shift * s1, axis=1) + s0 * np.sum(shift * shift, axis=1)
        return s1 + s0[:, None] * shift, (moved,)

    def s2_from_dense(self, moments: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.trace(moments, axis1=1, axis2=2),)

    def second_moments(
        self, s0: np.ndarray, means: np.ndarray, covariances: np.ndarray, reg: float
    ) -> tuple[np.ndarray, ...]:
        d = means.shape[1]
        return (s0 * (d * (covariances - reg) + np.sum(means * means, axis=1)),)
