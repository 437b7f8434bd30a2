"""Exact quantiles of a long 1-D array, out of core.

Layer: engine (dask + numpy).

``numpy.quantile``'s default (linear interpolation between order statistics)
needs two order statistics of the finite values. They are found without
sorting or loading the array: a pass counts values per histogram bin between
known bounds, the bins holding the wanted ranks become the new bounds, and once
a bin holds few enough values, one more pass collects and sorts just those.
Every pass is one tree-reduced computation over the chunks.

With weights (an array aligned with the values), a value of weight ``w``
counts as ``w`` copies of it: the bins hold weight instead of counts, and
order statistics are taken at a cumulated weight, so integer weights give the
quantiles of the values repeated.
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np

from .batches import TASKS_PER_THREAD, parallelism
from .compute import compute

BINS = 1024
COLLECT = 200_000


def _bin_of(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Bin of each value in ``[lo, hi]``; monotone in the value."""
    if hi <= lo:
        return np.zeros(v.size, dtype=np.int64)
    return np.minimum(((v - lo) / (hi - lo) * BINS).astype(np.int64), BINS - 1)


def _weights_of(block: np.ndarray, wblock: np.ndarray | None) -> np.ndarray:
    return np.ones(block.shape) if wblock is None else np.asarray(wblock, dtype=np.float64)


def _summary(block: np.ndarray, wblock: np.ndarray | None = None) -> np.ndarray:
    """Total weight (count), minimum and maximum of the finite values."""
    ok = np.isfinite(block)
    v = block[ok]
    if v.size == 0:
        return np.array([0.0, np.inf, -np.inf])
    return np.array([float(_weights_of(block, wblock)[ok].sum()), float(v.min()), float(v.max())])


def _hist(block: np.ndarray, wblock: np.ndarray | None, lo: float, hi: float) -> np.ndarray:
    """Weight below ``lo``, then the weights of the ``BINS`` bins of ``[lo, hi]``, then
    their counts of values."""
    w = _weights_of(block, wblock)
    ok = np.isfinite(block)
    v, w = block[ok], w[ok]
    inside = (v >= lo) & (v <= hi)
    bins = _bin_of(v[inside], lo, hi)
    weights = np.bincount(bins, weights=w[inside], minlength=BINS)
    counts = np.bincount(bins, minlength=BINS)
    return np.concatenate([[w[v < lo].sum()], weights, counts]).astype(np.float64)


def _in_bin(
    block: np.ndarray, wblock: np.ndarray | None, lo: float, hi: float, b: int
) -> np.ndarray:
    """The values of bin ``b`` and their weights, as rows ``(value, weight)``."""
    w = _weights_of(block, wblock)
    ok = np.isfinite(block) & (block >= lo) & (block <= hi)
    v, w = block[ok], w[ok]
    chosen = _bin_of(v, lo, hi) == b
    return np.stack([v[chosen], w[chosen]], axis=1)


def _bin_range(
    block: np.ndarray, wblock: np.ndarray | None, lo: float, hi: float, b: int
) -> np.ndarray:
    v = _in_bin(block, wblock, lo, hi, b)[:, 0]
    return np.array([v.min(), v.max()]) if v.size else np.array([np.inf, -np.inf])


