"""Variational Bayesian Gaussian mixtures: priors, posterior, M-step and lower bound.

Layer: math (numpy/scipy only).

The model is scikit-learn's ``BayesianGaussianMixture`` (Bishop 2006, ch. 10;
Blei & Jordan 2006 for the Dirichlet process): a Dirichlet distribution or a
truncated stick-breaking Dirichlet process on the weights, and a
Gaussian-Wishart prior on each component's mean and precision (for the
``diag`` and ``spherical`` families the same updates applied to their
layouts, as scikit-learn does). The posterior keeps scikit-learn's
parametrisation: ``covariances`` are the Wishart scale matrices divided by the
degrees of freedom ``nu_k``, so that ``precisions_cholesky`` factors the
expected precision ``nu_k W_k``.

The variational E-step is the ordinary Gaussian E-step with *effective*
parameters (:meth:`Posterior.estep_params`): the posterior means, the expected
precisions, and log-weights ``E[ln pi_k] + (E[ln det Lambda_k] - ln det(nu_k
W_k)) / 2 - D / (2 beta_k)``. So the chunked kernel
(:func:`streammix.core.kernel.estep`) gives every statistic the update needs,
and the M-step (:func:`mstep`) runs on the client from them. The lower bound
needs ``sum_ik r_ik ln r_ik``; it is linear in those statistics given the
E-step's parameters (:func:`sum_resp_log_resp`), so no extra per-row work is done.

Nothing here branches on a family's name: the Wishart update is written once
over dense ``D x D`` matrices and turned into each family's layout by the
family's own M-step (:meth:`CovarianceFamily.covariances_from_stats`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln, logsumexp

from .families import CovarianceFamily
from .families.interface import LOG_2PI, frame_means
from .mstep import COUNT_GUARD
from .params import MixtureParams
from .stats import SufficientStats

DIRICHLET_PROCESS = "dirichlet_process"
DIRICHLET_DISTRIBUTION = "dirichlet_distribution"
PRIOR_TYPES = (DIRICHLET_PROCESS, DIRICHLET_DISTRIBUTION)

_LOG_2 = math.log(2.0)


@dataclass(frozen=True, slots=True, eq=False)
class Priors:
    """The priors of a variational mixture, resolved (no ``None`` left).

    Parameters
    ----------
    prior_type : {"dirichlet_process", "dirichlet_distribution"}
    weight_concentration : float
        ``gamma_0`` (process) or ``alpha_0`` (distribution).
    mean_precision : float
        ``beta_0``.
    mean : ndarray of shape (n_features,)
        ``m_0``.
    degrees_of_freedom : float
        ``nu_0``.
    covariance : ndarray
        The prior covariance in the layout of one component of the family:
        ``(D, D)`` for ``full`` and ``tied``, ``(D,)`` for ``diag``, ``()`` for
        ``spherical`` (scikit-learn's ``covariance_prior_``).
    """

    prior_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray

    def dense_covariance(self, family: CovarianceFamily) -> np.ndarray:
        """The prior covariance as a ``(D, D)`` matrix."""
        d = self.mean.shape[0]
        layout = family.covariance_shape(1, d)
        return family.dense(np.reshape(self.covariance, layout), 1, d)[0]


@dataclass(frozen=True, slots=True, eq=False)
class Posterior:
    """The variational posterior, in scikit-learn's attributes' layout.

    Parameters
    ----------
    family : CovarianceFamily
    prior_type : str
    weight_concentration : ndarray
        ``(2, K)`` (the Beta parameters of each stick) for a Dirichlet process,
        ``(K,)`` for a Dirichlet distribution.
    mean_precision : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    degrees_of_freedom : ndarray
        ``(K,)``, or ``()`` when the family shares one covariance.
    covariances, precisions_cholesky : ndarray
        The family's layout; ``covariances`` are ``W_k^-1 / nu_k``.
    """

    family: CovarianceFamily
    prior_type: str
    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    def expected_log_weights(self) -> np.ndarray:
        """``E[ln pi_k]`` under the posterior, shape ``(K,)``."""
        wc = self.weight_concentration
        if self.prior_type == DIRICHLET_PROCESS:
            log_total = digamma(wc[0] + wc[1])
            log_stick = digamma(wc[0]) - log_total
            log_rest = digamma(wc[1]) - log_total
            return np.asarray(log_stick + np.concatenate([[0.0], np.cumsum(log_rest)[:-1]]))
        return np.asarray(digamma(wc) - digamma(np.sum(wc)))

    def weights(self) -> np.ndarray:
        """Point estimates of the weights (scikit-learn's ``weights_``)."""
        wc = self.weight_concentration
        if self.prior_type == DIRICHLET_PROCESS:
            total = wc[0] + wc[1]
            rest = wc[1] / total
            w = wc[0] / total * np.concatenate([[1.0], np.cumprod(rest[:-1])])
        else:
            w = np.asarray(wc, dtype=np.float64)
        return np.asarray(w / np.sum(w))

    def point_params(self) -> MixtureParams:
        """The mixture of Gaussians at the point estimates (weights, means, covariances)."""
        return MixtureParams(
            self.family, self.weights(), self.means, self.covariances, self.precisions_cholesky
        )

    def estep_params(self) -> tuple[MixtureParams, float]:
        """Parameters for which the Gaussian E-step is the variational one.

        Returns
        -------
        params : MixtureParams
            Posterior means and expected precisions, with weights ``softmax(a)``
            for the effective log-weights ``a``.
        offset : float
            ``logsumexp(a)``: a row's variational log-normaliser is its
            log-likelihood under ``params`` plus ``offset``.
        """
        k, d = self.means.shape
        nu = self.degrees_of_freedom
        log_lambda = d * _LOG_2 + _sum_over_features(digamma, nu, d)
        extra = 0.5 * (log_lambda - d / self.mean_precision) - 0.5 * d * np.log(nu)
        a = self.expected_log_weights() + np.broadcast_to(extra, (k,))
        offset = float(logsumexp(a))
        weights = np.exp(a - offset)
        params = MixtureParams(
            self.family, weights, self.means, self.covariances, self.precisions_cholesky
        )
        return params, offset


def _sum_over_features(
    func: Callable[[np.ndarray], np.ndarray], nu: np.ndarray, n_features: int
) -> np.ndarray:
    """``sum_{i < D} func((nu - i) / 2)`` for every entry of ``nu``."""
    values = func(0.5 * (np.asarray(nu, dtype=np.float64)[..., None] - np.arange(n_features)))
    return np.asarray(np.sum(values, axis=-1))


def _identity(family: CovarianceFamily, n_components: int, n_features: int) -> np.ndarray:
    """The identity (what ``reg_covar = 1`` adds) in the family's layout."""
    k, d = n_components, n_features
    zero = family.s2_from_dense(np.zeros((k, d, d)))
    return family.covariances_from_stats(np.ones(k), np.zeros((k, d)), zero, 1.0)


def moments(
    stats: SufficientStats, family: CovarianceFamily, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, means and covariances of the responsibilities, in original units.

    These are scikit-learn's ``nk`` (with its ``10 eps`` guard), ``xk`` and ``sk``
    (``reg_covar`` added), computed from statistics in their frame.
    """
    nk = stats.s0 + COUNT_GUARD
    frame = stats.frame
    offsets, cov = family.mstep_frame(nk, stats.s1, stats.s2, reg_covar / frame.scale**2)
    means = offsets if stats.refs is None else stats.refs + offsets
    xk = frame.shift + frame.scale * means
    sk = family.rescaled(cov, np.full(means.shape[1], frame.scale))
    return nk, xk, sk


def moments_from_params(
    params: MixtureParams, n_assigned: float, reg_used: float, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nk, xk, sk)`` of the responsibilities an EM M-step turned into ``params``.

    ``n_assigned`` is the sum of those responsibilities (the rows, or the seed
    rows for seeding methods); ``reg_used`` is the ``reg_covar`` that M-step
    added, replaced here by ``reg_covar``.
    """
    k, d = params.means.shape
    nk = params.weights * (n_assigned + k * COUNT_GUARD)
    delta = (reg_covar - reg_used) * _identity(params.family, k, d)
    return nk, params.means.copy(), params.covariances + delta


def mstep(
    nk: np.ndarray,
    xk: np.ndarray,
    sk: np.ndarray,
    priors: Priors,
    family: CovarianceFamily,
) -> Posterior:
    """The variational M-step from the responsibilities' moments.

    Parameters
    ----------
    nk : ndarray of shape (K,)
    xk : ndarray of shape (K, D)
    sk : ndarray
        Covariances of the responsibilities in the family's layout, ``reg_covar``
        included.
    priors : Priors
    family : CovarianceFamily

    Returns
    -------
    Posterior

    Raises
    ------
    CholeskyFailure
        When a posterior covariance is not positive definite.
    """
    k, d = xk.shape
    if priors.prior_type == DIRICHLET_PROCESS:
        later = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
        wc = np.stack([1.0 + nk, priors.weight_concentration + later])
    else:
        wc = priors.weight_concentration + nk
    beta = priors.mean_precision + nk
    means = (priors.mean_precision * priors.mean + nk[:, None] * xk) / beta[:, None]
    diff = xk - priors.mean
    shrink = nk * priors.mean_precision / beta
    # Every component's Wishart scale, dense: prior + scatter + the pull of the prior mean.
    scale = (
        priors.dense_covariance(family)
        + nk[:, None, None] * family.dense(sk, k, d)
        + shrink[:, None, None] * diff[:, :, None] * diff[:, None, :]
    )
    # Dividing by the degrees of freedom is the family's own M-step with counts nu_k:
    # per component for most, pooled (sum_k nu_k = K nu_0 + N) for a shared covariance.
    nu_each = priors.degrees_of_freedom + nk
    cov = family.covariances_from_stats(nu_each, np.zeros((k, d)), family.s2_from_dense(scale), 0.0)
    nu = np.asarray(np.sum(nu_each) / k) if family.shared_covariance else nu_each
    return Posterior(
        family,
        priors.prior_type,
        np.asarray(wc, dtype=np.float64),
        beta,
        means,
        nu,
        cov,
        family.precision_cholesky(cov),
    )


def sum_resp_log_resp(stats: SufficientStats, eparams: MixtureParams) -> float:
    """``sum_ik r_ik ln r_ik`` of the E-step that gave ``stats`` with ``eparams``.

    With ``l_ik = ln w_k + ln N(x_i | k)`` and ``ln r_ik = l_ik - ln sum_j exp
    l_ij``, the sum is ``sum_k sum_i r_ik l_ik - sum_i ln p(x_i)``; the first
    term is linear in the statistics (``N_k``, and the quadratic forms of the
    first and second sums about the means), the second is ``stats.loglik``.
    """
    family = eparams.family
    frame = stats.frame
    k, d = eparams.means.shape
    centre = frame_means(eparams.means, frame)
    s1, s2 = family.recentered(stats.s0, stats.s1, stats.s2, stats.centres - centre)
    nk = stats.s0
    guarded = nk + COUNT_GUARD
    offsets = s1 / guarded[:, None]
    spread = family.dense(family.covariances_from_stats(guarded, offsets, s2, 0.0), k, d)
    prec = family.dense(family.precisions(eparams.precisions_cholesky * frame.scale), k, d)
    quad = nk * (
        np.einsum("kij,kji->k", prec, spread) + np.einsum("ki,kij,kj->k", offsets, prec, offsets)
    )
    log_det = np.broadcast_to(family.log_det_cholesky(eparams.precisions_cholesky, d), (k,))
    with np.errstate(divide="ignore"):
        log_w = np.log(eparams.weights)
    per_component = nk * (log_w + log_det - 0.5 * d * LOG_2PI) - 0.5 * quad
    per_component = np.where(nk > 0.0, per_component, 0.0)
    return float(np.sum(per_component) - stats.loglik)


def lower_bound(posterior: Posterior, resp_log_resp: float) -> float:
    """The variational lower bound, up to scikit-learn's dropped constants.

    Parameters
    ----------
    posterior : Posterior
        After the M-step.
    resp_log_resp : float
        ``sum_ik r_ik ln r_ik`` of the E-step before it (:func:`sum_resp_log_resp`).
    """
    family = posterior.family
    k, d = posterior.means.shape
    nu = posterior.degrees_of_freedom
    log_det = family.log_det_cholesky(posterior.precisions_cholesky, d) - 0.5 * d * np.log(nu)
    log_wishart = -(nu * log_det + nu * d * 0.5 * _LOG_2 + _sum_over_features(gammaln, nu, d))
    wc = posterior.weight_concentration
    if posterior.prior_type == DIRICHLET_PROCESS:
        log_norm_weight = -float(np.sum(betaln(wc[0], wc[1])))
    else:
        log_norm_weight = float(gammaln(np.sum(wc)) - np.sum(gammaln(wc)))
    return float(
        -resp_log_resp
        - np.sum(np.broadcast_to(log_wishart, (k,)))
        - log_norm_weight
        - 0.5 * d * np.sum(np.log(posterior.mean_precision))
    )


EFFECTIVE_WEIGHT = 1e-2


def effective_components(weights: np.ndarray, threshold: float = EFFECTIVE_WEIGHT) -> int:
    """The components a variational fit kept: those whose point-estimate weight is at
    least ``threshold`` (the others explain under 1% of the rows by default)."""
    return int(np.sum(np.asarray(weights) >= threshold))
