"""Trimmed maximum likelihood over chunks: refit on the most likely rows.

Layer: engine (dask + numpy).

Each step scores every row under the current parameters, finds the log-
likelihood of the ``h``-th most likely row (``h = ceil((1 - trim) n)``, an exact
order statistic out of core), and runs an EM step on the rows at least that
likely (ties kept), so that the rows the model explains worst (anomalies in
contaminated training data) do not shape it. With one component each step is
a concentration step of FAST-MCD (Rousseeuw & Van Driessen 1999): the
determinant of the covariance never increases, and the steps stop when the
kept rows, hence the parameters, no longer change.

With several components a component may still settle on a tight group of
anomalies that survives trimming. A minimum component mass guards against it:
after a step, the lightest component whose weight (its share of the kept rows)
is below ``min_weight`` is removed and the others carry on, so every component
left explains at least that share of the rows the model is fitted to. Such EM
steps approach their fixed point without reaching it exactly, so ``tol`` stops
them when the mean log-likelihood of the kept rows changes by less than it.

Every step is two passes over the chunks (the order statistic, then the
statistics of the kept rows), so a fit reads the data at most ``2 max_steps``
times. Rows held in memory are scored once per step: the second pass keeps
rows by the scores of the first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import dask
import dask.array as da
import numpy as np

from ..core.families import Prepared
from ..core.kernel import estep, score_rows
from ..core.mstep import m_step
from ..core.params import MixtureParams
from ..core.stats import SufficientStats, weighted_rows
from . import quantile
from .compute import compute
from .data import ChunkedData
from .init import add_tuples, params_frame


def _kept_estep(
    X: np.ndarray,
    offset: int,
    scorer: Prepared,
    prep: Prepared,
    threshold: float,
    weights: np.ndarray | None = None,
) -> tuple[SufficientStats, ...]:
    """Statistics (under ``prep``) of the rows whose log-likelihood under ``scorer``
    is at least ``threshold``."""
    return _estep_of(X, score_rows(X, scorer) >= threshold, prep, weights)


def _scored_kept_estep(
    X: np.ndarray,
    offset: int,
    scores: np.ndarray,
    prep: Prepared,
    threshold: float,
    weights: np.ndarray | None = None,
) -> tuple[SufficientStats, ...]:
    """:func:`_kept_estep` for rows held in memory, whose log-likelihoods
    ``scores`` (all rows') the threshold came from: not computed again."""
    return _estep_of(X, scores[offset : offset + X.shape[0]] >= threshold, prep, weights)


def _estep_of(
    X: np.ndarray, keep: np.ndarray, prep: Prepared, weights: np.ndarray | None
) -> tuple[SufficientStats, ...]:
    X, w = weighted_rows(X[keep], None if weights is None else weights[keep])
    return estep(X, (prep,), weights=w)


def _scores_chunk(X: np.ndarray, offset: int, scorer: Prepared) -> np.ndarray:
    return score_rows(X, scorer)


def kept_threshold(data: ChunkedData, values: np.ndarray | da.Array, trim: float) -> float:
    """The log-likelihood of the ``ceil((1 - trim) n)``-th most likely row, from every
    row's log-likelihood ``values`` (computed exactly as the kept rows are chosen:
    same kernel constants, same frame). With weights, ``n`` is their sum and a row
    counts its weight in the ranks."""
    weights = data.weight_column(lazy=True)
    if isinstance(values, da.Array):
        # held for the passes of the order statistic, rows read once for both
        values, weights = dask.persist(values, weights)
    if weights is None:
        total = float(data.n_rows)
    elif isinstance(weights, np.ndarray):
        total = float(weights.sum())
    else:
        (total,) = compute(weights.sum(), label="trim")
    rank = total - math.ceil((1.0 - trim) * total)  # 0-based rank in ascending order
    if not isinstance(values, np.ndarray):
        return quantile.order_statistic(values, rank, weights)
    if weights is None:
        return float(np.partition(values, int(rank))[int(rank)])
    order = np.argsort(values, kind="stable")
    at = int(np.searchsorted(np.cumsum(weights[order]), rank, side="right"))
    return float(values[order[min(at, order.size - 1)]])


def without_light_component(params: MixtureParams, min_weight: float) -> MixtureParams | None:
    """``params`` less its lightest component when that one weighs less than
    ``min_weight`` (the other weights renormalised); ``None`` when none does or only
    one component is left."""
    k = int(np.argmin(params.weights))
    if params.n_components < 2 or params.weights[k] >= min_weight:
        return None
    keep = np.arange(params.n_components) != k
    weights = params.weights[keep] / params.weights[keep].sum()
    covariances = params.covariances
    if not params.family.shared_covariance:
        covariances = covariances[keep]
    return MixtureParams.from_covariances(params.family, weights, params.means[keep], covariances)


def trimmed_fit(
    data: ChunkedData,
    params: MixtureParams,
    reg_covar: float,
    trim: float,
    max_steps: int = 50,
    on_degenerate: str = "error",
    on_step: Callable[[int, MixtureParams], None] | None = None,
    *,
    min_weight: float = 0.0,
    tol: float = 0.0,
) -> tuple[MixtureParams, int, bool]:
    """Trimmed refits from ``params`` until the parameters stop changing.

    Parameters
    ----------
    data : ChunkedData
    params : MixtureParams
        The starting point.
    reg_covar : float
    trim : float in [0, 0.5]
        Share of least likely rows left out of each step.
    max_steps : int
    on_degenerate : {"error", "reseed"}
    on_step : callable, optional
        Called with the step number and the new parameters after every step.
    min_weight : float, default=0
        Components lighter than this are removed, one per step.
    tol : float, default=0
        Stop when the mean log-likelihood of the kept rows changes by at most
        ``tol`` between steps (``0``: only when the parameters stop changing).

    Returns
    -------
    params : MixtureParams
    steps : int
        Steps taken.
    converged : bool
    """
    frame = params_frame(params, data.dtype)
    previous = -math.inf
    for step in range(1, max_steps + 1):
        scorer = params.prepare(frame, data.dtype)
        values = data.map_rows(_scores_chunk, scorer)
        threshold = kept_threshold(data, values, trim)
        if isinstance(values, np.ndarray):  # rows in memory: their scores are at hand
            (stats,) = data.map_reduce(
                _scored_kept_estep, values, scorer, threshold, combine=add_tuples, label="trim"
            )
        else:
            (stats,) = data.map_reduce(
                _kept_estep, scorer, scorer, threshold, combine=add_tuples, label="trim"
            )
        new = m_step(stats, params.family, reg_covar, on_degenerate)
        lighter = without_light_component(new, min_weight)
        if lighter is not None:
            # A changed model: a new frame, and the objective starts again.
            params, previous = lighter, -math.inf
            frame = params_frame(params, data.dtype)
            if on_step is not None:
                on_step(step, params)
            continue
        if on_step is not None:
            on_step(step, new)
        objective = stats.loglik / max(stats.n, 1.0)
        if new.allclose(params, rtol=1e-12, atol=1e-300) or abs(objective - previous) <= tol:
            return new, step, True
        params, previous = new, objective
    return params, max_steps, False
