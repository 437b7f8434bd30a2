"""Parquet input: a file or a dataset directory of files, read as row-chunked numbers.

Layer: edges (Parquet through pyarrow, on any location of
:mod:`streammix.io.location`).

A dataset is every ``*.parquet`` (``.pq``, ``.parq``) file below a
directory, in the order of their paths; hidden and ``_``-prefixed files are
skipped. Rows keep their order: file after file, row group after row group.
The rows are cut into chunks of a fixed size, the first row group of the first
file rounded up to a multiple holding at least :data:`MIN_CHUNK_ROWS` rows, so
files written with one row-group size give chunks that each read whole row
groups, and appending files to a dataset never moves the boundaries of the
chunks before them (what ``--incremental`` needs).

Only the footers are read when a source is opened; each chunk task reads the
row groups it overlaps, and only the chosen columns. Integer and decimal
columns become floats; nulls become NaN and so follow ``on_invalid`` or
``missing="em"`` like NaN. A non-numeric column named in ``columns`` is an
input error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..engine.data import ChunkedData
from ..errors import InvalidInputError, StorageError
from .location import Location

SUFFIXES = (".parquet", ".pq", ".parq")
MIN_CHUNK_ROWS = 65_536


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise StorageError(
            "Reading Parquet needs pyarrow, which is not installed: "
            "pip install 'streammix[parquet]'."
        ) from None
    return pyarrow


def _is_part(name: str) -> bool:
    return name.endswith(SUFFIXES) and not name.startswith((".", "_"))


def dataset_files(loc: Location) -> list[Location]:
    """The Parquet files of a file or dataset location, in row order."""
    if loc.isfile():
        return [loc] if loc.name.endswith(SUFFIXES) else []
    files = []
    for f in loc.find():
        rel = f.url[len(loc.url) :].lstrip("/")
        if all(not part.startswith((".", "_")) for part in rel.split("/")) and _is_part(f.name):
            files.append(f)
    return files


def is_parquet(loc: Location) -> bool:
    """Whether ``loc`` is a Parquet file or a directory holding Parquet files."""
    if loc.name.endswith(SUFFIXES) and loc.isfile():
        return True
    return loc.isdir() and bool(dataset_files(loc))


def _numeric(pa: Any, t: Any) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


@dataclass(frozen=True, slots=True, eq=False)
class ParquetPart:
    """One file: where it is, its footer, and its row groups' sizes."""

    location: Location
    metadata: Any
    group_rows: tuple[int, ...]

    @property
    def n_rows(self) -> int:
        return sum(self.group_rows)


class ParquetRows:
    """Rows of a Parquet dataset by global row index, for ``dask.array.from_array``.

    Reading rows ``a:b`` reads each row group overlapping them once.
    """

    def __init__(
        self, parts: Sequence[ParquetPart], columns: Sequence[str], dtype: np.dtype, where: str
    ) -> None:
        self.parts = tuple(parts)
        self.columns = tuple(columns)
        self.dtype = np.dtype(dtype)
        self.where = where
        self.shape = (sum(p.n_rows for p in self.parts), len(self.columns))
        self.ndim = 2
        # global first row of every (part, group)
        self._groups: list[tuple[int, int, int, int]] = []
        row = 0
        for i, p in enumerate(self.parts):
            for g, n in enumerate(p.group_rows):
                self._groups.append((row, row + n, i, g))
                row += n

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        start, stop, _ = rows.indices(self.shape[0])
        if stop <= start:
            return np.empty((0, len(self.columns)), dtype=self.dtype)[:, cols]
        pieces = []
        for g0, g1, part, group in self._groups:
            if g1 <= start or g0 >= stop or g1 == g0:
                continue
            block = self._read(part, group)
            pieces.append(block[max(start, g0) - g0 : min(stop, g1) - g0])
        return np.concatenate(pieces, axis=0)[:, cols]

    def _read(self, part_index: int, group: int) -> np.ndarray:
        pa = _pyarrow()
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        part = self.parts[part_index]
        loc = part.location
        try:
            with loc.errors():
                if loc.is_local:
                    table = pq.ParquetFile(loc.url, metadata=part.metadata).read_row_groups(
                        [group], columns=list(self.columns)
                    )
                else:
                    with loc.open("rb") as fh:
                        table = pq.ParquetFile(fh, metadata=part.metadata).read_row_groups(
                            [group], columns=list(self.columns)
                        )
        except (InvalidInputError, StorageError):
            raise
        except Exception as err:
            raise InvalidInputError(
                f"{self.where}: cannot read row group {group} of '{loc}' "
                f"({type(err).__name__}: {err})."
            ) from None
        out = np.empty((table.num_rows, len(self.columns)), dtype=self.dtype)
        target = pa.float32() if self.dtype == np.float32 else pa.float64()
        for j, name in enumerate(self.columns):
            out[:, j] = pc.cast(table.column(name), target).to_numpy(zero_copy_only=False)
        return out


