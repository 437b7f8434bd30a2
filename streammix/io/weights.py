"""Sample weights: what users pass as ``sample_weight``, checked and carried with the rows.

Layer: edges (Zarr, Parquet, dask, numpy).

A row's weight multiplies its share of every statistic: a weight of 2 counts
the row twice, a weight of 0 drops it. Weights are given as a 1-D numpy or dask
array (or list), a ``zarr.Array`` or the location of a Zarr array (shape
``(n,)`` or ``(n, 1)``), or, for Parquet input, the name of one of its columns
(then no longer a feature). They are checked in one pass over the weights
alone before any fit reads the data: a length other than the rows', a negative,
NaN or infinite weight, or weights that are all zero raise
:class:`~streammix.errors.InvalidInputError` naming the first bad row.

The weights then travel as one more column of the data
(:attr:`~streammix.engine.data.ChunkedData.weighted`), in the data's dtype:
integer weights up to ``2**24`` are exact in float32, fractional ones are
rounded to the data's precision. Zarr data with Zarr (or in-memory) weights are
read through one reader that returns both, so passes keep their batches of
chunks; dask weights or data are joined by dask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ..engine.data import ChunkedData
from ..errors import InvalidInputError, InvalidInputTypeError
from .inputs import DEFAULT_ARRAY, ZarrRows, as_chunked, open_zarr_array, zarr_metadata
from .location import StorageOptions, as_location, is_location

WEIGHT_NAME = "sample_weight"


class _Column:
    """A 1-D array (numpy, or a Zarr reader) read as rows of one column."""

    def __init__(self, values: Any) -> None:
        self.values = values
        self.shape = (int(values.shape[0]), 1)
        self.dtype = values.dtype
        self.ndim = 2

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = key[0] if isinstance(key, tuple) else key
        out = np.asarray(self.values[rows])
        return out.reshape(-1, 1)


class WeightedRows:
    """Rows of the data with their weight as a last column, read together:
    ``rows[a:b, :]`` reads rows ``a:b`` of the data and of the weights."""

    def __init__(self, data: Any, weights: Any, dtype: np.dtype) -> None:
        self.data, self.weights = data, weights
        self.dtype = np.dtype(dtype)
        self.shape = (int(data.shape[0]), int(data.shape[1]) + 1)
        self.ndim = 2

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = key[0] if isinstance(key, tuple) else key
        cols = key[1] if isinstance(key, tuple) else slice(None)
        start, stop, _ = rows.indices(self.shape[0])
        out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype)
        if isinstance(self.data, ZarrRows) and np.dtype(self.data.dtype) == self.dtype:
            self.data.read_into((rows, slice(None)), out[:, :-1])  # decoded in place
        else:
            out[:, :-1] = np.asarray(self.data[rows, slice(None)])
        out[:, -1] = np.asarray(self.weights[rows, slice(None)]).reshape(-1)
        return out[:, cols]


def _weights_source(sample_weight: Any, storage_options: StorageOptions | None) -> Any:
    """A 1-D numpy array, a dask array or a Zarr reader of the weights."""
    if is_location(sample_weight):
        loc = as_location(sample_weight, storage_options)
        if not loc.exists():
            raise InvalidInputError(
                f"sample_weight {str(sample_weight)!r} is neither a column of the Parquet input "
                f"nor a Zarr array (nothing at '{loc}')."
            )
        sample_weight = open_zarr_array(loc, WEIGHT_NAME)
    if isinstance(sample_weight, zarr.Array):
        _check_1d(tuple(sample_weight.shape), f"The Zarr array {sample_weight.path!r}")
        _check_kind(np.dtype(sample_weight.dtype))
        rows = ZarrRows(sample_weight, "The sample weights")
        return rows if sample_weight.ndim == 1 else _Flat(rows)
    if isinstance(sample_weight, da.Array):
        _check_1d(tuple(sample_weight.shape), "the dask array")
        _check_kind(sample_weight.dtype)
        return sample_weight.reshape(-1)
    values = np.asarray(sample_weight)
    if values.dtype.kind in "OUS":
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            raise InvalidInputTypeError(
                f"sample_weight must be numbers, got dtype {values.dtype}."
            ) from None
    _check_kind(values.dtype)
    _check_1d(values.shape, "the array")
    return np.ascontiguousarray(values.reshape(-1), dtype=np.float64)


class _Flat:
    """An ``(n, 1)`` reader read as ``(n,)``."""

    def __init__(self, values: Any) -> None:
        self.values = values
        self.shape = (int(values.shape[0]),)
        self.dtype = values.dtype
        self.ndim = 1

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.values[key, slice(None)]).reshape(-1)


def _check_1d(shape: tuple[int, ...], where: str) -> None:
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return
    raise InvalidInputError(
        f"sample_weight must be 1-D (one weight per row), got shape {shape} ({where})."
    )


def _check_kind(dtype: np.dtype) -> None:
    if dtype.kind not in "biuf":
        raise InvalidInputTypeError(f"sample_weight must be numbers, got dtype {dtype}.")


def _check_chunk(w: np.ndarray, offset: int, weights: Any = None) -> np.ndarray:
    """``[first bad row or -1, its value, total weight, rows with weight > 0]``."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    first = float(offset + bad[0]) if bad.size else -1.0
    value = float(w[bad[0]]) if bad.size else 0.0
    ok = w[np.isfinite(w)]
    return np.array([first, value, float(ok.sum()), float(np.count_nonzero(ok > 0))])


