"""Low-rank plus diagonal covariances: a mixture of factor analysers.

Layer: math (numpy/scipy only).

Component ``k`` is ``x = mu_k + L_k z + e`` with ``z ~ N(0, I_r)`` and
``e ~ N(0, diag(psi_k))``, so ``S_k = L_k L_k^T + diag(psi_k)`` (Ghahramani &
Hinton 1996; Richardson & Weiss 2018). Nothing ``D x D`` is ever formed by the
kernel or the statistics:

* Parameters are packed as ``covariances[k] = [L_k | psi_k]``, shape
  ``(D, r + 1)``, and ``precisions_cholesky[k] = [B_k | d_k]`` with
  ``d = psi^-1/2`` and ``B = diag(psi)^-1 L R^-T``, where ``R R^T = C = I +
  L^T diag(psi)^-1 L`` (the capacitance). By the Woodbury identity
  ``S^-1 = diag(d^2) - B B^T``, and by the determinant lemma
  ``log det S = log det C + sum log psi``.
* Log-densities: the diagonal part is the GEMM of the diag family on
  ``[y; y*y]``; the low-rank part is ``|B_k^T (y - mu_k)|^2`` for all components
  in one ``(K r) x D`` GEMM: ``O(N K D r)`` in all.
* Statistics (per component, with ``u = B^T (y - mu)`` and the latent posterior
  mean ``v = E[z | y] = R^-T u``): ``sum r y``, ``sum r y v^T`` (``D x r``),
  ``sum r v`` (``r``), ``sum r E[z z^T | y] = s0 C^-1 + sum r v v^T`` (``r x r``),
  and ``sum r y*y`` (``D``).
* M-step (exact EM, means and factors jointly): with ``Lt = [L | mu]``,
  ``Lt = [S_yv | S_y] [[S_vv, S_v], [S_v^T, s0]]^-1`` and
  ``psi = (S_yy - rowsum(Lt * [S_yv | S_y])) / s0 + reg``.

Initialisation goes through the diag family (hard k-means assignments give
means and variances); the factors then start small and random and grow along
each component's directions of largest variance during EM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg

from ...errors import CholeskyFailure, InvalidParameterError
from ..frame import Frame
from ..params import MixtureParams
from .diag import check_positive, squares_features
from .interface import LOG_2PI, BlockKernel, CovarianceFamily, Prepared, frame_means


def _split(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return packed[..., :-1], packed[..., -1]


def _capacitance(factors: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """``C_k = I + L_k^T diag(psi_k)^-1 L_k``, shape ``(K, r, r)``."""
    r = factors.shape[-1]
    scaled = factors / psi[..., None]
    return np.eye(r) + np.matmul(np.swapaxes(factors, -1, -2), scaled)


def _capacitance_from_precision(prec: np.ndarray) -> np.ndarray:
    """``C^-1 = I - B^T diag(psi) B`` for every component."""
    B, d = _split(prec)
    psi = 1.0 / d**2
    r = B.shape[-1]
    return np.eye(r) - np.matmul(np.swapaxes(B, -1, -2), B * psi[..., None])


@dataclass(frozen=True, slots=True, eq=False)
class LowRankPrepared(Prepared):
    """Constants of the low-rank kernel (``B_k``, ``R_k`` and ``C_k`` as in the module
    docstring, in frame units).

    Parameters
    ----------
    linear : ndarray of shape (n_components, 2 * n_features)
        Coefficients of ``F = [y; y*y]`` for the diagonal part, ``[P'm', -P'/2]``
        with ``P' = diag(d'^2)``; in the data dtype.
    stacked_factors : ndarray of shape (n_components * rank, n_features), float64
        The rows of every ``B_k^T``, stacked so that one GEMM serves all components.
    factor_means : ndarray of shape (n_components, rank), float64
        ``B_k^T m'_k``.
    latent_maps : ndarray of shape (n_components, rank, rank), float64
        ``R_k^-T``, which maps ``u = B_k^T (y - m'_k)`` to the latent posterior
        mean ``E[z | y]``.
    latent_covariances : ndarray of shape (n_components, rank, rank), float64
        ``C_k^-1``, the latent posterior covariance ``Cov[z | y]``.
    """

    linear: np.ndarray
    stacked_factors: np.ndarray
    factor_means: np.ndarray
    latent_maps: np.ndarray
    latent_covariances: np.ndarray


@dataclass(frozen=True, slots=True)
class LowRankKernel(BlockKernel[LowRankPrepared]):
    """The diag kernel's GEMM plus one ``(K r) x D`` GEMM for the low-rank part; the
    statistics carry the latent posterior moments."""

    family: LowRankCovariance

    def prepare(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        prec_chol: np.ndarray,
        frame: Frame,
        dtype: np.dtype,
    ) -> LowRankPrepared:
        k, dim = means.shape
        r = self.family.rank
        m = frame_means(means, frame)
        B, d = _split(prec_chol * frame.scale)
        P = d * d
        diag_linear = np.concatenate([P * m, -0.5 * P], axis=1)
        Bm = np.einsum("kdr,kd->kr", B, m)
        log_det = self.family.log_det_cholesky(prec_chol * frame.scale, dim)
        # Zero weights give -inf exactly, without a warning from log(0).
        const = (
            np.log(np.maximum(weights, np.finfo(np.float64).tiny))
            + log_det
            - 0.5 * np.sum(P * m * m, axis=1)
            - 0.5 * dim * LOG_2PI
            - dim * frame.log_scale
        )
        const[weights <= 0] = -np.inf
        # The latent posterior mean is v = R^-T u, with R the lower Cholesky factor
        # of the capacitance C = inv(C^-1).
        c_inv = _capacitance_from_precision(prec_chol * frame.scale)
        r_inv_t = np.stack(
            [
                np.swapaxes(np.linalg.inv(np.linalg.cholesky(np.linalg.inv(ci))), 0, 1)
                for ci in c_inv
            ]
        )
        stacked = np.ascontiguousarray(np.swapaxes(B, 1, 2).reshape(k * r, dim))
        return LowRankPrepared(
            self,
            frame,
            np.dtype(dtype),
            const,
            diag_linear.astype(dtype),
            stacked,
            Bm,
            r_inv_t,
            c_inv,
        )

    def features(self, y: np.ndarray) -> np.ndarray:
        return squares_features(y)

    def log_joint(
        self, F: np.ndarray, y: np.ndarray, prep: LowRankPrepared
    ) -> tuple[np.ndarray, Any]:
        k, r = prep.n_components, self.family.rank
        lp = prep.linear @ F
        U = prep.stacked_factors.astype(y.dtype) @ y  # (K r, n): B_k^T y
        U -= prep.factor_means.reshape(k * r, 1).astype(y.dtype)
        U3 = U.reshape(k, r, -1)
        lp += 0.5 * np.einsum("krn,krn->kn", U3, U3)
        lp += prep.const.astype(lp.dtype)[:, None]
        return lp, U3

    def context_columns(self, ctx: Any, columns: np.ndarray) -> Any:
        return ctx[:, :, columns]

    def sums_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        r = self.family.rank
        # per component: [S_y (D) | S_yv (D r) | S_v (r) | S_vv (r r) | S_yy (D)]
        return (n_components, 2 * n_features + n_features * r + r + r * r)

    def add_block_sums(
        self,
        acc: np.ndarray,
        F: np.ndarray,
        y: np.ndarray,
        resp: np.ndarray,
        prep: LowRankPrepared | None = None,
        ctx: Any = None,
    ) -> None:
        assert prep is not None and ctx is not None
        dim = y.shape[0]
        k, r = prep.n_components, self.family.rank
        U3 = ctx
        first = resp @ F.T  # (K, 2D): [S_y, S_yy]
        acc[:, :dim] += first[:, :dim]
        acc[:, -dim:] += first[:, dim:]
        s0 = resp.sum(axis=1, dtype=np.float64)
        at = dim
        for j in range(k):
            v = (prep.latent_maps[j].astype(y.dtype) @ U3[j]) if r else U3[j]  # (r, n)
            rv = v * resp[j]
            acc[j, at : at + dim * r] += (y @ rv.T).reshape(dim * r)
            acc[j, at + dim * r : at + dim * r + r] += rv.sum(axis=1)
            vv = rv @ v.T + s0[j] * prep.latent_covariances[j]
            acc[j, at + dim * r + r : at + dim * r + r + r * r] += vv.reshape(r * r)

    def split_sums(
        self, acc: np.ndarray, n_components: int, n_features: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        k, dim, r = n_components, n_features, self.family.rank
        s1 = acc[:, :dim].copy()
        at = dim
        s_yv = acc[:, at : at + dim * r].reshape(k, dim, r).copy()
        at += dim * r
        s_v = acc[:, at : at + r].copy()
        at += r
        s_vv = acc[:, at : at + r * r].reshape(k, r, r).copy()
        s_yy = acc[:, -dim:].copy()
        return s1, (s_yv, s_v, s_vv, s_yy)


class LowRankCovariance(CovarianceFamily):
    """``S_k = L_k L_k^T + diag(psi_k)`` with ``L_k`` of rank ``rank``."""

    name = "lowrank"
    exact_conditionals = False

    def __init__(self, rank: int) -> None:
        self.rank = int(rank)

    def __repr__(self) -> str:
        return f"<covariance family 'lowrank' (rank {self.rank})>"

    def __reduce__(self) -> tuple[object, tuple[Any, ...]]:
        from . import get_family

        return (get_family, (self.name, self.rank))

    def structural_parameters(self) -> dict[str, int]:
        return {"rank": self.rank}

    @staticmethod
    def rank_from_covariances(covariances: np.ndarray) -> int | None:
        """The rank that packed covariances ``(K, D, rank + 1)`` were written with, or
        ``None`` when ``covariances`` do not have that layout."""
        covariances = np.asarray(covariances)
        return int(covariances.shape[2]) - 1 if covariances.ndim == 3 else None

    # ----------------------------------------------------------- shapes
    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components, n_features, self.rank + 1)

    def s2_shapes(self, n_components: int, n_features: int) -> tuple[tuple[int, ...], ...]:
        k, d, r = n_components, n_features, self.rank
        return ((k, d, r), (k, r), (k, r, r), (k, d))

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        r, d = self.rank, n_features
        return n_components * (d * r - r * (r - 1) // 2 + d)

    # ------------------------------------------------ parameter algebra
    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        factors, psi = _split(np.asarray(covariances, dtype=np.float64))
        bad = np.flatnonzero(
            ~np.all(np.isfinite(covariances), axis=(1, 2)) | np.any(psi <= 0, axis=1)
        )
        if bad.size:
            raise CholeskyFailure(tuple(int(k) for k in bad))
        out = np.empty_like(covariances, dtype=np.float64)
        for k in range(covariances.shape[0]):
            C = _capacitance(factors[k], psi[k])
            R = np.linalg.cholesky(C)
            # B = diag(psi)^-1 L R^-T
            out[k, :, :-1] = linalg.solve_triangular(
                R, (factors[k] / psi[k][:, None]).T, lower=True
            ).T
            out[k, :, -1] = 1.0 / np.sqrt(psi[k])
        return out

    def covariances_from_precision_cholesky(self, prec_chol: np.ndarray) -> np.ndarray:
        B, d = _split(prec_chol)
        psi = 1.0 / d**2
        out = np.empty_like(prec_chol)
        c_inv = _capacitance_from_precision(prec_chol)
        for k in range(prec_chol.shape[0]):
            R = np.linalg.cholesky(np.linalg.inv(c_inv[k]))
            out[k, :, :-1] = (B[k] * psi[k][:, None]) @ R
            out[k, :, -1] = psi[k]
        return out

    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        """Dense precision matrices (``K x D x D``; for inspection, not used by the kernel)."""
        B, d = _split(prec_chol)
        dense = -np.matmul(B, np.swapaxes(B, -1, -2))
        idx = np.arange(d.shape[-1])
        dense[:, idx, idx] += d**2
        return dense

    def precision_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        raise InvalidParameterError(
            "precisions_init is not supported for covariance_type='lowrank'; pass "
            "means_init (and weights_init) instead."
        )

    def log_det_cholesky(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray:
        _, d = _split(prec_chol)
        _, log_det_c_inv = np.linalg.slogdet(_capacitance_from_precision(prec_chol))
        # log det S^-1/2 = sum log d - log det R = sum log d + log det(C^-1) / 2
        return np.sum(np.log(d), axis=-1) + 0.5 * log_det_c_inv

    def dense(self, covariances: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        factors, psi = _split(covariances)
        out = np.matmul(factors, np.swapaxes(factors, -1, -2))
        idx = np.arange(n_features)
        out[:, idx, idx] += psi
        return out

    def marginal(self, covariances: np.ndarray, features: np.ndarray) -> np.ndarray:
        return covariances[:, features, :].copy()

    def rescaled(self, covariances: np.ndarray, scale: np.ndarray) -> np.ndarray:
        # diag(s) (L L^T + diag(psi)) diag(s) = (diag(s) L)(diag(s) L)^T + diag(s^2 psi)
        covariances = np.asarray(covariances, dtype=np.float64)
        factors, psi = _split(covariances)
        scale = np.asarray(scale, dtype=np.float64)
        out = np.empty_like(covariances)
        out[..., :-1] = scale[:, None] * factors
        out[..., -1] = scale**2 * psi
        return out

    def check_positive_definite(self, matrices: np.ndarray, what: str) -> None:
        check_positive(_split(matrices)[1], f"{what} (noise variances)")

    # ----------------------------------------------------- E-step kernel
    def kernel(self, n_features: int) -> LowRankKernel:
        return LowRankKernel(self)

    # ------------------------------------------------------------ M-step
    def mstep_frame(
        self, s0: np.ndarray, s1: np.ndarray, s2: tuple[np.ndarray, ...], reg: float
    ) -> tuple[np.ndarray, np.ndarray]:
        s_yv, s_v, s_vv, s_yy = s2
        k, dim = s1.shape
        r = self.rank
        means = np.empty((k, dim))
        cov = np.empty((k, dim, r + 1))
        for j in range(k):
            lhs = np.empty((r + 1, r + 1))
            lhs[:r, :r] = s_vv[j]
            lhs[:r, r] = s_v[j]
            lhs[r, :r] = s_v[j]
            lhs[r, r] = s0[j]
            rhs = np.concatenate([s_yv[j], s1[j][:, None]], axis=1)  # (D, r+1)
            try:
                tilde = linalg.solve(lhs, rhs.T, assume_a="pos").T
            except (linalg.LinAlgError, ValueError):
                tilde = np.linalg.lstsq(lhs, rhs.T, rcond=None)[0].T
            factors, mean = tilde[:, :r], tilde[:, r]
            psi = (s_yy[j] - np.sum(tilde * rhs, axis=1)) / s0[j] + reg
            means[j] = mean
            cov[j, :, :r] = factors
            cov[j, :, r] = psi
        return means, cov

    def covariances_from_stats(
        self,
        s0: np.ndarray,
        means: np.ndarray,
        s2: tuple[np.ndarray, ...],
        reg: float,
    ) -> np.ndarray:
        raise NotImplementedError("the lowrank M-step estimates means and factors jointly")

    def second_moments(
        self, s0: np.ndarray, means: np.ndarray, covariances: np.ndarray, reg: float
    ) -> tuple[np.ndarray, ...]:
        factors, psi = _split(covariances)
        k, r = factors.shape[0], self.rank
        s_yv = s0[:, None, None] * factors
        s_v = np.zeros((k, r))
        s_vv = s0[:, None, None] * np.eye(r)
        s_yy = s0[:, None] * (np.sum(factors**2, axis=2) + psi - reg + means**2)
        # At the fixed point the latent means are uncorrelated with the noise; with
        # the mean folded in, sum r y v^T also carries mu sum r v^T = 0.
        return (s_yv, s_v, s_vv, s_yy)

    def recentered(
        self, s0: np.ndarray, s1: np.ndarray, s2: tuple[np.ndarray, ...], shift: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        s_yv, s_v, s_vv, s_yy = s2
        moved_yv = s_yv + shift[:, :, None] * s_v[:, None, :]
        moved_yy = s_yy + 2.0 * shift * s1 + s0[:, None] * shift * shift
        return s1 + s0[:, None] * shift, (moved_yv, s_v, s_vv, moved_yy)

    def s2_from_dense(self, moments: np.ndarray) -> tuple[np.ndarray, ...]:
        raise InvalidParameterError("missing='em' is not available for covariance_type='lowrank'.")

    # ------------------------------------------------------ initialisation
    def init_family(self) -> CovarianceFamily:
        from . import get_family

        return get_family("diag")

    def from_init(self, params: MixtureParams, rng: np.random.Generator) -> MixtureParams:
        """Diagonal starting parameters to low-rank ones: small random factors (a
        tenth of each feature's spread), the variances as noise."""
        k, dim = params.means.shape
        var = np.asarray(params.covariances)
        factors = rng.standard_normal((k, dim, self.rank)) * (0.1 * np.sqrt(var))[:, :, None]
        noise = np.maximum(var - np.sum(factors**2, axis=2), 0.5 * var)
        packed = np.concatenate([factors, noise[:, :, None]], axis=2)
        return MixtureParams.from_covariances(self, params.weights, params.means, packed)
