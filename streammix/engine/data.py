"""Row-chunked data, in memory or lazy, and every way streammix walks its chunks.

Layer: engine (dask + numpy). Inputs arrive here already validated by
:mod:`streammix.io.inputs`. This is the one place that turns chunks into
tasks: algorithms above it hand plain functions to these primitives, which run
them in this process for in-memory data and as dask graphs for lazy data, and
turn a chunk's row errors into errors naming global rows.

* :meth:`ChunkedData.map_reduce`: a function of every chunk, tree-reduced.
  Lazy data make a few tasks per worker thread, each walking a batch of
  chunks (:mod:`streammix.engine.batches`): the scheduler's work per pass
  grows with the workers, not with the chunks, and the order of additions is
  the same whatever the batching.
* :meth:`ChunkedData.map_rows`: a row-wise function; numpy out for numpy input,
  a lazy dask array for lazy input.
* :meth:`ChunkedData.map_chunks`: a function of the chosen chunks (and their
  index), computed now with progress reports (jobs writing outputs), in
  batches of consecutive chunks.
* :meth:`ChunkedData.fold`: a state threaded through units of chunks in order
  (online EM): per unit, the chunks are mapped under the current state, the
  results combined and the state updated.
* :meth:`ChunkedData.pairwise`: for every chunk of this data, a function of it
  and each chunk of another, reduced over the other's chunks (kernel density).
* :meth:`ChunkedData.persist` and :meth:`ChunkedData.cache`: decoded batches
  held in worker memory for the passes that follow.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed
from dask.highlevelgraph import HighLevelGraph

from ..core.kernel import first_nonfinite_row
from ..errors import InvalidParameterError, NonFiniteInput
from .batches import (
    TASKS_PER_THREAD,
    ChunkReader,
    batch_level,
    batch_ranges,
    load_batch,
    map_batch,
    on_chunk,
    parallelism,
    raise_first_failure,
    reduce_batch,
    row_offsets,
    runs,
)
from .compute import compute, restore_blas_after_computations, run_tasks, single_threaded_blas
from .reduce import SPLIT_EVERY, tree_layer, tree_reduce, tree_reduce_delayed

logger = logging.getLogger("streammix")

# Rows per chunk when numpy input is split for the thread pool.
NUMPY_CHUNK_ROWS = 65_536

# A unit of :meth:`ChunkedData.fold`: chunk indices, the function of each chunk, the
# update of the state with the combined results, and extra arguments of the unit.
Unit = tuple[tuple[int, ...], Callable[..., Any], Callable[..., Any], tuple[Any, ...]]


# What ``cache="memory"`` may hold: this share of the workers' memory (of the
# memory available, without a cluster); more falls back to re-reading.
CACHE_SHARE = 0.5
CACHE_MODES = ("memory",)

# Decoded bytes up to which consecutive chunks are read and reduced as one leaf.
LEAF_BYTES = 4 * 2**20

_on_chunk = on_chunk


def _first_bad(chunk: np.ndarray, offset: int, weights: np.ndarray | None = None) -> int:
    row = first_nonfinite_row(chunk)
    return -1 if row is None else offset + row


def _with_weights(func: Callable[..., Any], rows: np.ndarray, offset: int, *args: Any) -> Any:
    """``func`` of the feature columns of rows whose last column is their weight,
    the weights passed as ``weights``."""
    return func(rows[:, :-1], offset, *args, weights=rows[:, -1])


def _features_only(func: Callable[..., Any], rows: np.ndarray, offset: int, *args: Any) -> Any:
    """``func`` of the feature columns of rows whose last column is their weight."""
    return func(rows[:, :-1], offset, *args)


def _min_bad(a: int, b: int) -> int:
    return b if a < 0 else a if b < 0 else min(a, b)


def _fold_run(
    reader: ChunkReader,
    run: Sequence[tuple[tuple[tuple[int, int], ...], Callable[..., Any], Callable[..., Any], Any]],
    state: Any,
    combine: Callable[[Any, Any], Any],
    *args: Any,
) -> Any:
    """A run of :meth:`ChunkedData.fold`'s units in one task: each unit's chunks read
    through ``reader`` (as ``(first row, rows)``), each span of consecutive ones in one
    read and one call of the unit's function, reduced and applied in order."""
    for chunks, chunk_func, update, extra in run:
        parts = []
        for span in _consecutive(chunks):
            first, stop = span[0][0], span[-1][0] + span[-1][1]
            rows = reader.read(first, stop)
            parts.append(_on_chunk(chunk_func, rows, first, state, *args, *extra))
        state = update(state, tree_reduce(parts, combine), *args)
    return state


