"""Kernel density estimation over chunks: data moments, blockwise scoring, sampling.

Layer: engine (dask + numpy), built on :mod:`streammix.core.kde_math`.

* :func:`moment_stats` summarises the reference rows (count, mean, centred
  scatter) in one pass: per-chunk :class:`~streammix.core.kde_math.MomentStats`
  around a shift taken from the first rows, tree-reduced.
* :func:`score` evaluates every (query chunk, reference chunk) pair with the
  pairwise kernel and tree-reduces the partial log-sum-exps of each query chunk
  over the reference chunks (:meth:`ChunkedData.pairwise`): lazily for lazy
  queries (chunked like the query rows), computed for numpy queries.
* :func:`sample` picks reference rows uniformly and adds kernel noise.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from ..core.kde_math import (
    KernelPrep,
    MomentStats,
    combine_partials,
    partial_logsumexp,
    sample_rows,
    whiten,
)
from ..core.kernel import first_nonfinite_row
from ..core.stats import weighted_rows
from ..errors import NonFiniteInput, NonFiniteRow
from .compute import compute
from .data import ChunkedData

# Rows averaged for the shift of the moment pass: any point near the data will do.
SHIFT_ROWS = 1024


def _head(data: ChunkedData, n_rows: int) -> np.ndarray:
    head = data.array[: min(n_rows, data.n_rows), : data.n_features]
    if data.is_lazy:
        (head,) = compute(head, label="kde-shift")
    return np.asarray(head, dtype=np.float64)


def _moments_chunk(
    X: np.ndarray, offset: int, shift: np.ndarray, weights: np.ndarray | None = None
) -> MomentStats:
    bad = first_nonfinite_row(X)
    if bad is not None:
        raise NonFiniteRow(bad)
    X, weights = weighted_rows(X, weights)
    return MomentStats.of_rows(X, shift, weights)


def moment_stats(data: ChunkedData) -> MomentStats:
    """Count, mean and centred scatter of all rows, without loading them together.

    Raises
    ------
    NonFiniteInput
        Naming the first row with NaN or infinity.
    """
    head = _head(data, SHIFT_ROWS)
    bad = first_nonfinite_row(head)
    if bad is not None:
        raise NonFiniteInput(bad)
    shift = head.mean(axis=0)
    stats: MomentStats = data.map_reduce(_moments_chunk, shift, label="kde-moments")
    return stats


def _pair(Q: Any, q_offset: int, R: Any, prep: KernelPrep, weighted: bool) -> np.ndarray:
    """Partial log-sum-exps of one query chunk over one reference chunk (whose last
    column is the rows' weights when ``weighted``)."""
    Q, R = np.asarray(Q), np.asarray(R)
    bad = first_nonfinite_row(Q)
    if bad is not None:
        raise NonFiniteInput(q_offset + bad, first=False)
    weights = None
    if weighted:
        R, weights = weighted_rows(R[:, :-1], R[:, -1])
    return partial_logsumexp(whiten(Q, prep), whiten(R, prep), weights=weights)


def _finish(partial: np.ndarray, prep: KernelPrep, weighted: bool) -> np.ndarray:
    return partial + prep.log_norm


def score(query: ChunkedData, reference: ChunkedData, prep: KernelPrep) -> Any:
    """Log-density of every query row under the KDE of the reference rows.

    Returns
    -------
    ndarray of shape (n_query,) for numpy queries, else a lazy dask array of
    that shape chunked like the query rows.
    """
    return query.pairwise(reference, _pair, combine_partials, _finish, prep, reference.weighted)


def mean_score(query: ChunkedData, reference: ChunkedData, prep: KernelPrep) -> float:
    """Mean log-density of the query rows (computed)."""
    values = score(query, reference, prep)
    if isinstance(values, da.Array):
        (total,) = compute(values.sum(), label="kde-score")
        return float(total) / query.n_rows
    return float(np.mean(values))


def sample(
    reference: ChunkedData, cholesky: np.ndarray, n_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_samples`` rows: reference rows chosen uniformly (in proportion to their
    weights, for weighted reference data) plus kernel noise.

    Only the chosen rows are read (one ``compute`` for lazy reference data, and
    one pass over the weights for weighted ones).

    Returns
    -------
    ndarray of shape (n_samples, n_features), float64
    """
    if reference.weighted:
        picks = _weighted_picks(reference, n_samples, rng)
    else:
        picks = rng.integers(0, reference.n_rows, size=n_samples)
    unique, inverse = np.unique(picks, return_inverse=True)
    rows = reference.take(unique)[inverse]
    return sample_rows(rows, cholesky, rng)


def _chunk_weight(X: np.ndarray, offset: int, weights: np.ndarray) -> dict[int, tuple[int, float]]:
    return {offset: (X.shape[0], float(np.sum(weights, dtype=np.float64)))}


def _merge_dicts(a: dict[int, Any], b: dict[int, Any]) -> dict[int, Any]:
    return {**a, **b}


def _weighted_picks(reference: ChunkedData, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Rows drawn with probability proportional to their weights: a run of rows by its
    total weight (one pass), then a row of it by its weight (reading only those runs)."""
    runs = reference.map_reduce(_chunk_weight, combine=_merge_dicts, label="kde-weights")
    starts = sorted(runs)
    mass = np.array([runs[o][1] for o in starts])
    chosen = rng.choice(len(starts), size=n_samples, p=mass / mass.sum())
    picks = np.empty(n_samples, dtype=np.int64)
    for c in np.unique(chosen):
        start = starts[c]
        rows = np.arange(start, start + runs[start][0])
        _, w = reference.take_weighted(rows)
        assert w is not None
        where = np.flatnonzero(chosen == c)
        picks[where] = start + rng.choice(rows.size, size=where.size, p=w / w.sum())
    return picks