def _blocks(values: Any) -> da.Array:
    """A dask array of ``values``: itself, a chunked store read chunk by chunk (an
    array with ``chunks``, such as a Zarr array), or an in-memory array; with at most
    about ``TASKS_PER_THREAD`` blocks per worker thread (runs of consecutive chunks
    joined), so that a pass schedules tasks per worker, not per chunk."""
    if isinstance(values, da.Array):
        return _coarse(values)
    chunks = getattr(values, "chunks", None)
    if isinstance(chunks, tuple) and chunks and all(isinstance(c, int) for c in chunks):
        n_chunks = -(-int(values.shape[0]) // chunks[0])
        per_block = -(-n_chunks // (TASKS_PER_THREAD * parallelism()))
        return da.from_array(values, chunks=(chunks[0] * per_block,))
    return da.from_array(np.asarray(values, dtype=np.float64), chunks=1_000_000)


def _coarse(arr: da.Array) -> da.Array:
    """``arr`` with runs of consecutive blocks joined, about ``TASKS_PER_THREAD`` per
    worker thread (itself when it has no more)."""
    sizes = arr.chunks[0]
    per_block = -(-len(sizes) // (TASKS_PER_THREAD * parallelism()))
    if per_block <= 1:
        return arr
    joined = tuple(sum(sizes[i : i + per_block]) for i in range(0, len(sizes), per_block))
    return arr.rechunk((joined,))


def _per_block(
    arr: da.Array, weights: da.Array | None, func: Any, width: int, *args: Any
) -> np.ndarray:
    """``func(block, weight_block, *args)`` (a length-``width`` vector) for every block,
    stacked (``weight_block`` is ``None`` without weights)."""
    parts = da.map_blocks(
        _as_row,
        arr,
        weights,
        func,
        *args,
        dtype=np.float64,
        chunks=((1,) * arr.numblocks[0], (width,)),
        new_axis=1,
    )
    (out,) = compute(parts, label="quantile")
    return np.asarray(out)


def _as_row(block: np.ndarray, wblock: np.ndarray | None, func: Any, *args: Any) -> np.ndarray:
    return np.asarray(func(block, wblock, *args))[None, :]


def _aligned(values: da.Array, weights: Any) -> da.Array | None:
    if weights is None:
        return None
    w = weights if isinstance(weights, da.Array) else da.from_array(np.asarray(weights))
    return w.astype(np.float64).rechunk(values.chunks)  # aligned with the (joined) blocks


def order_statistic(values: Any, rank: float, weights: Any = None) -> float:
    """The finite value of 0-based ``rank`` in sorted order; with ``weights``, the
    first value (in sorted order) at which the cumulated weight exceeds ``rank``."""
    arr = _blocks(values)
    w = _aligned(arr, weights)
    table = _per_block(arr, w, _summary, 3)
    total, lo, hi = float(table[:, 0].sum()), float(table[:, 1].min()), float(table[:, 2].max())
    if not 0 <= rank < total:
        raise ValueError(f"rank {rank} outside [0, {total})")
    while True:
        sums = _per_block(arr, w, _hist, 2 * BINS + 1, lo, hi).sum(axis=0)
        below, bins, counts = sums[0], sums[1 : BINS + 1], sums[BINS + 1 :]
        cum = below + np.cumsum(bins)
        b = min(int(np.searchsorted(cum, rank, side="right")), BINS - 1)
        start = float(cum[b] - bins[b])
        if counts[b] <= COLLECT or hi <= lo:
            parts = da.map_blocks(
                _in_bin,
                arr,
                w,
                lo,
                hi,
                b,
                dtype=np.float64,
                chunks=((np.nan,) * arr.numblocks[0], (2,)),
                new_axis=1,
            )
            (pairs,) = compute(parts, label="quantile")
            pairs = np.asarray(pairs).reshape(-1, 2)
            pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
            at = int(np.searchsorted(start + np.cumsum(pairs[:, 1]), rank, side="right"))
            return float(pairs[min(at, len(pairs) - 1), 0])
        ranges = _per_block(arr, w, _bin_range, 2, lo, hi, b)
        new_lo, new_hi = float(ranges[:, 0].min()), float(ranges[:, 1].max())
        if new_lo == new_hi:
            return new_lo
        lo, hi = new_lo, new_hi


def quantile(values: Any, q: float, weights: Any = None) -> float:
    """``numpy.quantile(values[finite], q)`` (linear interpolation), out of core; with
    ``weights``, that of the values each repeated ``weight`` times (the positions are
    ``q (W - 1)`` in cumulated weight ``W``, for any non-negative weights)."""
    arr = _blocks(values)
    w = _aligned(arr, weights)
    count = float(_per_block(arr, w, _summary, 3)[:, 0].sum())
    if count <= 0:
        raise ValueError("no finite values to take a quantile of")
    pos = q * (count - 1) if count >= 1 else 0.0
    lo_rank = math.floor(pos)
    a = order_statistic(arr, lo_rank, w)
    if pos == lo_rank:
        return a
    b = order_statistic(arr, min(lo_rank + 1, count - 1), w)
    t = pos - lo_rank
    # Interpolate as numpy does (from the nearer end), so results agree bit for bit.
    return float(a + (b - a) * t) if t < 0.5 else float(b - (b - a) * (1.0 - t))
