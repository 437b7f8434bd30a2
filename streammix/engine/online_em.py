"""Epochs of online EM over chunks: one dask graph per epoch, a chain of updates.

Layer: engine (dask + numpy).

An epoch visits the chunks in a given order. Each *unit* of the epoch is one
update (a chunk, or several consecutive chunks when ``batch_rows`` exceeds the
chunk size) or, when ``batch_rows`` is smaller than a chunk, one chunk holding
several sequential updates. For lazy input the whole epoch is one graph in
which unit ``u`` depends on the state left by unit ``u - 1``: chunks are read
once, in parallel ahead of the chain, and only the small state travels between
tasks. Within a task the E-step of a chunk runs on all the task's threads,
over a fixed partition of the rows, so results do not depend on the number of
threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from dask.delayed import delayed

from ..core.kernel import BLOCK_ROWS, estep
from ..core.stats import SufficientStats
from ..core.stepwise import OnlineSettings, OnlineState, update
from .compute import compute, single_threaded_blas
from .data import ChunkedData, _on_chunk
from .reduce import tree_reduce, tree_reduce_delayed

# Rows per part of a chunk's E-step: the unit of intra-task parallelism.
PART_ROWS = 4 * BLOCK_ROWS


def _threads() -> int:
    """Threads a task may use: the worker's when on a distributed worker."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def chunk_stats(X: np.ndarray, state: OnlineState) -> SufficientStats:
    """Statistics of ``X`` under the state's parameters, on all available threads."""
    prep = state.params.prepare(state.stats.frame, X.dtype)
    parts = [X[i : i + PART_ROWS] for i in range(0, X.shape[0], PART_ROWS)]
    threads = min(_threads(), len(parts))
    with single_threaded_blas():
        if threads <= 1:
            stats = [estep(p, (prep,))[0] for p in parts]
        else:
            with ThreadPoolExecutor(threads) as pool:
                stats = list(pool.map(lambda p: estep(p, (prep,))[0], parts))
    return tree_reduce(stats, _add)


def _add(a: SufficientStats, b: SufficientStats) -> SufficientStats:
    return a + b


def _stats_task(X: np.ndarray, offset: int, state: OnlineState) -> SufficientStats:
    return chunk_stats(X, state)


def _update_task(
    state: OnlineState, batch: SufficientStats, settings: OnlineSettings
) -> OnlineState:
    return update(state, batch, settings)


def _chunk_updates(
    X: np.ndarray,
    offset: int,
    state: OnlineState,
    settings: OnlineSettings,
    batch_rows: int,
    seed: int | None,
) -> OnlineState:
    """Sequential updates over one chunk, ``batch_rows`` rows at a time."""
    if seed is not None:
        X = X[np.random.default_rng(seed).permutation(X.shape[0])]
    for start in range(0, X.shape[0], batch_rows):
        part = X[start : start + batch_rows]
        state = update(state, chunk_stats(part, state), settings)
    return state


def plan_units(
    row_chunks: Sequence[int], order: Sequence[int], batch_rows: int | None
) -> list[tuple[int, ...]]:
    """Group the chunks of an epoch (in ``order``) into units of one update each.

    With ``batch_rows`` of ``None`` every chunk is a unit; with more rows than a
    chunk holds, consecutive chunks are grouped until the unit has at least
    ``batch_rows`` rows; with fewer, every chunk is a unit of several updates.
    """
    if batch_rows is None or all(batch_rows <= row_chunks[c] for c in order):
        return [(c,) for c in order]
    units: list[tuple[int, ...]] = []
    current: list[int] = []
    rows = 0
    for c in order:
        if row_chunks[c] >= batch_rows and not current:
            units.append((c,))
            continue
        current.append(c)
        rows += row_chunks[c]
        if rows >= batch_rows:
            units.append(tuple(current))
            current, rows = [], 0
    if current:
        units.append(tuple(current))
    return units


def run_epoch(
    data: ChunkedData,
    state: OnlineState,
    settings: OnlineSettings,
    order: Sequence[int],
    batch_rows: int | None,
    seeds: Sequence[int] | None = None,
) -> OnlineState:
    """The state after visiting the chunks in ``order`` once.

    ``seeds[c]`` shuffles the rows of chunk ``c`` before its sequential updates
    (used only when a chunk holds several updates).
    """
    units = plan_units(data.row_chunks, order, batch_rows)
    offsets = data.offsets
    if data.is_lazy:
        blocks = data.array.to_delayed().ravel()
        node: Any = delayed(state, traverse=False)
        shared = delayed(settings, traverse=False)
        for unit in units:
            node = _unit_graph(
                blocks, offsets, data.row_chunks, unit, node, shared, batch_rows, seeds
            )
        (final,) = compute(node, label="online epoch")
        return final
    for unit in units:
        chunks = [(data.array[offsets[c] : offsets[c] + data.row_chunks[c]], c) for c in unit]
        if len(unit) == 1 and batch_rows is not None and batch_rows < data.row_chunks[unit[0]]:
            X, c = chunks[0]
            seed = None if seeds is None else seeds[c]
            state = _on_chunk(_chunk_updates, X, offsets[c], state, settings, batch_rows, seed)
            continue
        parts = [_on_chunk(_stats_task, X, offsets[c], state) for X, c in chunks]
        state = update(state, tree_reduce(parts, _add), settings)
    return state


def _unit_graph(
    blocks: Any,
    offsets: Sequence[int],
    row_chunks: Sequence[int],
    unit: tuple[int, ...],
    state: Any,
    settings: Any,
    batch_rows: int | None,
    seeds: Sequence[int] | None,
) -> Any:
    if len(unit) == 1 and batch_rows is not None and batch_rows < row_chunks[unit[0]]:
        c = unit[0]
        seed = None if seeds is None else seeds[c]
        return delayed(_on_chunk, pure=True)(
            _chunk_updates, blocks[c], offsets[c], state, settings, batch_rows, seed
        )
    parts = [delayed(_on_chunk, pure=True)(_stats_task, blocks[c], offsets[c], state) for c in unit]
    total = tree_reduce_delayed(parts, _add)
    return delayed(_update_task, pure=True)(state, total, settings)