@dataclass(frozen=True, slots=True, eq=False)
class ParquetSource:
    """A Parquet file or dataset with the columns to read."""

    location: Location
    parts: tuple[ParquetPart, ...]
    columns: tuple[str, ...]
    dtype: np.dtype

    @classmethod
    def open(cls, loc: Location, columns: Sequence[str] | None = None) -> ParquetSource:
        """Read the footers of every file and check the columns.

        Raises
        ------
        InvalidInputError
            No Parquet file, unreadable footers, no numeric column, a named column
            missing or not numeric, files whose schemas disagree.
        """
        _pyarrow()  # a clear error when pyarrow is missing
        import pyarrow.parquet as pq

        files = dataset_files(loc)
        if not files:
            raise InvalidInputError(f"No Parquet files at '{loc}'.")
        parts = []
        for f in files:
            try:
                with f.errors():
                    if f.is_local:
                        md = pq.read_metadata(f.url)
                    else:
                        with f.open("rb") as fh:
                            md = pq.read_metadata(fh)
            except (InvalidInputError, StorageError):
                raise
            except Exception as err:
                raise InvalidInputError(
                    f"'{f}' is not a readable Parquet file ({type(err).__name__}: {err})."
                ) from None
            parts.append(
                ParquetPart(
                    f, md, tuple(md.row_group(g).num_rows for g in range(md.num_row_groups))
                )
            )
        return cls(loc, tuple(parts), (), np.dtype(np.float64)).select(columns)

    @property
    def schema(self) -> Any:
        """The Arrow schema of the first file."""
        return self.parts[0].metadata.schema.to_arrow_schema()

    def select(self, columns: Sequence[str] | None) -> ParquetSource:
        """The same files with ``columns`` (default: every numeric one), checked in
        every file's footer as already read.

        Raises
        ------
        InvalidInputError
            No numeric column, a named column missing or not numeric in some file.
        """
        pa = _pyarrow()
        schema = self.schema
        chosen = self._columns(pa, schema, columns, self.location)
        for part in self.parts:
            other = part.metadata.schema.to_arrow_schema()
            for name in chosen:
                if other.get_field_index(name) < 0 or not _numeric(pa, other.field(name).type):
                    raise InvalidInputError(
                        f"'{part.location}' has no numeric column {name!r}, which the first "
                        f"file of '{self.location}' has; every file of a dataset needs the "
                        "same columns."
                    )
        types = [schema.field(n).type for n in chosen]
        dtype = np.dtype(np.float32 if all(pa.types.is_float32(t) for t in types) else np.float64)
        return replace(self, columns=chosen, dtype=dtype)

    @staticmethod
    def _columns(
        pa: Any, schema: Any, columns: Sequence[str] | None, loc: Location
    ) -> tuple[str, ...]:
        if not columns:
            chosen = tuple(f.name for f in schema if _numeric(pa, f.type))
            if not chosen:
                kinds = ", ".join(f"{f.name} ({f.type})" for f in list(schema)[:6])
                raise InvalidInputError(
                    f"The Parquet data at '{loc}' have no numeric column ({kinds}); "
                    "streammix needs integer or floating-point columns."
                )
            return chosen
        for name in columns:
            index = schema.get_field_index(name)
            if index < 0:
                raise InvalidInputError(
                    f"The Parquet data at '{loc}' have no column {name!r} "
                    f"(columns: {', '.join(schema.names[:20])})."
                )
            if not _numeric(pa, schema.field(name).type):
                raise InvalidInputError(
                    f"Column {name!r} of the Parquet data at '{loc}' is "
                    f"{schema.field(name).type}, not numeric."
                )
        return tuple(columns)

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.parts)

    @property
    def chunk_rows(self) -> int:
        first = next((n for p in self.parts for n in p.group_rows if n > 0), MIN_CHUNK_ROWS)
        return first * max(1, math.ceil(MIN_CHUNK_ROWS / first))

    def file_rows(self) -> list[tuple[str, int]]:
        """Each file's path relative to the dataset, with its rows: what an output
        written from this input records, so that an incremental run can check that
        files were only appended."""
        base = self.location.url
        return [
            (p.location.url[len(base) :].lstrip("/") or p.location.name, p.n_rows)
            for p in self.parts
        ]

    def chunked(self) -> ChunkedData:
        where = f"The Parquet data at '{self.location}'"
        n = self.n_rows
        if n == 0:
            raise InvalidInputError(
                f"Found array with 0 sample(s) (shape=(0, {len(self.columns)})) while a "
                f"minimum of 1 is required ({where})."
            )
        reader = ParquetRows(self.parts, self.columns, self.dtype, where)
        return ChunkedData.from_reader(
            reader, self.chunk_rows, where, dtype=self.dtype, parts=tuple(self.file_rows())
        )
