"""The E-step with missing values (NaN entries), after Ghahramani & Jordan (1994).

Layer: math (numpy/scipy only).

For a row with observed entries ``o`` and missing entries ``u``, component ``k``
explains the row with the density of its observed marginal, so the
responsibilities are ``r_k ∝ w_k N(y_o | mu_k,o, S_k,oo)``. The expected
complete-data statistics under component ``k`` fill the missing entries with the
conditional mean ``m = mu_u + S_uo S_oo^-1 (y_o - mu_o)`` and add the
conditional covariance ``C = S_uu - S_uo S_oo^-1 S_ou`` to the second moment::

    E[y | o, k]       = y with y_u := m
    E[y y^T | o, k]   = E[y] E[y]^T + (C in the u x u block)

Complete rows go through the fast kernel of :mod:`streammix.core.kernel`; rows
with missing entries are grouped by pattern, with one factorisation per
(pattern, component). Everything is in the fit's frame, in float64; the
log-likelihood is that of the observed entries, in original units.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ..errors import InfiniteEntry
from .conditional import missing_patterns, split_component
from .frame import Frame
from .kernel import estep
from .params import MixtureParams
from .stats import SufficientStats

# What NaN in the data means to a fit: an error naming the first such row, or missing
# values handled by this module.
MISSING_POLICIES = ("error", "em")


def estep_missing(
    X: np.ndarray, params: MixtureParams, frame: Frame, weights: np.ndarray | None = None
) -> SufficientStats:
    """Expected sufficient statistics of rows with NaN entries.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        NaN marks a missing entry.
    params : MixtureParams
    frame : Frame
    weights : ndarray of shape (n_rows,), optional
        Positive row weights (each row counts ``weight`` times).

    Raises
    ------
    InfiniteEntry
    """
    X = np.asarray(X, dtype=np.float64)
    inf_rows = np.flatnonzero(np.isinf(X).any(axis=1))
    if inf_rows.size:
        raise InfiniteEntry(int(inf_rows[0]))
    missing = np.isnan(X)
    incomplete = missing.any(axis=1)
    family = params.family
    k, d = params.n_components, params.n_features
    # Statistics about each component's mean, as the complete rows' E-step takes them.
    means = (params.means - frame.shift) / frame.scale
    total = SufficientStats.zero(k, d, family.s2_shapes(k, d), frame, means)
    if not incomplete.all():
        (complete,) = estep(
            X[~incomplete],
            (params.prepare(frame, np.float64),),
            weights=None if weights is None else weights[~incomplete],
        )
        total = total + complete
    if not incomplete.any():
        return total

    rows_all = np.flatnonzero(incomplete)
    Y = (X[rows_all] - frame.shift) / frame.scale
    dense = params.dense_covariances() / frame.scale**2
    with np.errstate(divide="ignore"):
        log_w = np.log(params.weights)
    s0 = np.zeros(k)
    s1 = np.zeros((k, d))
    m2 = np.zeros((k, d, d))
    loglik = 0.0
    for rows, obs, miss in missing_patterns(missing[rows_all]):
        Yo = Y[np.ix_(rows, obs)]
        n = rows.size
        lp = np.empty((n, k))
        filled = np.empty((k, n, d))
        cond_cov = np.empty((k, miss.size, miss.size))
        for j in range(k):
            if obs.size == 0:  # nothing observed: the prior of the component
                lp[:, j] = log_w[j]
                filled[j][:] = means[j]
                cond_cov[j] = dense[j]
                continue
            part = split_component(dense[j], means[j], log_w[j], obs, miss, j)
            z = part.whiten(Yo)
            lp[:, j] = part.log_density(z)
            filled[j][:, obs] = Yo
            filled[j][:, miss] = part.mean(z)
            cond_cov[j] = part.covariance()
        norm = logsumexp(lp, axis=1)
        w = np.ones(n) if weights is None else weights[rows_all[rows]]
        loglik += float(norm @ w) - float(w.sum()) * obs.size * frame.log_scale
        resp = np.exp(lp - norm[:, None]) * w[:, None]
        s0 += resp.sum(axis=0)
        for j in range(k):
            r = resp[:, j]
            centred = filled[j] - means[j]
            s1[j] += r @ centred
            m2[j] += (centred * r[:, None]).T @ centred
            m2[j][np.ix_(miss, miss)] += r.sum() * cond_cov[j]
    s2 = family.s2_from_dense(m2)
    count = float(rows_all.size) if weights is None else float(weights[rows_all].sum())
    partial = SufficientStats(count, loglik, s0, s1, s2, frame, means)
    return total + partial
