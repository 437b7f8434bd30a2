"""Exact quantiles of a long 1-D array, out of core.

Layer: engine (dask + numpy).

``numpy.quantile``'s default (linear interpolation between order statistics)
needs two order statistics of the finite values. They are found without
sorting or loading the array: a pass counts values per histogram bin between
known bounds, the bins holding the wanted ranks become the new bounds, and once
a bin holds few enough values, one more pass collects and sorts just those.
Every pass is one tree-reduced computation over the chunks.
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np

from .compute import compute

BINS = 1024
COLLECT = 200_000


def _finite(block: np.ndarray) -> np.ndarray:
    return block[np.isfinite(block)]


def _bin_of(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Bin of each value in ``[lo, hi]``; monotone in the value."""
    if hi <= lo:
        return np.zeros(v.size, dtype=np.int64)
    return np.minimum(((v - lo) / (hi - lo) * BINS).astype(np.int64), BINS - 1)


def _summary(block: np.ndarray) -> np.ndarray:
    v = _finite(block)
    if v.size == 0:
        return np.array([0.0, np.inf, -np.inf])
    return np.array([float(v.size), float(v.min()), float(v.max())])


def _hist(block: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Count of values below ``lo``, then counts of the ``BINS`` bins of ``[lo, hi]``."""
    v = _finite(block)
    inside = v[(v >= lo) & (v <= hi)]
    counts = np.bincount(_bin_of(inside, lo, hi), minlength=BINS)
    return np.concatenate([[np.count_nonzero(v < lo)], counts]).astype(np.float64)


def _in_bin(block: np.ndarray, lo: float, hi: float, b: int) -> np.ndarray:
    v = _finite(block)
    v = v[(v >= lo) & (v <= hi)]
    return v[_bin_of(v, lo, hi) == b]


def _bin_range(block: np.ndarray, lo: float, hi: float, b: int) -> np.ndarray:
    v = _in_bin(block, lo, hi, b)
    return np.array([v.min(), v.max()]) if v.size else np.array([np.inf, -np.inf])


def _blocks(values: Any) -> da.Array:
    """A dask array of ``values``: itself, a chunked store read chunk by chunk (an
    array with ``chunks``, such as a Zarr array), or an in-memory array."""
    if isinstance(values, da.Array):
        return values
    chunks = getattr(values, "chunks", None)
    if isinstance(chunks, tuple) and chunks and all(isinstance(c, int) for c in chunks):
        return da.from_array(values, chunks=chunks)
    return da.from_array(np.asarray(values, dtype=np.float64), chunks=1_000_000)


def _per_block(arr: da.Array, func: Any, width: int, *args: Any) -> np.ndarray:
    """``func(block, *args)`` (a length-``width`` vector) for every block, stacked."""
    parts = da.map_blocks(
        _as_row,
        arr,
        func,
        *args,
        dtype=np.float64,
        chunks=((1,) * arr.numblocks[0], (width,)),
        new_axis=1,
    )
    (out,) = compute(parts, label="quantile")
    return np.asarray(out)


def _as_row(block: np.ndarray, func: Any, *args: Any) -> np.ndarray:
    return np.asarray(func(block, *args))[None, :]


def order_statistic(values: Any, rank: int) -> float:
    """The finite value of 0-based ``rank`` in sorted order."""
    arr = _blocks(values)
    table = _per_block(arr, _summary, 3)
    count, lo, hi = int(table[:, 0].sum()), float(table[:, 1].min()), float(table[:, 2].max())
    if not 0 <= rank < count:
        raise ValueError(f"rank {rank} outside 0..{count - 1}")
    while True:
        counts = _per_block(arr, _hist, BINS + 1, lo, hi).sum(axis=0)
        bins = counts[1:]
        cum = counts[0] + np.cumsum(bins)
        b = int(np.searchsorted(cum, rank + 1))
        start = int(cum[b] - bins[b])
        if bins[b] <= COLLECT or hi <= lo:
            parts = da.map_blocks(
                _in_bin, arr, lo, hi, b, dtype=np.float64, chunks=((np.nan,) * arr.numblocks[0],)
            )
            (vals,) = compute(parts, label="quantile")
            return float(np.sort(np.asarray(vals))[rank - start])
        ranges = _per_block(arr, _bin_range, 2, lo, hi, b)
        new_lo, new_hi = float(ranges[:, 0].min()), float(ranges[:, 1].max())
        if new_lo == new_hi:
            return new_lo
        lo, hi = new_lo, new_hi


def quantile(values: Any, q: float) -> float:
    """``numpy.quantile(values[finite], q)`` (linear interpolation), out of core."""
    arr = _blocks(values)
    count = int(_per_block(arr, _summary, 3)[:, 0].sum())
    if count == 0:
        raise ValueError("no finite values to take a quantile of")
    pos = q * (count - 1)
    lo_rank = math.floor(pos)
    a = order_statistic(arr, lo_rank)
    if pos == lo_rank:
        return a
    b = order_statistic(arr, min(lo_rank + 1, count - 1))
    t = pos - lo_rank
    # Interpolate as numpy does (from the nearer end), so results agree bit for bit.
    return float(a + (b - a) * t) if t < 0.5 else float(b - (b - a) * (1.0 - t))
