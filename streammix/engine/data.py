"""Row-chunked data, in memory or lazy, and the two ways the engine walks it.

Layer: engine (dask + numpy). Inputs arrive here already validated by
:mod:`streammix.io.inputs`.

* :meth:`ChunkedData.map_reduce` applies a plain function to every chunk and
  tree-reduces the results: one ``compute`` for dask input, a thread pool with
  single-threaded BLAS for numpy input.
* :meth:`ChunkedData.map_rows` applies a row-wise function and returns a
  numpy array for numpy input, a lazy dask array for dask input.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.delayed import delayed

from ..core.kernel import first_nonfinite_row
from ..errors import NonFiniteInput, NonFiniteRow, UnscorableInput, UnscorableRow
from .compute import compute, single_threaded_blas, single_threaded_blas_in_pools
from .reduce import tree_reduce, tree_reduce_delayed

# Rows per chunk when numpy input is split for the thread pool.
NUMPY_CHUNK_ROWS = 65_536


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

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (sorted, unique indices) as a float64 numpy array."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.is_lazy:
            (out,) = compute(self.array[rows], label="sample")
            return np.asarray(out, dtype=np.float64)
        return np.asarray(self.array[rows], dtype=np.float64)

    def persist(self) -> ChunkedData:
        """The same data held in (cluster) memory, for data that fit there."""
        if not self.is_lazy:
            return self
        return ChunkedData(self.array.persist(), self.row_chunks, self.source, self.parts)
