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
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..core.families import Prepared
from ..core.frame import Frame
from ..core.kernel import estep, score_rows
from ..core.mstep import m_step
from ..core.params import MixtureParams
from ..core.stats import SufficientStats
from . import quantile
from .data import ChunkedData
from .init import add_tuples


def _kept_estep(
    X: np.ndarray, offset: int, scorer: Prepared, prep: Prepared, threshold: float
) -> tuple[SufficientStats, ...]:
    """Statistics (under ``prep``) of the rows whose log-likelihood under ``scorer``
    is at least ``threshold``."""
    keep = score_rows(X, scorer) >= threshold
    return estep(X[keep], (prep,))


def _scores_chunk(X: np.ndarray, offset: int, scorer: Prepared) -> np.ndarray:
    return score_rows(X, scorer)


def kept_threshold(data: ChunkedData, scorer: Prepared, trim: float) -> float:
    """The log-likelihood of the ``ceil((1 - trim) n)``-th most likely row, computed
    exactly as the kept rows are chosen (same kernel constants, same frame)."""
    h = math.ceil((1.0 - trim) * data.n_rows)
    values = data.map_rows(_scores_chunk, scorer)
    rank = data.n_rows - h  # 0-based rank in ascending order
    if isinstance(values, np.ndarray):
        return float(np.partition(values, rank)[rank])
    return quantile.order_statistic(values.persist(), rank)


def trimmed_fit(
    data: ChunkedData,
    params: MixtureParams,
    frame: Frame,
    reg_covar: float,
    trim: float,
    max_steps: int = 50,
    on_degenerate: str = "error",
    on_step: Callable[[int, MixtureParams], None] | None = None,
) -> tuple[MixtureParams, int]:
    """Trimmed refits from ``params`` until the parameters stop changing.

    Returns the final parameters and the number of steps taken.
    """
    steps = 0
    for steps in range(1, max_steps + 1):
        scorer = params.prepare(frame, data.dtype)
        threshold = kept_threshold(data, scorer, trim)
        (stats,) = data.map_reduce(
            _kept_estep, scorer, scorer, threshold, combine=add_tuples, label="trim"
        )
        new = m_step(stats, params.family, reg_covar, on_degenerate)
        if on_step is not None:
            on_step(steps, new)
        if new.allclose(params, rtol=1e-12, atol=1e-300):
            return new, steps
        params = new
    return params, steps
