"""One full covariance matrix shared by all components.

Layer: math (numpy/scipy only).

Kernel: with the shared factor ``L'``, ``log N(x | k) = (P'm'_k)^T y
- |L'^T y|^2 / 2 + const_k``; the first term is one GEMM over components, the
second is shared by all of them. The sums are ``y @ resp.T`` (first order) and
the unweighted scatter ``y @ y.T``: the M-step subtracts the components' mean
outer products from the total scatter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import CholeskyFailure
from ..frame import Frame
from .full import check_spd, cholesky_upper_precisions
from .interface import BlockKernel, CovarianceFamily, Prepared, frame_means, log_constants


@dataclass(frozen=True, slots=True, eq=False)
class TiedPrepared(Prepared):
    """Constants of the tied kernel.

    Parameters
    ----------
    precision_means : ndarray of shape (n_components, n_features)
        ``P' m'_k``, the coefficients of ``y`` in every component's log-density.
    whitener : ndarray of shape (n_features, n_features)
        ``L'^T``, the shared factor: ``|L'^T y|^2 = y^T P' y``.
    """

    precision_means: np.ndarray
    whitener: np.ndarray


@dataclass(frozen=True, slots=True)
class TiedKernel(BlockKernel[TiedPrepared]):
    """One GEMM for the linear terms, one shared quadratic term."""

    family: TiedCovariance

    def prepare(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        prec_chol: np.ndarray,
        frame: Frame,
        dtype: np.dtype,
    ) -> TiedPrepared:
        d = means.shape[1]
        m = frame_means(means, frame)
        L = prec_chol * frame.scale
        Pm = m @ (L @ L.T)
        const = log_constants(
            weights,
            np.full(means.shape[0], self.family.log_det_cholesky(L, d)),
            np.sum(m * Pm, axis=1),
            d,
            frame,
        )
        return TiedPrepared(
            self, frame, np.dtype(dtype), const, Pm.astype(dtype), L.T.astype(dtype)
        )

    def features(self, y: np.ndarray) -> np.ndarray:
        return y

    def log_joint(self, F: np.ndarray, y: np.ndarray, prep: TiedPrepared) -> tuple[np.ndarray, Any]:
        z = prep.whitener @ y
        lp = prep.precision_means @ y
        lp -= 0.5 * np.einsum("ij,ij->j", z, z)
        lp += prep.const.astype(lp.dtype)[:, None]
        return lp, None

    def sums_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_features, n_components + n_features)

    def add_block_sums(
        self,
        acc: np.ndarray,
        F: np.ndarray,
        y: np.ndarray,
        resp: np.ndarray,
        prep: TiedPrepared | None = None,
        ctx: Any = None,
    ) -> None:
        k = resp.shape[0]
        acc[:, :k] += y @ resp.T
        # each row's scatter counts with its total responsibility: 1, or its weight
        acc[:, k:] += (y * resp.sum(axis=0)) @ y.T

    def split_sums(
        self, acc: np.ndarray, n_components: int, n_features: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        k = n_components
        return np.ascontiguousarray(acc[:, :k].T), (acc[:, k:].copy(),)


class TiedCovariance(CovarianceFamily):
    name = "tied"
    sklearn_name = "tied"
    shared_covariance = True

    def describe_degenerate(self, components: tuple[int, ...]) -> str:
        return "the shared (tied) covariance"

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_features, n_features)

    def s2_shapes(self, n_components: int, n_features: int) -> tuple[tuple[int, ...], ...]:
        return ((n_features, n_features),)

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_features * (n_features + 1) // 2

    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        try:
            return cholesky_upper_precisions(covariances[None])[0]
        except CholeskyFailure:
            raise CholeskyFailure(()) from None

    def covariances_from_precision_cholesky(self, prec_chol: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(prec_chol)
        return inv.T @ inv

    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        return prec_chol @ prec_chol.T

    def precision_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        try:
            c = np.linalg.cholesky(precisions[::-1, ::-1])
        except np.linalg.LinAlgError:
            raise CholeskyFailure(()) from None
        return c[::-1, ::-1]

    def log_det_cholesky(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray:
        return np.sum(np.log(np.diag(prec_chol)))

    def dense(self, covariances: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        return np.broadcast_to(covariances, (n_components, n_features, n_features)).copy()

    def marginal(self, covariances: np.ndarray, features: np.ndarray) -> np.ndarray:
        return covariances[np.ix_(features, features)]

    def rescaled(self, covariances: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return covariances * np.outer(scale, scale)

    def check_positive_definite(self, matrices: np.ndarray, what: str) -> None:
        check_spd(matrices, what)

    def kernel(self, n_features: int) -> TiedKernel:
        return TiedKernel(self)

    def covariances_from_stats(
        self,
        s0: np.ndarray,
        means: np.ndarray,
        s2: tuple[np.ndarray, ...],
        reg: float,
    ) -> np.ndarray:
        between = (s0[:, None] * means).T @ means
        cov = (s2[0] - between) / s0.sum()
        cov[np.diag_indices_from(cov)] += reg
        return cov

    def recentered(
        self, s0: np.ndarray, s1: np.ndarray, s2: tuple[np.ndarray, ...], shift: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        # s2 sums every component's scatter about its own reference (the
        # responsibilities of a row add up to one).
        cross = s1.T @ shift
        moved = s2[0] + cross + cross.T + (s0[:, None] * shift).T @ shift
        return s1 + s0[:, None] * shift, (moved,)

    def s2_from_dense(self, moments: np.ndarray) -> tuple[np.ndarray, ...]:
        return (moments.sum(axis=0),)

    def second_moments(
        self, s0: np.ndarray, means: np.ndarray, covariances: np.ndarray, reg: float
    ) -> tuple[np.ndarray, ...]:
        between = (s0[:, None] * means).T @ means
        return (s0.sum() * (covariances - reg * np.eye(means.shape[1])) + between,)
