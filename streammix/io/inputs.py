"""Turning what users pass as data into validated, row-chunked arrays.

Layer: edges (Zarr, Parquet, dask, numpy). Everything a user can pass as ``X``
comes through :func:`as_chunked`: a numpy array or nested list, a dask array,
a ``zarr.Array``, or a location (a path or URL, see
:mod:`streammix.io.location`) of a Zarr array or group or of a Parquet file or
dataset. Zarr inputs are opened read-only, and their metadata are checked
before any chunk is decoded: numeric dtypes only, codecs from an allow-list
only (a pickle or object codec could run code while decoding).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import dask.array as da
import numpy as np
import zarr
from zarr.core.buffer.cpu import NDBuffer

from ..engine.data import ChunkedData
from ..errors import (
    InvalidInputError,
    InvalidInputTypeError,
    NonFiniteInput,
    StorageError,
    StreammixError,
)
from .location import Location, StorageOptions, as_location, is_location, redact

DEFAULT_ARRAY = "X"

# Codecs that only transform bytes or numbers. Anything else is refused.
_SAFE_V3_CODECS = frozenset(
    {
        "bytes",
        "zstd",
        "blosc",
        "gzip",
        "crc32c",
        "transpose",
        "sharding_indexed",
        "numcodecs.zlib",
        "numcodecs.lz4",
        "numcodecs.bz2",
        "numcodecs.lzma",
        "numcodecs.shuffle",
        "numcodecs.delta",
        "numcodecs.fletcher32",
        "numcodecs.crc32",
        "numcodecs.adler32",
    }
)
_SAFE_V2_CODECS = frozenset(
    {
        "zstd",
        "blosc",
        "zlib",
        "gzip",
        "lz4",
        "bz2",
        "lzma",
        "shuffle",
        "delta",
        "crc32",
        "adler32",
        "fletcher32",
    }
)


def _v3_codec_names(codecs: Iterable[Any]) -> Iterable[str]:
    for codec in codecs:
        if isinstance(codec, str):
            yield codec
            continue
        name = str(codec.get("name", "?"))
        yield name
        conf = codec.get("configuration") or {}
        if name == "sharding_indexed":
            yield from _v3_codec_names(conf.get("codecs", ()))
            yield from _v3_codec_names(conf.get("index_codecs", ()))


def check_zarr_metadata(meta: dict[str, Any], where: str) -> None:
    """Refuse non-numeric dtypes and codecs outside the allow-list."""
    fmt = meta.get("zarr_format")
    if fmt == 3:
        dtype = meta.get("data_type")
        names = list(_v3_codec_names(meta.get("codecs", ())))
        unsafe = [n for n in names if n not in _SAFE_V3_CODECS]
    elif fmt == 2:
        dtype = meta.get("dtype")
        specs = list(meta.get("filters") or []) + (
            [meta["compressor"]] if meta.get("compressor") else []
        )
        unsafe = [str(s.get("id", "?")) for s in specs if s.get("id") not in _SAFE_V2_CODECS]
        if meta.get("object_codec") is not None:
            unsafe.append("object_codec")
    else:
        raise InvalidInputError(f"{where}: unknown Zarr format {fmt!r}.")
    if not isinstance(dtype, str):
        raise InvalidInputError(f"{where} has a non-numeric dtype {dtype!r}.")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise InvalidInputError(f"{where} has a non-numeric dtype {dtype!r}.") from None
    if np_dtype.kind not in "biuf":
        raise InvalidInputError(
            f"{where} has dtype {np_dtype}, but streammix needs numbers (int or float)."
        )
    if unsafe:
        raise InvalidInputError(
            f"{where} declares codec(s) {', '.join(sorted(set(unsafe)))}, which streammix does "
            "not decode (only numeric compressors and filters are accepted). Re-encode the data "
            "with zstd, blosc or gzip."
        )


def zarr_metadata(loc: Location) -> dict[str, Any] | None:
    """The raw metadata document of a Zarr node, without decoding anything."""
    for name in ("zarr.json", ".zarray", ".zgroup"):
        try:
            raw = loc.child(name).read_bytes()
        except InvalidInputError:
            continue
        try:
            meta = json.loads(raw)
        except ValueError as err:
            raise InvalidInputError(f"'{loc}': unreadable Zarr metadata ({err}).") from None
        if not isinstance(meta, dict):
            raise InvalidInputError(f"'{loc}': unreadable Zarr metadata (not an object).")
        if name == ".zarray":
            meta.setdefault("zarr_format", 2)
            meta["node_type"] = "array"
        elif name == ".zgroup":
            meta.setdefault("zarr_format", 2)
            meta["node_type"] = "group"
        return dict(meta)
    return None


READ_BATCH_CHUNKS = 64
"""Chunks Zarr decodes per batch when one read spans several (its default is one at a
time). Passes read runs of small chunks in one call; batching them cut the time to
read 1,000,000 x 8 float64 in 1,000-row chunks, 64 chunks per read, from about 0.30 s
to 0.21 s here (one process, zstd)."""


def open_zarr_array(
    path: str | os.PathLike[str] | Location,
    array: str = DEFAULT_ARRAY,
    meta: dict[str, Any] | None = None,
) -> zarr.Array:
    """Open a Zarr array read-only: the array at ``path``, or the group's member ``array``.

    Raises
    ------
    InvalidInputError
        When nothing is at ``path``, the group has no such array, or the metadata
        declare a non-numeric dtype or an unsafe codec.
    """
    p = as_location(path)
    if meta is None:
        meta = zarr_metadata(p)
    if meta is None:
        if not p.exists():
            raise InvalidInputError(f"No Zarr array or group at '{p}': the path does not exist.")
        raise InvalidInputError(f"No Zarr array or group at '{p}' (no Zarr metadata found).")
    where = f"The Zarr array at '{p}'"
    if meta.get("node_type") == "group":
        member = p.child(array)
        member_meta = zarr_metadata(member)
        if member_meta is None or member_meta.get("node_type") != "array":
            try:
                names = sorted(zarr.open_group(store=p.zarr_store(), mode="r").array_keys())
            except Exception:
                names = []
            held = f" (it holds: {', '.join(names)})" if names else " (it holds no arrays)"
            raise InvalidInputError(
                f"The Zarr group at '{p}' has no array {array!r}{held}; "
                "name the array to use (--array NAME, or array=...)."
            )
        meta, where, p = member_meta, f"The Zarr array '{array}' in '{p}'", member
    check_zarr_metadata(meta, where)
    try:
        with p.errors("open"), zarr.config.set({"codec_pipeline.batch_size": READ_BATCH_CHUNKS}):
            arr = zarr.open_array(store=p.zarr_store(), mode="r")
    except InvalidInputError:
        raise
    except Exception as err:
        raise InvalidInputError(f"{where} cannot be opened: {err}") from None
    return arr


def _check_shape(shape: tuple[int, ...], where: str, min_rows: int = 1) -> None:
    if len(shape) != 2:
        hint = (
            " Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
            if len(shape) == 1
            else ""
        )
        raise InvalidInputError(
            f"Expected 2D array, got {len(shape)}D array instead ({where}, shape={shape}).{hint}"
        )
    if shape[0] < min_rows:
        raise InvalidInputError(
            f"Found array with {shape[0]} sample(s) (shape={shape}) while a minimum of "
            f"{min_rows} is required ({where})."
        )
    if shape[1] < 1:
        raise InvalidInputError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is required "
            f"({where})."
        )


def _float_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _check_row_chunks(col_chunks: tuple[int, ...], n_features: int, where: str) -> None:
    if len(col_chunks) > 1:
        raise InvalidInputError(
            f"{where} is chunked along columns (column chunks {col_chunks}); streammix needs "
            f"whole rows in every chunk. Rechunk it, e.g. x.rechunk({{1: -1}}) for a dask array, "
            f"or rewrite the Zarr array with chunks=(rows, {n_features})."
        )


class ZarrRows:
    """A read-only view of a Zarr array whose read errors name the rows and the array.

    dask reads chunks through ``__getitem__``; a chunk that cannot be decoded
    (truncated or altered file) becomes an :class:`InvalidInputError` instead of
    a codec's bare exception.
    """

    def __init__(self, array: zarr.Array, where: str) -> None:
        self.array = array
        self.where = where
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read_into(key, None)

    def read_into(self, key: Any, out: np.ndarray | None) -> np.ndarray:
        """``self[key]``, decoded straight into ``out`` (a possibly strided array of the
        selection's shape and the array's dtype) when given: no copy of the rows."""
        try:
            if out is None:
                return np.asarray(self.array[key])
            self.array.get_basic_selection(key, out=NDBuffer.from_numpy_array(out))
            return out
        except StreammixError:
            raise
        except PermissionError as err:
            raise StorageError(
                redact(f"{self.where}: access denied while reading ({err}).")
            ) from None
        except (ConnectionError, TimeoutError) as err:
            raise StorageError(
                redact(f"{self.where}: the store could not be reached ({err}).")
            ) from None
        except Exception as err:
            rows = key[0] if isinstance(key, tuple) else key
            span = f"rows {rows.start}-{rows.stop}" if isinstance(rows, slice) else "rows"
            raise InvalidInputError(
                f"{self.where}: cannot read {span} (a damaged or missing chunk?): "
                f"{type(err).__name__}: {err}"
            ) from None


def _from_zarr(arr: zarr.Array, where: str) -> ChunkedData:
    check_zarr_metadata(arr.metadata.to_dict(), where)
    _check_shape(tuple(arr.shape), where)
    chunk_cols = arr.chunks[1]
    if chunk_cols < arr.shape[1]:
        cols = tuple(min(chunk_cols, arr.shape[1] - s) for s in range(0, arr.shape[1], chunk_cols))
        _check_row_chunks(cols, arr.shape[1], where)
    reader = ZarrRows(arr, where)
    return ChunkedData.from_reader(
        reader, int(arr.chunks[0]), where, dtype=_float_dtype(np.dtype(arr.dtype))
    )


def _from_dask(x: da.Array) -> ChunkedData:
    where = "the dask array"
    if x.dtype.kind not in "biuf":
        raise InvalidInputTypeError(f"Expected numeric data, got a dask array of dtype {x.dtype}.")
    _check_shape(tuple(x.shape), where)
    if any(np.isnan(c) for c in x.chunks[0]):
        raise InvalidInputError(
            "The dask array has unknown chunk sizes; call x.compute_chunk_sizes() first."
        )
    _check_row_chunks(tuple(x.chunks[1]), x.shape[1], "The dask array")
    target = _float_dtype(x.dtype)
    if x.dtype != target:
        x = x.astype(target)
    return ChunkedData.from_dask(x)


def as_numpy(X: Any, allow_nan: bool = False) -> np.ndarray:
    """Validate in-memory input the way scikit-learn users expect, as float32/64.

    With ``allow_nan``, NaN marks missing entries and only infinity is refused.
    """
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise InvalidInputTypeError(
            "Sparse data was passed, but dense data is required: convert it with X.toarray()."
        )
    arr = np.asarray(X)
    if arr.dtype.kind == "c":
        raise InvalidInputError("Complex data not supported.")
    if arr.dtype.kind in "OUS":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise InvalidInputTypeError(
                f"Expected numeric data, got {arr.dtype} values that are not numbers: "
                f"argument must be a string or a real number ({err})."
            ) from None
    if arr.dtype.kind not in "biuf":
        raise InvalidInputTypeError(f"Expected numeric data, got dtype {arr.dtype}.")
    _check_shape(arr.shape, "numpy array")
    arr = np.ascontiguousarray(arr, dtype=_float_dtype(arr.dtype))
    finite = np.all(~np.isinf(arr) if allow_nan else np.isfinite(arr), axis=1)
    if not finite.all():
        raise NonFiniteInput(int(np.flatnonzero(~finite)[0]))
    return arr


def input_id(X: Any, array: str = DEFAULT_ARRAY, columns: Sequence[str] | None = None) -> str:
    """What identifies an input in job records and checkpoint fingerprints, so that an
    output or a checkpoint is only continued with the input it was made from.

    * a location: its text (never its storage options) with the array or columns
      used; rows appended later are the business of incremental runs;
    * a ``zarr.Array``: its store and path, likewise;
    * a dask array: the name dask gave it, which follows the content for arrays
      built from numpy data, seeds or other named arrays (and the location for
      arrays read from files);
    * anything else (numpy arrays, lists): a SHA-256 of its values, with dtype
      and shape, so another array of the same shape is another input.

    Examples
    --------
    >>> import numpy as np
    >>> input_id(np.zeros((2, 2))) == input_id(np.zeros((2, 2)))
    True
    >>> input_id(np.zeros((2, 2))) == input_id(np.ones((2, 2)))
    False
    """
    if is_location(X):
        what = ",".join(columns) if columns else array
        return f"{as_location(X)}::{what}"
    if isinstance(X, ChunkedData):
        X = X.array
    if isinstance(X, zarr.Array):
        return f"zarr:{X.store}::{X.path}"
    if isinstance(X, da.Array):
        return f"dask:{X.name}"
    values = np.asarray(X)
    if values.dtype.kind not in "biufc":
        values = np.asarray(values.tolist(), dtype=np.float64)
    values = np.ascontiguousarray(values)
    digest = hashlib.sha256()
    digest.update(f"{values.dtype.str}{values.shape}".encode())
    digest.update(values.reshape(-1).view(np.uint8).data)
    return f"numpy:{values.dtype.str}:{'x'.join(map(str, values.shape))}:{digest.hexdigest()}"


def open_location(
    where: str | os.PathLike[str] | Location,
    array: str = DEFAULT_ARRAY,
    columns: Sequence[str] | None = None,
) -> ChunkedData:
    """The data at a location: a Zarr array or group (member ``array``), or a Parquet
    file or dataset (``columns``, default all numeric ones)."""
    from . import parquet

    loc = as_location(where)
    meta = zarr_metadata(loc)
    if meta is None and parquet.is_parquet(loc):
        source = parquet.ParquetSource.open(loc, columns)
        return source.chunked()
    if columns:
        raise InvalidInputError(
            f"'{loc}' is not a Parquet file or dataset; --columns applies to Parquet input "
            "(for a Zarr group, name the array with --array)."
        )
    arr = open_zarr_array(loc, array, meta)
    return _from_zarr(arr, f"The Zarr array at '{loc}'")


def as_chunked(
    X: Any,
    array: str = DEFAULT_ARRAY,
    allow_nan: bool = False,
    columns: Sequence[str] | None = None,
    storage_options: StorageOptions | None = None,
) -> ChunkedData:
    """Any accepted input as :class:`ChunkedData` (numpy input checked for NaN/inf now,
    lazy input while it is read).

    Parameters
    ----------
    X : array-like, dask array, zarr.Array, or a location (path, URL or Location)
    array : str
        The member to use when ``X`` is a Zarr group.
    allow_nan : bool
        Let NaN through (missing values) in numpy input.
    columns : sequence of str, optional
        The columns of a Parquet input (default: every numeric column).
    storage_options : mapping, optional
        fsspec options for a URL given as a string.
    """
    if isinstance(X, ChunkedData):
        return X
    if is_location(X):
        return open_location(as_location(X, storage_options), array, columns)
    if isinstance(X, zarr.Array):
        return _from_zarr(X, f"The Zarr array {X.path or X.store}")
    if isinstance(X, zarr.Group):
        if array not in X:
            raise InvalidInputError(f"The Zarr group has no array {array!r}.")
        member = X[array]
        if not isinstance(member, zarr.Array):
            raise InvalidInputError(f"The Zarr group member {array!r} is not an array.")
        return _from_zarr(member, f"The Zarr array {array!r}")
    if isinstance(X, da.Array):
        return _from_dask(X)
    return ChunkedData.from_numpy(as_numpy(X, allow_nan=allow_nan))
