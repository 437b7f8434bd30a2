"""Row-chunked data, in memory or lazy, and every way streammix walks its chunks.

Layer: engine (dask + numpy). Inputs arrive here already validated by
:mod:`streammix.io.inputs`. This is the one place that turns chunks into
tasks: algorithms above it hand plain functions to these primitives, which run
them in this process for in-memory data and as dask graphs for lazy data, and
turn a chunk's row errors into errors naming global rows.

* :meth:`ChunkedData.map_reduce`: a function of every chunk, tree-reduced.
* :meth:`ChunkedData.map_rows`: a row-wise function; numpy out for numpy input,
  a lazy dask array for lazy input.
* :meth:`ChunkedData.map_chunks`: a function of the chosen chunks (and their
  index), computed now with progress reports (jobs writing outputs).
* :meth:`ChunkedData.fold`: a state threaded through units of chunks in order
  (online EM): per unit, the chunks are mapped under the current state, the
  results combined and the state updated.
* :meth:`ChunkedData.pairwise`: for every chunk of this data, a function of it
  and each chunk of another, reduced over the other's chunks (kernel density).
"""

from __future__ import annotations

import operator
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.delayed import delayed

from ..core.kernel import first_nonfinite_row
from ..errors import NonFiniteInput, NonFiniteRow, UnscorableInput, UnscorableRow
from .compute import (
    compute,
    restore_blas_after_computations,
    run_tasks,
    single_threaded_blas,
    single_threaded_blas_in_pools,
)
from .reduce import tree_reduce, tree_reduce_delayed

# Rows per chunk when numpy input is split for the thread pool.
NUMPY_CHUNK_ROWS = 65_536

# A unit of :meth:`ChunkedData.fold`: chunk indices, the function of each chunk, the
# update of the state with the combined results, and extra arguments of the unit.
Unit = tuple[tuple[int, ...], Callable[..., Any], Callable[..., Any], tuple[Any, ...]]


def _on_chunk(func: Callable[..., Any], chunk: Any, offset: int, *args: Any) -> Any:
    """Run a chunk function, turning chunk-local row errors into global ones."""
    chunk = np.asarray(chunk)
    single_threaded_blas_in_pools()
    try:
        return func(chunk, offset, *args)
    except NonFiniteRow as err:
        raise NonFiniteInput(offset + err.row, first=False) from None
    except UnscorableRow as err:
        raise UnscorableInput(offset + err.row) from None


def _first_bad(chunk: np.ndarray, offset: int) -> int:
    row = first_nonfinite_row(chunk)
    return -1 if row is None else offset + row


def _min_bad(a: int, b: int) -> int:
    return b if a < 0 else a if b < 0 else min(a, b)


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
    """

    array: Any
    row_chunks: tuple[int, ...]
    source: str = "array"
    parts: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_numpy(cls, X: np.ndarray, chunk_rows: int = NUMPY_CHUNK_ROWS) -> ChunkedData:
        n = X.shape[0]
        chunks = tuple(min(chunk_rows, n - s) for s in range(0, n, chunk_rows)) or (0,)
        return cls(X, chunks, "numpy array")

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
        return cls(x, rows, source, parts)

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
        return int(self.array.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(o) for o in np.cumsum((0, *self.row_chunks[:-1])))

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
        """``combine``-reduce of ``func(chunk, row_offset, *args)`` over all chunks.

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
        if self.is_lazy:
            blocks = self.array.to_delayed().ravel()
            shared = [delayed(a, traverse=False) for a in args]
            parts = [
                delayed(_on_chunk, pure=True)(func, b, o, *shared)
                for b, o in zip(blocks, self.offsets, strict=True)
            ]
            (result,) = compute(tree_reduce_delayed(parts, combine), label=label)
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
        computed now, one task per chunk (reported to ``progress`` as they finish).
        Results in the order of ``chunks``."""
        todo = range(len(self.row_chunks)) if chunks is None else list(chunks)
        if not todo:
            return []
        blocks = self.blocks()
        shared = [delayed(a, traverse=False) for a in args]
        tasks = [
            delayed(_on_chunk, pure=True)(func, blocks[c], self.offsets[c], c, *shared)
            for c in todo
        ]
        return run_tasks(tasks, progress, label)

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
        ``chunk_func(chunk, row_offset, state, *args, *extra)``, combines the results
        (a tree, in chunk order) and gives ``update(state, combined, *args)``. Lazy
        data make one graph: chunks are read in parallel ahead of the chain and only
        the state and the per-chunk results travel.
        """
        offsets = self.offsets
        if not self.is_lazy:
            with single_threaded_blas():
                for chunks, chunk_func, update, extra in plan:
                    parts = [
                        _on_chunk(chunk_func, X, offsets[c], state, *args, *extra)
                        for X, c in ((self._chunk(c), c) for c in chunks)
                    ]
                    state = update(state, tree_reduce(parts, combine), *args)
            return state
        blocks = self.blocks()
        node: Any = delayed(state, traverse=False)
        shared = [delayed(a, traverse=False) for a in args]
        for chunks, chunk_func, update, extra in plan:
            parts = [
                delayed(_on_chunk, pure=True)(
                    chunk_func, blocks[c], offsets[c], node, *shared, *extra
                )
                for c in chunks
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
        full pair matrix is never formed.
        """
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

    def _chunk(self, c: int) -> np.ndarray:
        o = self.offsets[c]
        return np.asarray(self.array[o : o + self.row_chunks[c]])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (sorted, unique indices) as a float64 numpy array."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.is_lazy:
            (out,) = compute(self.array[rows], label="sample")
            return np.asarray(out, dtype=np.float64)
        return np.asarray(self.array[rows], dtype=np.float64)

    def to_numpy(self) -> np.ndarray:
        """All rows in memory, in their dtype (for data known to be small)."""
        if not self.is_lazy:
            return np.asarray(self.array)
        (out,) = compute(self.array, label="gather")
        return np.asarray(out)

    def persist(self) -> ChunkedData:
        """The same data held in (cluster) memory, for data that fit there."""
        if not self.is_lazy:
            return self
        return ChunkedData(self.array.persist(), self.row_chunks, self.source, self.parts)