def _merge_checks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    first = a if a[0] >= 0 else b
    if a[0] >= 0 and b[0] >= 0:
        first = a if a[0] <= b[0] else b
    return np.array([first[0], first[1], a[2] + b[2], a[3] + b[3]])


def check_weights(weights: ChunkedData) -> float:
    """The total weight of one-column weights data, after checking every weight.

    Raises
    ------
    InvalidInputError
        A negative, NaN or infinite weight (naming the first such row), or all
        weights zero.
    """
    first, value, total, positive = weights.map_reduce(
        _check_chunk, combine=_merge_checks, label="sample weights"
    )
    if first >= 0:
        what = "negative" if value < 0 else "not finite"
        raise InvalidInputError(
            f"sample_weight of row {int(first)} is {what} ({value:g}); weights must be finite "
            "and >= 0."
        )
    if positive == 0:
        raise InvalidInputError("Every sample_weight is zero; at least one row needs weight > 0.")
    return float(total)


def _as_chunked_weights(source: Any, row_chunks: tuple[int, ...]) -> ChunkedData:
    if isinstance(source, np.ndarray):
        return ChunkedData(source[:, None], row_chunks, WEIGHT_NAME)
    if isinstance(source, da.Array):
        return ChunkedData.from_dask(source.rechunk((row_chunks,))[:, None], WEIGHT_NAME)
    return ChunkedData.from_reader(_Column(source), max(row_chunks), WEIGHT_NAME, dtype=np.float64)


def with_sample_weight(
    data: ChunkedData, sample_weight: Any, storage_options: StorageOptions | None = None
) -> ChunkedData:
    """``data`` with every row's weight carried as a last column (``data`` itself for
    ``sample_weight=None``); the weights are checked first (see the module).

    Raises
    ------
    InvalidInputError, InvalidInputTypeError
        Bad weights, or as many weights as rows they are not.
    """
    if sample_weight is None:
        return data
    if data.weighted:
        raise InvalidInputError("The data already carry sample weights.")
    source = _weights_source(sample_weight, storage_options)
    n = int(source.shape[0])
    if n != data.n_rows:
        raise InvalidInputError(
            f"sample_weight has {n} values but X has {data.n_rows} rows; give one weight per row."
        )
    return _checked_join(data, source)


def _checked_join(data: ChunkedData, source: Any) -> ChunkedData:
    """:func:`join` after :func:`check_weights` of ``source``, read chunked like ``data``."""
    check_weights(_as_chunked_weights(source, data.row_chunks))
    return join(data, source)


def join(data: ChunkedData, source: Any) -> ChunkedData:
    """The rows of ``data`` with the (checked) weights of ``source`` as a last column."""
    dtype = data.dtype
    if not data.is_lazy:
        if isinstance(source, da.Array):
            values = np.asarray(source.compute())
        else:
            values = np.asarray(source[slice(0, data.n_rows)]).reshape(-1)
        joined = ChunkedData.from_numpy(data.array, max(data.row_chunks), weights=values)
        return replace(joined, source=data.source)
    if data.reader is not None and not isinstance(source, da.Array):
        rows = WeightedRows(data.reader.reader, _Column(source), dtype)
        joined = ChunkedData.from_reader(
            rows, max(data.row_chunks), data.source, dtype=dtype, parts=data.parts
        )
        return replace(joined, weighted=True)
    w = source if isinstance(source, da.Array) else da.from_array(source, chunks=(data.row_chunks,))
    w = w.rechunk((data.row_chunks,)).astype(dtype)[:, None]
    both = da.concatenate([data.array, w], axis=1).rechunk({1: -1})
    return replace(ChunkedData.from_dask(both, data.source), weighted=True)


def as_weighted(
    X: Any,
    sample_weight: Any = None,
    *,
    array: str = DEFAULT_ARRAY,
    allow_nan: bool = False,
    columns: Sequence[str] | None = None,
    storage_options: StorageOptions | None = None,
) -> ChunkedData:
    """:func:`~streammix.io.inputs.as_chunked` of ``X`` with its ``sample_weight``
    joined (see :func:`with_sample_weight`); for Parquet input, ``sample_weight`` may
    name a column, which is then not a feature."""
    if isinstance(sample_weight, str) and is_location(X):
        column = _parquet_column(X, sample_weight, columns, storage_options)
        if column is not None:
            return _checked_join(*column)
    data = as_chunked(
        X, array=array, allow_nan=allow_nan, columns=columns, storage_options=storage_options
    )
    return with_sample_weight(data, sample_weight, storage_options)


def _parquet_column(
    X: Any, name: str, columns: Sequence[str] | None, storage_options: StorageOptions | None
) -> tuple[ChunkedData, Any] | None:
    """The features and the weight column ``name`` of Parquet input ``X`` (``None``
    when ``X`` is not Parquet or has no such column)."""
    from . import parquet

    loc = as_location(X, storage_options)
    if zarr_metadata(loc) is not None or not parquet.is_parquet(loc):
        return None
    everything = parquet.ParquetSource.open(loc, columns)  # the footers, read once
    if everything.schema.get_field_index(name) < 0:
        return None
    if columns and name in columns:
        raise InvalidInputError(
            f"Column {name!r} is named both as a feature (--columns) and as sample_weight."
        )
    features = list(columns) if columns else [c for c in everything.columns if c != name]
    if not features:
        raise InvalidInputError(
            f"The Parquet data at '{loc}' have no numeric column besides the weights {name!r}."
        )
    data = everything.select(features).chunked()
    source = everything.select([name])
    rows = parquet.ParquetRows(source.parts, source.columns, np.dtype(np.float64), data.source)
    return data, _Flat(rows)
