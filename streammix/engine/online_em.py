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
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.families import get_family
from ..core.frame import Frame
from ..core.kernel import BLOCK_ROWS, estep, score_rows_masked
from ..core.params import MixtureParams
from ..core.stats import SufficientStats, weighted_rows
from ..core.stepwise import OnlineSettings, OnlineState, update
from ..errors import NonFiniteRow, UnscorableRow
from .compute import single_threaded_blas
from .data import ChunkedData, Unit
from .reduce import tree_reduce

# Rows per part of a chunk's E-step: the unit of intra-task parallelism.
PART_ROWS = 4 * BLOCK_ROWS


def _threads() -> int:
    """Threads a task may use: the worker's when on a distributed worker."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def chunk_stats(
    X: np.ndarray,
    state: OnlineState,
    row_loglik: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> SufficientStats:
    """Statistics of ``X`` under the state's parameters, on all available threads
    (and, into ``row_loglik``, each row's log-likelihood under them); with
    ``weights`` (positive), each row counts its weight."""
    prep = state.params.prepare(state.stats.frame, X.dtype)
    starts = range(0, X.shape[0], PART_ROWS)

    def part(i: int) -> SufficientStats:
        out = None if row_loglik is None else row_loglik[i : i + PART_ROWS]
        w = None if weights is None else weights[i : i + PART_ROWS]
        return estep(X[i : i + PART_ROWS], (prep,), row_loglik=out, weights=w)[0]

    threads = min(_threads(), len(starts))
    with single_threaded_blas():
        if threads <= 1:
            stats = [part(i) for i in starts]
        else:
            with ThreadPoolExecutor(threads) as pool:
                stats = list(pool.map(part, starts))
    return tree_reduce(stats, _add)


def score_and_update(
    X: np.ndarray, state: OnlineState, settings: OnlineSettings
) -> tuple[np.ndarray, OnlineState]:
    """Each row's log-likelihood under the parameters scored with (``state.current``),
    then the state after one update with the rows that could be scored (the others,
    NaN or overflowing, get NaN and are not learned). Without averaging, one pass
    gives both."""
    ll = np.full(X.shape[0], np.nan)
    if state.averaged is None:
        try:
            stats = chunk_stats(X, state, ll)
            return ll, update(state, stats, settings)
        except (NonFiniteRow, UnscorableRow):
            pass
    prep = state.current.prepare(state.stats.frame, X.dtype)
    ll = score_rows_masked(X, prep)[0]
    ok = np.isfinite(ll)
    if not ok.any():
        return ll, state
    return ll, update(state, chunk_stats(X[ok] if not ok.all() else X, state), settings)


def _add(a: SufficientStats, b: SufficientStats) -> SufficientStats:
    return a + b


def _chunk_updates(
    X: np.ndarray,
    offset: int,
    state: OnlineState,
    settings: OnlineSettings,
    batch_rows: int,
    seed: int | None,
    weights: np.ndarray | None = None,
) -> OnlineState:
    """Sequential updates over one chunk, ``batch_rows`` rows at a time (rows of
    weight zero taken out first)."""
    X, weights = weighted_rows(X, weights)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(X.shape[0])
        X = X[order]
        weights = None if weights is None else weights[order]
    for start in range(0, X.shape[0], batch_rows):
        part = X[start : start + batch_rows]
        w = None if weights is None else weights[start : start + batch_rows]
        state = update(state, chunk_stats(part, state, weights=w), settings)
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


def _take(state: OnlineState, new: OnlineState, settings: OnlineSettings) -> OnlineState:
    """The state a unit of sequential updates inside one chunk produced."""
    return new


def _stats_of(
    X: np.ndarray,
    offset: int,
    state: OnlineState,
    settings: OnlineSettings,
    weights: np.ndarray | None = None,
) -> SufficientStats:
    X, weights = weighted_rows(X, weights)
    return chunk_stats(X, state, weights=weights)


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
    plan: list[Unit] = []
    for unit in plan_units(data.row_chunks, order, batch_rows):
        c = unit[0]
        if len(unit) == 1 and batch_rows is not None and batch_rows < data.row_chunks[c]:
            extra = (batch_rows, None if seeds is None else seeds[c])
            plan.append((unit, _chunk_updates, _take, extra))
        else:
            plan.append((unit, _stats_of, update, ()))
    return data.fold(plan, state, _add, settings, label="online epoch")


# ---------------------------------------------------------------- state as files
def state_to_files(state: OnlineState) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The running state as file contents: counters (JSON) and arrays. The parameters
    scored with (``state.current``) are not among them: they are the model's own."""
    info = {
        "n_updates": state.n_updates,
        "n_rows": state.n_rows,
        "warm": state.warm,
        "n_averaged": state.n_averaged,
        "n_reseeded": state.n_reseeded,
        "stats_n": state.stats.n,
        "stats_loglik": state.stats.loglik,
        "n_s2": len(state.stats.s2),
        "frame_scale": state.stats.frame.scale,
        "averaged": state.averaged is not None,
        "loglik_sum": state.loglik_sum,
    }
    arrays = {
        "state_s0": state.stats.s0,
        "state_s1": state.stats.s1,
        "state_frame_shift": state.stats.frame.shift,
        **{f"state_s2_{i}": a for i, a in enumerate(state.stats.s2)},
    }
    if state.stats.refs is not None:
        arrays["state_refs"] = state.stats.refs
    if state.averaged is not None:
        p = state.params
        arrays.update(
            {
                "state_weights": p.weights,
                "state_means": p.means,
                "state_covariances": p.covariances,
                "state_precisions_cholesky": p.precisions_cholesky,
            }
        )
    return info, arrays


def state_from_files(
    info: dict[str, Any], arrays: dict[str, np.ndarray], current: MixtureParams
) -> OnlineState:
    """The inverse of :func:`state_to_files`, given the parameters scored with.

    Raises ``ValueError`` when the statistics do not fit the parameters.
    """
    frame = Frame(arrays["state_frame_shift"], float(info["frame_scale"]))
    stats = SufficientStats(
        float(info["stats_n"]),
        float(info["stats_loglik"]),
        arrays["state_s0"],
        arrays["state_s1"],
        tuple(arrays[f"state_s2_{i}"] for i in range(int(info["n_s2"]))),
        frame,
        arrays.get("state_refs"),  # absent from models saved before references existed
    )
    family = current.family
    k, d = current.n_components, current.n_features
    if (
        stats.s0.shape != (k,)
        or stats.s1.shape != (k, d)
        or tuple(a.shape for a in stats.s2) != family.s2_shapes(k, d)
        or (stats.refs is not None and stats.refs.shape != (k, d))
    ):
        raise ValueError("running statistics have the wrong shapes")
    averaged: MixtureParams | None = None
    params = current
    if info.get("averaged"):
        params = MixtureParams(
            family,
            arrays["state_weights"],
            arrays["state_means"],
            arrays["state_covariances"],
            arrays["state_precisions_cholesky"],
        )
        averaged = current
    return OnlineState(
        stats=stats,
        params=params,
        n_updates=int(info["n_updates"]),
        n_rows=int(info["n_rows"]),
        warm=bool(info["warm"]),
        averaged=averaged,
        n_averaged=int(info["n_averaged"]),
        n_reseeded=int(info["n_reseeded"]),
        loglik_sum=float(info["loglik_sum"]),
    )


@dataclass(frozen=True, slots=True, eq=False)
class OnlineCheckpoint:
    """Where an online fit stands after an epoch: the running state and every epoch's
    lower bound, enough to resume and end exactly where an uninterrupted fit would."""

    state: OnlineState
    lower_bounds: tuple[float, ...]

    def to_files(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        info, arrays = state_to_files(self.state)
        current = self.state.current
        arrays.update(
            {
                "weights": current.weights,
                "means": current.means,
                "covariances": current.covariances,
                "precisions_cholesky": current.precisions_cholesky,
            }
        )
        meta = {
            "online": info,
            "lower_bounds": list(self.lower_bounds),
            "covariance_type": current.family.name,
            **current.family.structural_parameters(),
        }
        return meta, arrays

    @classmethod
    def from_files(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> OnlineCheckpoint:
        family = get_family(str(meta["covariance_type"]), meta.get("rank"))
        current = MixtureParams(
            family,
            arrays["weights"],
            arrays["means"],
            arrays["covariances"],
            arrays["precisions_cholesky"],
        )
        state = state_from_files(meta["online"], arrays, current)
        return cls(state, tuple(float(b) for b in meta["lower_bounds"]))