def _on_span(func: Callable[..., Any], blocks: Sequence[Any], offset: int, *args: Any) -> Any:
    """``func`` of consecutive chunks joined (one chunk as it is)."""
    rows = blocks[0] if len(blocks) == 1 else np.concatenate([np.asarray(b) for b in blocks])
    return _on_chunk(func, rows, offset, *args)


def _consecutive(chunks: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """``(first row, rows)`` chunks in runs whose rows follow on, in the given order."""
    spans: list[list[tuple[int, int]]] = []
    for o, n in chunks:
        if spans and spans[-1][-1][0] + spans[-1][-1][1] == o:
            spans[-1].append((o, n))
        else:
            spans.append([(o, n)])
    return spans


@dataclass(frozen=True, slots=True, eq=False)
class ChunkedData:
    """A 2-D array chunked along rows only.

    Parameters
    ----------
    array : numpy.ndarray or dask.array.Array
        Float32 or float64, shape ``(n_rows, n_features)``.
    row_chunks : tuple of int
        Rows per chunk (dask's chunks, or the split used for numpy input).
    source : str
        A short description for messages ("numpy array", "Zarr array at ...").
    parts : tuple of (str, int)
        For input made of files (a Parquet dataset): each file's name and rows,
        in row order.
    reader : ChunkReader, optional
        How a task reads a chunk itself (input read through a reader): passes then
        make one task per batch of chunks instead of one read task per chunk.
    weighted : bool
        The last column of ``array`` is every row's weight (``sample_weight``),
        carried with the rows through every read, batch and cache. Functions of
        :meth:`map_reduce` and :meth:`fold` then get the features and, as the
        keyword ``weights``, the weights (a function without that keyword cannot
        run on weighted data: no pass ignores weights by accident); row-wise
        functions and :meth:`take` see the features only.
    resident : tuple of dask Delayed
        Batches of decoded chunks held in (cluster) memory (see :meth:`persist`),
        ``SPLIT_EVERY ** resident_level`` chunks each.
    """

    array: Any
    row_chunks: tuple[int, ...]
    source: str = "array"
    parts: tuple[tuple[str, int], ...] = ()
    reader: ChunkReader | None = None
    resident: tuple[Any, ...] = ()
    resident_level: int = 0
    weighted: bool = False
    _offsets: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_offsets", row_offsets(self.row_chunks))

    @classmethod
    def from_numpy(
        cls,
        X: np.ndarray,
        chunk_rows: int = NUMPY_CHUNK_ROWS,
        weights: np.ndarray | None = None,
    ) -> ChunkedData:
        """In-memory rows (with ``weights``, a copy of them with their weights)."""
        n = X.shape[0]
        chunks = tuple(min(chunk_rows, n - s) for s in range(0, n, chunk_rows)) or (0,)
        if weights is None:
            return cls(X, chunks, "numpy array")
        both = np.empty((n, X.shape[1] + 1), dtype=X.dtype)
        both[:, :-1] = X
        both[:, -1] = weights
        return cls(both, chunks, "numpy array", weighted=True)

    @classmethod
    def from_reader(
        cls,
        reader: Any,
        chunk_rows: int,
        source: str,
        *,
        dtype: Any,
        parts: tuple[tuple[str, int], ...] = (),
    ) -> ChunkedData:
        """Data read chunk by chunk, never whole, through ``reader[row_slice, col_slice]``
        (an object with ``shape``, ``dtype`` and ``ndim``: a Zarr array's view, a Parquet
        dataset), in chunks of ``chunk_rows`` rows, converted to ``dtype``."""
        n, d = int(reader.shape[0]), int(reader.shape[1])
        rows = tuple(min(chunk_rows, n - s) for s in range(0, n, chunk_rows))
        x = da.from_array(
            reader,
            chunks=(rows, (d,)),
            asarray=True,
            lock=False,
            name=f"rows-{uuid.uuid4().hex}",
            meta=np.empty((0, d), dtype=reader.dtype),
        )
        if x.dtype != np.dtype(dtype):
            x = x.astype(dtype)
        chunk_reader = ChunkReader(reader, np.dtype(dtype), d)
        return cls(x, rows, source, parts, reader=chunk_reader)

    @classmethod
    def from_dask(cls, X: da.Array, source: str = "dask array") -> ChunkedData:
        return cls(X, tuple(int(c) for c in X.chunks[0]), source)

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.array, da.Array)

    @property
    def n_rows(self) -> int:
        return int(self.array.shape[0])

    @property
    def n_features(self) -> int:
        """Columns of features (1 for the 1-D arrays that outputs are written from)."""
        return int(self.array.shape[1]) - int(self.weighted) if self.array.ndim > 1 else 1

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def offsets(self) -> tuple[int, ...]:
        """The first row of every chunk."""
        return self._offsets

    @property
    def n_chunks(self) -> int:
        return len(self.row_chunks)

    def features(self) -> ChunkedData:
        """The same rows without their weights (itself when they have none)."""
        if not self.weighted:
            return self
        cut = self.array[:, :-1]
        if self.is_lazy:
            return ChunkedData.from_dask(cut, self.source)
        return ChunkedData(cut, self.row_chunks, self.source, self.parts)

    def _reducing(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` as a chunk function of :meth:`map_reduce` sees it: with weights."""
        return functools.partial(_with_weights, func) if self.weighted else func

    def _row_wise(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` as a row-wise function sees it: features only."""
        return functools.partial(_features_only, func) if self.weighted else func

    def _numpy_chunks(self) -> list[tuple[np.ndarray, int]]:
        return [
            (self.array[o : o + c], o) for o, c in zip(self.offsets, self.row_chunks, strict=True)
        ]

    def map_reduce(
        self,
        func: Callable[..., Any],
        *args: Any,
        combine: Callable[[Any, Any], Any] = operator.add,
        label: str = "pass",
    ) -> Any:
        """``combine``-reduce of ``func(rows, row_offset, *args)`` over all chunks.

        ``func`` must be a sum over rows: for lazy data, ``rows`` is a leaf of
        consecutive chunks read at once (see :attr:`leaf_level`).

        Raises :class:`NonFiniteInput` naming the first row with NaN/inf when
        any chunk holds one.
        """
        try:
            return self._map_reduce(func, args, combine, label)
        except NonFiniteInput:
            raise NonFiniteInput(self.first_nonfinite_row()) from None

    def _map_reduce(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        combine: Callable[[Any, Any], Any],
        label: str,
    ) -> Any:
        func = self._reducing(func)
        if self.is_lazy:
            (result,) = compute(self.reduce_graph(func, *args, combine=combine), label=label)
            return result
        chunks = self._numpy_chunks()
        with single_threaded_blas():
            if len(chunks) == 1:
                parts = [_on_chunk(func, chunks[0][0], chunks[0][1], *args)]
            else:
                workers = min(len(chunks), os.cpu_count() or 1)
                with ThreadPoolExecutor(workers) as pool:
                    parts = list(pool.map(lambda co: _on_chunk(func, co[0], co[1], *args), chunks))
        return tree_reduce(parts, combine)

    def reduce_graph(
        self,
        func: Callable[..., Any],
        *args: Any,
        combine: Callable[[Any, Any], Any] = operator.add,
        threads: int | None = None,
    ) -> Delayed:
        """The graph :meth:`map_reduce` computes for lazy data (built, not run).

        About ``TASKS_PER_THREAD x threads`` batch tasks (``threads``: the worker
        threads, by default those of the current cluster), each reducing a batch
        of consecutive leaves (see :attr:`leaf_level`) aligned with the reduction
        tree, then the upper levels of the tree: the order of additions depends
        only on the chunking, never on the batching.
        """
        spans = self.leaf_spans()
        if self.resident:
            level, deps = self.resident_level, list(self.resident)
            sources: list[Any] = [d.key for d in self.resident]
        else:
            level = batch_level(len(spans), parallelism() if threads is None else threads)
            sources, deps = self._batch_sources(level)
        token = uuid.uuid4().hex
        shared = [delayed(a, traverse=False) for a in args]
        layer: dict[Any, Any] = {
            f"batch-{token}-{i}": (
                reduce_batch,
                src,
                spans[r.start : r.stop],
                func,
                combine,
                *(a.key for a in shared),
            )
            for i, (src, r) in enumerate(zip(sources, batch_ranges(len(spans), level), strict=True))
        }
        top = tree_layer(layer, list(layer), combine, f"combine-{token}")
        return Delayed(top, HighLevelGraph.from_collections(top, layer, [*deps, *shared]))

    @property
    def leaf_level(self) -> int:
        """Chunk functions of :meth:`map_reduce` see runs of ``SPLIT_EVERY **
        leaf_level`` consecutive chunks at once (aligned with the reduction tree):
        as many as fit in ``LEAF_BYTES`` (at least one chunk), so that small chunks
        are read together and the kernel sees large matrix products. It depends on
        the chunking, the width and the dtype only."""
        rows = max(self.row_chunks) if self.row_chunks else 1
        width = max(1, self.n_features * self.dtype.itemsize)
        level = 0
        while (
            SPLIT_EVERY**level < self.n_chunks
            and SPLIT_EVERY ** (level + 1) * rows * width <= LEAF_BYTES
        ):
            level += 1
        return level

    def leaf_spans(self) -> np.ndarray:
        """The rows of every leaf, in order: shape ``(n_leaves, 2)``, start and stop."""
        bounds = np.array((*self.offsets, self.n_rows), dtype=np.int64)
        step = SPLIT_EVERY**self.leaf_level
        starts = bounds[:-1:step]
        stops = np.append(starts[1:], self.n_rows) if len(starts) else starts
        return np.stack([starts, stops], axis=1)

    def _leaves(self) -> list[range]:
        return batch_ranges(self.n_chunks, self.leaf_level)

    def _batch_sources(self, level: int) -> tuple[list[Any], list[Any]]:
        """What each batch task (``SPLIT_EVERY ** level`` leaves) takes its rows
        from, as graph references, and the collections they belong to: the shared
        reader, or (data without one) its leaves' blocks of the dask array."""
        leaves = self._leaves()
        batches = batch_ranges(len(leaves), level)
        if self.reader is not None:
            node = self._reader_node()
            return [node.key] * len(batches), [node]
        refs = [[[self._block_key(c) for c in leaves[j]] for j in b] for b in batches]
        return refs, [self.array]

    def _block_key(self, c: int) -> tuple[Any, ...]:
        """The graph key of the dask array's block of chunk ``c`` (2-D or 1-D)."""
        return (self.array.name, c, 0) if self.array.ndim > 1 else (self.array.name, c)

    def _reader_node(self) -> Delayed:
        return delayed(self.reader, name=f"reader-{self.array.name}", traverse=False)

    def first_nonfinite_row(self) -> int:
        """Index of the first row holding NaN or infinity (-1 when none)."""
        return int(self._map_reduce(_first_bad, (), _min_bad, "scan"))

    def map_rows(
        self,
        func: Callable[..., np.ndarray],
        *args: Any,
        dtype: Any = np.float64,
        tail: tuple[int, ...] = (),
    ) -> Any:
        """Row-wise ``func(chunk, row_offset, *args)``; lazy for dask input.

        ``tail`` is the shape of each row's result (``()`` for one value per row).
        """
        func = self._row_wise(func)
        if not self.is_lazy:
            chunks = self._numpy_chunks()
            with single_threaded_blas():
                parts = [_on_chunk(func, c, o, *args) for c, o in chunks]
            if not parts:
                return np.empty((0, *tail), dtype=dtype)
            return np.concatenate(parts, axis=0)
        restore_blas_after_computations()  # the caller computes the lazy result
        shared = [delayed(a, traverse=False) for a in args]
        blocks = self.array.to_delayed().ravel()
        pieces = [
            da.from_delayed(
                delayed(_on_chunk, pure=True)(func, b, o, *shared),
                shape=(c, *tail),
                dtype=dtype,
            )
            for b, o, c in zip(blocks, self.offsets, self.row_chunks, strict=True)
        ]
        return da.concatenate(pieces, axis=0)

    def blocks(self) -> list[Any]:
        """The chunks as graph nodes (dask's own for lazy data; named numpy views,
        not hashed, for in-memory data)."""
        if self.is_lazy:
            return list(self.array.to_delayed().reshape(self.array.numblocks[0], -1)[:, 0])
        token = f"chunk-{id(self.array):x}-{self.n_rows}"
        return [delayed(c, name=f"{token}-{o}", traverse=False) for c, o in self._numpy_chunks()]

    def map_chunks(
        self,
        func: Callable[..., Any],
        *args: Any,
        chunks: Sequence[int] | None = None,
        progress: Callable[[int, int], None] | None = None,
        label: str = "tasks",
    ) -> list[Any]:
        """``func(chunk, row_offset, chunk_index, *args)`` for ``chunks`` (default all),
        computed now (reported to ``progress`` as they finish). Lazy data make a
        few tasks per worker thread, each walking a run of consecutive chunks; a
        lost worker's tasks are run again by Dask, so ``func`` must be safe to
        repeat. Results in the order of ``chunks``."""
        todo = list(range(self.n_chunks)) if chunks is None else list(chunks)
        if not todo:
            return []
        func = self._row_wise(func)
        if not self.is_lazy:
            blocks = self.blocks()
            shared = [delayed(a, traverse=False) for a in args]
            tasks = [
                delayed(_on_chunk, pure=True)(func, blocks[c], self.offsets[c], c, *shared)
                for c in todo
            ]
            return run_tasks(tasks, progress, label)
        bounds = (*self.offsets, self.n_rows)
        per_read = SPLIT_EVERY**self.leaf_level
        batches = [runs(run, per_read) for run in runs(todo, _run_size(len(todo), parallelism()))]
        token = uuid.uuid4().hex
        shared = [delayed(a, traverse=False) for a in args]
        if self.reader is not None:
            node = self._reader_node()
            sources: list[Any] = [node.key] * len(batches)
            deps: list[Any] = [node]
        else:
            sources = [[[self._block_key(c) for c in g] for g in groups] for groups in batches]
            deps = [self.array]
        layer: dict[Any, Any] = {
            f"{label}-{token}-{i}": (
                map_batch,
                src,
                np.array(
                    [(c, bounds[c], bounds[c + 1]) for g in groups for c in g], dtype=np.int64
                ),
                np.array([len(g) for g in groups], dtype=np.int64),
                token,
                func,
                *(a.key for a in shared),
            )
            for i, (src, groups) in enumerate(zip(sources, batches, strict=True))
        }
        name = f"{label}-{token}"
        graph = HighLevelGraph.from_collections(name, layer, [*deps, *shared])
        tasks = [Delayed(key, graph, layer=name) for key in layer]
        sizes = [sum(len(g) for g in groups) for groups in batches]
        results = run_tasks(tasks, progress, label, sizes=sizes)
        raise_first_failure(results, token)
        return [r for batch in results for r in batch]

    def fold(
        self,
        plan: Sequence[Unit],
        state: Any,
        combine: Callable[[Any, Any], Any],
        *args: Any,
        label: str = "fold",
    ) -> Any:
        """The state after every unit of ``plan``, in order.

        A unit ``(chunks, chunk_func, update, extra)`` maps its chunks with
        ``chunk_func(rows, row_offset, state, *args, *extra)``, each run of consecutive
        chunks as one block of rows (so that small chunks make one kernel call, not
        many; the function must be a sum over rows), combines the results (a tree, in
        order) and gives ``update(state, combined, *args)``. Every kind of data makes
        the same calls on the same rows, so results do not depend on where the rows
        come from. Lazy data make one graph: rows are read in parallel ahead of the
        chain and only the state and the per-span results travel.
        """
        offsets = self.offsets
        steps = [
            (
                _consecutive([(offsets[c], self.row_chunks[c]) for c in chunks]),
                self._reducing(f),
                u,
                e,
            )
            for chunks, f, u, e in plan
        ]
        if not self.is_lazy:
            with single_threaded_blas():
                for spans, chunk_func, update, extra in steps:
                    parts = [
                        _on_chunk(
                            chunk_func,
                            self.array[sp[0][0] : sp[-1][0] + sp[-1][1]],
                            sp[0][0],
                            state,
                            *args,
                            *extra,
                        )
                        for sp in spans
                    ]
                    state = update(state, tree_reduce(parts, combine), *args)
            return state
        shared = [delayed(a, traverse=False) for a in args]
        if self.reader is not None:
            # Runs of consecutive units, each one task that reads its units' rows itself:
            # O(workers) tasks per epoch instead of a read and a task per chunk; the
            # updates, in order, are those of one unit per task.
            size = max(1, -(-len(steps) // (TASKS_PER_THREAD * parallelism())))
            node = delayed(state, traverse=False)
            reader = self._reader_node()
            for start in range(0, len(steps), size):
                run = [
                    (tuple(pair for sp in spans for pair in sp), f, u, e)
                    for spans, f, u, e in steps[start : start + size]
                ]
                node = delayed(_fold_run, pure=True)(reader, run, node, combine, *shared)
            (final,) = compute(node, label=label)
            return final
        blocks = self.blocks()
        index = {o: c for c, o in enumerate(offsets)}
        node = delayed(state, traverse=False)
        for spans, chunk_func, update, extra in steps:
            parts = [
                delayed(_on_span, pure=True)(
                    chunk_func,
                    [blocks[index[o]] for o, _ in sp],
                    sp[0][0],
                    node,
                    *shared,
                    *extra,
                )
                for sp in spans
            ]
            node = delayed(update, pure=True)(node, tree_reduce_delayed(parts, combine), *shared)
        (final,) = compute(node, label=label)
        return final

    def pairwise(
        self,
        other: ChunkedData,
        pair: Callable[..., Any],
        combine: Callable[[Any, Any], Any],
        finish: Callable[..., np.ndarray],
        *args: Any,
        dtype: Any = np.float64,
    ) -> Any:
        """For every chunk ``Q`` of this data, ``finish(reduced, *args)`` of the
        ``combine``-reduction (a tree, in ``other``'s chunk order) of
        ``pair(Q, q_offset, R, *args)`` over the chunks ``R`` of ``other``: one value
        per row of this data. Numpy out for numpy input, lazy for lazy input; the
        full pair matrix is never formed. ``Q`` holds features only; ``R`` holds
        ``other``'s rows as stored, with the weights' column last when
        ``other.weighted``.
        """
        pair = self._row_wise(pair)  # weights of this data play no part
        if not self.is_lazy and not other.is_lazy:
            return self._pairwise_in_memory(other, pair, combine, finish, args)
        shared = [delayed(a, traverse=False) for a in args]
        r_blocks = other.blocks()
        pieces = []
        for qb, offset, rows in zip(self.blocks(), self.offsets, self.row_chunks, strict=True):
            parts = [delayed(pair, pure=True)(qb, offset, rb, *shared) for rb in r_blocks]
            done = delayed(finish, pure=True)(tree_reduce_delayed(parts, combine), *shared)
            pieces.append(da.from_delayed(done, shape=(rows,), dtype=dtype))
        lazy = da.concatenate(pieces, axis=0)
        if self.is_lazy:
            restore_blas_after_computations()  # the caller computes the lazy result
            return lazy
        (out,) = compute(lazy, label="pairs")
        return np.asarray(out)

    def _pairwise_in_memory(
        self,
        other: ChunkedData,
        pair: Callable[..., Any],
        combine: Callable[[Any, Any], Any],
        finish: Callable[..., np.ndarray],
        args: tuple[Any, ...],
    ) -> np.ndarray:
        q_chunks = self._numpy_chunks()
        r_chunks = [c for c, _ in other._numpy_chunks()]
        n_ref = len(r_chunks)
        workers = min(len(q_chunks) * n_ref, os.cpu_count() or 1)
        # Query chunks go in batches just large enough to keep every worker busy, so that
        # only one batch's partial results are held at a time.
        batch = max(1, -(-workers // n_ref))

        def run(qr: tuple[int, int]) -> Any:
            q, offset = q_chunks[qr[0]]
            return pair(q, offset, r_chunks[qr[1]], *args)

        out: list[np.ndarray] = []
        with single_threaded_blas(), ThreadPoolExecutor(workers) as pool:
            for first in range(0, len(q_chunks), batch):
                todo = range(first, min(first + batch, len(q_chunks)))
                parts = list(pool.map(run, [(qi, ri) for qi in todo for ri in range(n_ref)]))
                for i in range(len(todo)):
                    total = tree_reduce(parts[i * n_ref : (i + 1) * n_ref], combine)
                    out.append(finish(total, *args))
        return np.concatenate(out) if out else np.empty(0)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows' features (sorted, unique indices) as a float64 numpy array."""
        return self.take_weighted(rows)[0]

    def take_weighted(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The given rows' features (sorted, unique indices) as a float64 numpy array,
        and their weights (``None`` without weights)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.is_lazy:
            (out,) = compute(self.array[rows], label="sample")
        else:
            out = self.array[rows]
        return self._split(np.asarray(out, dtype=np.float64))

    def _split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.weighted:
            return rows, None
        return rows[:, :-1], np.ascontiguousarray(rows[:, -1], dtype=np.float64)

    def weight_column(self, lazy: bool = False) -> Any:
        """The rows' weights (``None`` without weights): in memory (float64), or with
        ``lazy`` for lazy data a dask array chunked like the rows."""
        if not self.weighted:
            return None
        column = self.array[:, -1]
        if not self.is_lazy:
            return np.asarray(column, dtype=np.float64)
        if lazy:
            return column.astype(np.float64)
        (column,) = compute(column, label="weights")
        return np.asarray(column, dtype=np.float64)

    def to_numpy(self) -> np.ndarray:
        """All rows' features in memory, in their dtype (for data known to be small)."""
        return self.to_numpy_weighted()[0]

    def to_numpy_weighted(self) -> tuple[np.ndarray, np.ndarray | None]:
        """All rows' features in memory, in their dtype, and their weights (float64;
        ``None`` without weights)."""
        if not self.is_lazy:
            out = np.asarray(self.array)
        else:
            (out,) = compute(self.array, label="gather")
            out = np.asarray(out)
        X, w = self._split(out)
        return (np.ascontiguousarray(X) if w is not None else X), w

    def persist(self, threads: int | None = None) -> ChunkedData:
        """The same data, its decoded chunks held in (cluster) memory in batches
        (one task each, results left on the workers, spilled by Dask under memory
        pressure), for data that fit there. Passes of :meth:`map_reduce` then read
        nothing; a batch lost with its worker is read again by Dask."""
        if not self.is_lazy or self.resident:
            return self
        spans = self.leaf_spans()
        level = batch_level(len(spans), parallelism() if threads is None else threads)
        token = uuid.uuid4().hex
        sources, deps = self._batch_sources(level)
        layer: dict[Any, Any] = {
            f"resident-{token}-{i}": (load_batch, src, spans[r.start : r.stop])
            for i, (src, r) in enumerate(zip(sources, batch_ranges(len(spans), level), strict=True))
        }
        graph = HighLevelGraph.from_collections(f"resident-{token}", layer, deps)
        loads = [Delayed(key, graph, layer=f"resident-{token}") for key in layer]
        held = dask.persist(*loads)
        return replace(self, resident=tuple(held), resident_level=level)

    def cache(self, mode: str | None = "memory") -> ChunkedData:
        """The data held as :meth:`persist` does when ``mode`` is ``"memory"`` and
        the decoded chunks fit in ``CACHE_SHARE`` of the workers' memory;
        otherwise the same data, re-read every pass.

        Raises
        ------
        InvalidParameterError
            An unknown ``mode``.
        """
        if mode is None or not self.is_lazy:
            return self
        if mode not in CACHE_MODES:
            raise InvalidParameterError(
                f"The 'cache' parameter must be one of {CACHE_MODES} or None. Got {mode!r} instead."
            )
        size = self.n_rows * self.n_features * self.dtype.itemsize
        room = _memory_room()
        if room is not None and size > CACHE_SHARE * room:
            logger.info(
                "cache='memory': the data (%.3g GB decoded) do not fit in %d%% of the "
                "workers' memory (%.3g GB); reading every pass instead",
                size / 1e9,
                int(CACHE_SHARE * 100),
                room / 1e9,
            )
            return self
        return self.persist()


def _run_size(n_chunks: int, threads: int) -> int:
    """Chunks per task of a pass over ``n_chunks`` chosen chunks."""
    return max(1, -(-n_chunks // (TASKS_PER_THREAD * threads)))


def _memory_room() -> float | None:
    """Bytes the workers may hold (None: no limit known)."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
        limits = [float(w.get("memory_limit") or 0) for w in workers]
        return None if not limits or 0 in limits else sum(limits)
    try:
        import psutil
    except ImportError:
        return None
    return float(psutil.virtual_memory().available)
