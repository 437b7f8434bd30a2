"""The M-step: sufficient statistics in, parameters out, with the degeneracy policy.

Layer: math (numpy/scipy only).

Policy for a degenerate component (``on_degenerate``):

* A component is *degenerate* when its covariance, after adding ``reg_covar``,
  is not positive definite (it collapsed onto too few distinct rows, or onto a
  lower-dimensional subspace).
* A component is *empty* when its weight falls below ``EMPTY_WEIGHT`` (it
  explains no data). As in scikit-learn, it is kept, with that weight and the
  ``reg_covar`` covariance its statistics give, unless re-seeding was asked for.
* ``"error"`` (default) raises :class:`~streammix.errors.DegenerateComponentError`
  naming the degenerate components and the remedies.
* ``"reseed"`` replaces each degenerate or empty component by half of the
  heaviest healthy component, split along that component's principal axis, and
  continues; a covariance shared by all components (``family.shared_covariance``)
  that is singular cannot be reseeded and raises.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import CholeskyFailure, DegenerateComponentError
from .families import CovarianceFamily
from .params import MixtureParams
from .stats import SufficientStats

logger = logging.getLogger("streammix")

EMPTY_WEIGHT = 1e-10
COUNT_GUARD = 10 * np.finfo(np.float64).eps  # added to every count, as scikit-learn does

DEGENERATE_POLICIES = ("error", "reseed")


def degenerate_message(components: tuple[int, ...], family: CovarianceFamily) -> str:
    which = family.describe_degenerate(components)
    return (
        f"Fitting the mixture model failed because {which} ended with an ill-defined "
        "covariance (collapsed onto a single row, a few identical rows or a subspace, or "
        "left empty). Try fewer components, a larger reg_covar, scaled input data, or "
        "on_degenerate='reseed'."
    )


def _frame_params(
    stats: SufficientStats, family: CovarianceFamily, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and covariances in frame units (statistics about each
    component's reference: the family's means are offsets from it)."""
    nk = stats.s0 + COUNT_GUARD
    weights = nk / nk.sum()
    reg = reg_covar / stats.frame.scale**2
    offsets, cov = family.mstep_frame(nk, stats.s1, stats.s2, reg)
    means = offsets if stats.refs is None else stats.refs + offsets
    return weights, means, cov


def _to_original(
    family: CovarianceFamily,
    stats: SufficientStats,
    weights: np.ndarray,
    means: np.ndarray,
    cov: np.ndarray,
) -> MixtureParams:
    """Frame-unit parameters to original units; raises ``CholeskyFailure``."""
    frame = stats.frame
    prec_chol = family.precision_cholesky(cov) / frame.scale
    # The frame's scale is a power of two: the family rescales its layout exactly (a
    # low-rank factor by the scale, variances by its square).
    original = family.rescaled(cov, np.full(means.shape[1], frame.scale))
    return MixtureParams(family, weights, frame.shift + frame.scale * means, original, prec_chol)


def split_into(
    family: CovarianceFamily,
    weights: np.ndarray,
    means: np.ndarray,
    cov: np.ndarray,
    bad: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and covariances with each ``bad`` component replaced by half of
    the heaviest healthy one, split along its principal axis (the re-seeding policy).

    ``family`` must give each component its own covariance (not
    ``family.shared_covariance``); the inputs are not modified.
    """
    weights, means, cov = weights.copy(), means.copy(), cov.copy()
    k, d = means.shape
    dense = family.dense(cov, k, d)
    healthy = [i for i in range(k) if i not in bad]
    for b in bad:
        h = max(healthy, key=lambda i: weights[i])
        vals, vecs = np.linalg.eigh(dense[h])
        step = np.sqrt(max(vals[-1], 0.0)) * vecs[:, -1]
        means[b] = means[h] + step
        means[h] = means[h] - step
        weights[b] = weights[h] = weights[h] / 2.0
        cov[b] = cov[h]
        healthy.append(b)
    return weights / weights.sum(), means, cov


def m_step(
    stats: SufficientStats,
    family: CovarianceFamily,
    reg_covar: float,
    on_degenerate: str = "error",
) -> MixtureParams:
    """New parameters from statistics.

    Parameters
    ----------
    stats : SufficientStats
    family : CovarianceFamily
    reg_covar : float
        Added to the diagonal of every covariance, in original units.
    on_degenerate : {"error", "reseed"}

    Raises
    ------
    DegenerateComponentError
    """
    weights, means, cov = _frame_params(stats, family, reg_covar)
    reseeding = on_degenerate == "reseed" and not family.shared_covariance
    # An empty component's own covariance is noise; a shared one is still estimated
    # from every row.
    empty = tuple(int(k) for k in np.flatnonzero(weights < EMPTY_WEIGHT)) if reseeding else ()
    try:
        if empty:
            raise CholeskyFailure(empty)
        return _to_original(family, stats, weights, means, cov)
    except CholeskyFailure as failure:
        bad = failure.components
    # Re-seeding copies a healthy component's own covariance; a shared covariance
    # has none per component to copy.
    if on_degenerate != "reseed" or family.shared_covariance or len(bad) >= len(weights):
        raise DegenerateComponentError(degenerate_message(bad, family))
    logger.warning("re-seeding degenerate component(s) %s by splitting the heaviest", bad)
    weights, means, cov = split_into(family, weights, means, cov, bad)
    try:
        return _to_original(family, stats, weights, means, cov)
    except CholeskyFailure as failure:
        raise DegenerateComponentError(degenerate_message(failure.components, family)) from None
