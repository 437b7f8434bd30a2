"""Row-aligned job outputs in Zarr, and the contract that makes jobs safe to re-run.

Layer: edges (Zarr files).

The contract:

* An output is a Zarr group whose arrays have one row per input row and the
  input's row chunks. The driver creates the group and its arrays once; tasks
  only write whole chunks of rows they own, so no two tasks touch one chunk.
* Rows not written yet read as the fill value: NaN for floats, ``-2`` for the
  integer arrays (``-1`` means "could not be scored").
* Each array has a progress array ``_done/<name>`` holding, per chunk, the rows
  written; a task writes it after the chunk's data. Zarr writes every chunk
  file atomically, so a killed job leaves whole chunks or none. A chunk is done
  when its mark exists (unwritten marks are not stored), so the driver learns
  the progress by listing the marks, not by reading one object per chunk.
* The group records the job that owns it (``job`` attribute: the kind of job,
  the model's checksum, the input and the options). A run of the same job
  writes only the chunks still missing, so a killed job started again ends
  with the same bytes as an uninterrupted one, and a finished job re-run
  changes nothing. A different job refuses to touch the output unless asked to
  overwrite it.
* ``complete`` is set to true last, after every chunk is verified written, and
  to false before a run writes anything.
* When the input has grown (rows appended), an incremental run resizes the
  arrays and writes the new chunks (and the previously last chunk when it was
  partial): it ends equal to a full run over the grown input.
* The group's metadata, with the job record, is created in one write: nobody
  sees the group without knowing whose it is.
* One run writes an output at a time (:func:`writing` holds the output's
  lease, :mod:`streammix.io.lease`): a second run started meanwhile waits for
  the first, then finishes what is missing (usually nothing).
* A run that stops half way keeps what it wrote, whatever stopped it (Ctrl-C,
  ``SIGTERM``, ``SIGKILL``, a lost worker or store): running it again finishes
  the output, with the bytes of an uninterrupted run. The one exception is an
  output this run created for an input that turns out to be unusable (NaN
  rows with ``on_invalid="error"``, a wrong shape): nothing is left that looks
  like a result, since running again would fail the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ..engine.data import ChunkedData
from ..errors import InvalidInputError, InvalidParameterError, OutputConflictError, StreammixError
from .lease import holding
from .location import Location, as_location, is_write_temporary

Progress = Callable[[int, int], None]

NOT_WRITTEN = -2
UNSCORABLE = -1


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """One output array: name, dtype, and extra trailing shape (``()`` for one value per row)."""

    name: str
    dtype: str
    tail: tuple[int, ...] = ()

    @property
    def fill_value(self) -> Any:
        return np.nan if np.dtype(self.dtype).kind == "f" else NOT_WRITTEN


def regular_chunk_rows(row_chunks: Sequence[int]) -> int:
    """The chunk size of an input whose chunks are regular (all equal but the last)."""
    first = row_chunks[0]
    if any(c != first for c in row_chunks[:-1]) or row_chunks[-1] > first:
        raise InvalidInputError(
            f"The input's row chunks are irregular ({tuple(row_chunks[:4])}...); outputs need "
            "regular chunks: rechunk the input to a fixed number of rows per chunk."
        )
    return int(first)


def _rows_in_chunks(n_rows: int, chunk_rows: int) -> np.ndarray:
    n_chunks = max(1, -(-n_rows // chunk_rows))
    rows = np.full(n_chunks, chunk_rows, dtype=np.int64)
    rows[-1] = n_rows - chunk_rows * (n_chunks - 1)
    return rows


class RowOutput:
    """An output group row-aligned with an input of ``n_rows`` rows in chunks of ``chunk_rows``."""

    def __init__(
        self, location: Location, specs: Sequence[ArraySpec], n_rows: int, chunk_rows: int
    ):
        self.path = location
        self.specs = {s.name: s for s in specs}
        self.n_rows = n_rows
        self.chunk_rows = chunk_rows

    # --------------------------------------------------------------- opening
    @classmethod
    def prepare(
        cls,
        path: str | os.PathLike[str] | Location,
        specs: Sequence[ArraySpec],
        job: Mapping[str, Any],
        n_rows: int,
        chunk_rows: int,
        *,
        incremental: bool = False,
        overwrite: bool = False,
        parts: Sequence[tuple[str, int]] = (),
    ) -> tuple[RowOutput, bool]:
        """Create the output, or open it for another run of the same job.

        ``parts`` (the files of an input made of files, with their rows) are
        recorded; an incremental run checks that the files it saw before are
        still there, unchanged, in the same order (new files only appended).

        Returns the output and whether this call created it.
        """
        location = as_location(path)
        location.check_writable()
        out = cls(location, specs, n_rows, chunk_rows)
        group = out._open_existing()
        job = dict(job)
        if group is not None:
            recorded = group.attrs.get("job")
            if recorded != job:
                if not overwrite:
                    raise OutputConflictError(
                        f"The output '{out.path}' was written by another job (different "
                        "model, input or options); pass --overwrite to replace it."
                    )
                group = None
            else:
                old_rows = int(str(group.attrs.get("n_rows", -1)))
                if old_rows > n_rows:
                    if not overwrite:
                        raise OutputConflictError(
                            f"The input has {n_rows} rows but '{out.path}' holds {old_rows}: "
                            "the input shrank. Pass --overwrite to score it from scratch."
                        )
                    group = None
                elif old_rows < n_rows and not incremental:
                    raise OutputConflictError(
                        f"The input grew from {old_rows} to {n_rows} rows since '{out.path}' "
                        "was written; pass --incremental to score only the new rows, or "
                        "--overwrite to start again."
                    )
                elif old_rows < n_rows:
                    out._check_appended(group, parts)
                    out._grow(group, old_rows)
                    if parts:
                        group.attrs["input_parts"] = [list(p) for p in parts]
        if group is None:
            out._create(job)
            if parts:
                out.set_attrs(input_parts=[list(p) for p in parts])
            return out, True
        for spec in specs:
            out._create_array(group, spec)
        return out, False

    def _open_existing(self) -> zarr.Group | None:
        if not check_destination(self.path):
            return None
        return open_output(self.path, "r+")

    def _create(self, job: dict[str, Any]) -> None:
        if self.path.exists():
            self.path.remove()
        # The group and its job record in one write (never a group of nobody's).
        attrs = {"job": job, "n_rows": self.n_rows, "chunk_rows": self.chunk_rows}
        group = open_output(self.path, "w", attributes={**attrs, "complete": False})
        for spec in self.specs.values():
            self._create_array(group, spec)

    def _create_array(self, group: zarr.Group, spec: ArraySpec) -> None:
        """Create ``spec``'s array and its progress array, each unless it exists (a run
        killed between the two left one)."""
        if spec.name not in group:
            group.create_array(
                spec.name,
                shape=(self.n_rows, *spec.tail),
                chunks=(self.chunk_rows, *spec.tail),
                dtype=spec.dtype,
                fill_value=spec.fill_value,
            )
        n_chunks = len(_rows_in_chunks(self.n_rows, self.chunk_rows))
        if f"_done/{spec.name}" not in group:
            group.create_array(
                f"_done/{spec.name}", shape=(n_chunks,), chunks=(1,), dtype="int64", fill_value=0
            )

    def _check_appended(self, group: zarr.Group, parts: Sequence[tuple[str, int]]) -> None:
        recorded: Any = group.attrs.get("input_parts") or []
        old = [tuple(p) for p in recorded]
        new = [tuple(p) for p in parts]
        if old and new[: len(old)] != old:
            changed = next((o for o, n in zip(old, new, strict=False) if o != n), old[-1])
            raise OutputConflictError(
                f"The input's files changed since '{self.path}' was written (first "
                f"difference at {changed[0]!r}): only appended files can be scored "
                "incrementally. Pass --overwrite to score it from scratch."
            )

    def _grow(self, group: zarr.Group, old_rows: int) -> None:
        group.attrs["complete"] = False
        n_chunks = len(_rows_in_chunks(self.n_rows, self.chunk_rows))
        old_chunks = _rows_in_chunks(old_rows, self.chunk_rows)
        for name in self.specs:
            if name not in group:
                continue
            arr = member(group, name)
            arr.resize((self.n_rows, *arr.shape[1:]))
            done = member(group, f"_done/{name}")
            done.resize((n_chunks,))
            if old_chunks[-1] < self.chunk_rows:
                done[len(old_chunks) - 1] = 0  # the old last chunk was partial: redo it
        group.attrs["n_rows"] = self.n_rows

    # ------------------------------------------------------------- progress
    def group(self, mode: str = "r+") -> zarr.Group:
        return open_output(self.path, mode)

    def expected_rows(self) -> np.ndarray:
        return _rows_in_chunks(self.n_rows, self.chunk_rows)

    def todo(self, name: str) -> list[int]:
        """Chunks of array ``name`` not yet written for the current input size."""
        marks = self.path.child("_done", name, "c").listdir()
        done = {int(m) for m in marks if m.isdigit()}
        return [i for i in range(len(self.expected_rows())) if i not in done]

    def reset(self, name: str) -> None:
        """Mark every chunk of ``name`` as not written (e.g. the threshold changed)."""
        group = self.group()
        group.attrs["complete"] = False
        member(group, f"_done/{name}")[:] = 0

    def mark_incomplete(self) -> None:
        group = self.group()
        if group.attrs.get("complete") is not False:
            group.attrs["complete"] = False

    def set_attrs(self, **attrs: Any) -> None:
        group = self.group()
        for k, v in attrs.items():
            if group.attrs.get(k) != v:
                group.attrs[k] = v

    def finish(self) -> None:
        """Verify every array is fully written, then mark the output complete."""
        for name in self.specs:
            missing = self.todo(name)
            if missing:
                raise StreammixError(
                    f"Output array {name!r} still misses chunks {missing[:5]}; not marking "
                    "the output complete."
                )
        group = self.group()
        if group.attrs.get("complete") is not True:
            group.attrs["complete"] = True

    def remove(self) -> None:
        self.path.remove()

    def arrays(self) -> OutputArrays:
        """The output's arrays, opened once here, for the tasks that write them."""
        group = self.group()
        names = [n for n in self.specs if n in group]
        opened = {n: member(group, n) for n in names}
        opened.update({f"_done/{n}": member(group, f"_done/{n}") for n in names})
        return OutputArrays(self.path, opened)


@dataclass(frozen=True, eq=False)
class OutputArrays:
    """An output's arrays as tasks use them: opened once by the driver and shipped with
    the tasks, so that writing a chunk costs one request for its rows and one for its
    progress mark, and reading rows one request per chunk."""

    location: Location
    members: Mapping[str, zarr.Array]

    def write(self, name: str, chunk: int, start: int, values: np.ndarray) -> None:
        """Write one chunk's rows of array ``name``, then its progress mark."""
        with self.location.errors("write"):
            self.members[name][start : start + values.shape[0]] = values
            self.members[f"_done/{name}"][chunk] = values.shape[0]

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of array ``name``."""
        with self.location.errors():
            return np.asarray(self.members[name][start:stop])


def member(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``group`` (typed as an array)."""
    arr = group[name]
    if not isinstance(arr, zarr.Array):
        raise StreammixError(f"'{name}' in the output is not an array")
    return arr


def open_output(
    location: Location, mode: str = "r", attributes: Mapping[str, Any] | None = None
) -> zarr.Group:
    """The output group at ``location`` (``"w"`` creates it with ``attributes``, in one
    write, replacing what is there)."""
    with location.errors("open" if mode == "r" else "write"):
        store = location.zarr_store(read_only=mode == "r")
        return zarr.open_group(
            store=store,
            mode=mode,  # type: ignore[arg-type]
            attributes=dict(attributes) if attributes is not None else None,
        )


def check_destination(path: str | os.PathLike[str] | Location) -> bool:
    """Refuse, before any work, a location that cannot hold an output: a filesystem
    root or bare bucket, a local path under a file, a file, or anything but a
    streammix output. Returns whether an output is there already.

    Raises
    ------
    InvalidInputError
        The location holds something else than a streammix output.
    InvalidParameterError
        A filesystem root or a bare bucket.
    """
    location = as_location(path)
    location.check_writable()
    if not location.exists():
        return False
    if location.isfile():
        raise InvalidInputError(
            f"'{location}' is a file, not a streammix output (a Zarr group); choose another "
            "output path or remove it."
        )
    if not location.listdir():
        return False  # an empty directory (made by hand, or by a run killed at once)
    try:
        attrs = open_output(location, "r").attrs.asdict()
    except Exception as err:
        raise InvalidInputError(
            f"'{location}' exists and is not a streammix output ({err}); choose another "
            "output path or remove it."
        ) from None
    if "job" not in attrs:
        raise InvalidInputError(
            f"'{location}' exists and is not a streammix output; choose another path."
        )
    return True


@contextlib.contextmanager
def holding_output(location: Location) -> Iterator[None]:
    """Hold the lease of an output, first removing what a killed writer of a local
    output left behind: local files are written to a temporary and renamed (by Zarr,
    and by streammix for pointers and states; see
    :func:`~streammix.io.location.is_write_temporary`), so a run killed between the
    two leaves the temporary (never read as data, but litter that would make two
    equal outputs differ). No other run writes while the lease is held."""
    with holding(location):
        if location.is_local and os.path.isdir(location.url):
            for folder, _, names in os.walk(location.url):
                for name in names:
                    if is_write_temporary(name):
                        os.remove(os.path.join(folder, name))
        yield


@contextlib.contextmanager
def writing(
    path: str | os.PathLike[str] | Location,
    specs: Sequence[ArraySpec],
    job: Mapping[str, Any],
    n_rows: int,
    chunk_rows: int,
    *,
    incremental: bool = False,
    overwrite: bool = False,
    parts: Sequence[tuple[str, int]] = (),
) -> Iterator[tuple[RowOutput, bool]]:
    """Write an output: hold its lease, create it or open it for another run of the
    same job (:meth:`RowOutput.prepare`), let the block write the chunks still
    missing, then mark it complete. Yields the output and whether this run created it.

    A failure keeps what was written (the next run finishes it), except that an
    output created by this run is removed when the input or the options are at
    fault (:class:`InvalidInputError`, :class:`InvalidParameterError`).

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "o.zarr")
    >>> with writing(out, [ArraySpec("x", "float64")], {"kind": "demo"}, 10, 5) as (o, new):
    ...     arrays = o.arrays()
    ...     for chunk in o.todo("x"):
    ...         arrays.write("x", chunk, 5 * chunk, np.zeros(5))
    >>> new, is_complete(out)
    (True, True)
    """
    location = as_location(path)
    location.check_writable()
    with holding_output(location):
        out, created = RowOutput.prepare(
            location,
            specs,
            job,
            n_rows,
            chunk_rows,
            incremental=incremental,
            overwrite=overwrite,
            parts=parts,
        )
        try:
            yield out, created
            out.finish()
        except (InvalidInputError, InvalidParameterError):
            if created:
                out.remove()
            raise


def write_lazy(out: RowOutput, name: str, lazy: Any, progress: Progress | None) -> int:
    """Write the chunks of a row-aligned (lazy or numpy) array that ``out`` still misses."""
    todo = out.todo(name)
    if not todo:
        return 0
    if isinstance(lazy, da.Array):
        rows = ChunkedData.from_dask(lazy)
    else:
        rows = ChunkedData.from_numpy(np.asarray(lazy), chunk_rows=out.chunk_rows)
    out.mark_incomplete()
    rows.map_chunks(_write_block, out.arrays(), name, chunks=todo, progress=progress, label=name)
    return len(todo)


def _write_block(
    values: np.ndarray, offset: int, chunk: int, arrays: OutputArrays, name: str
) -> None:
    arrays.write(name, chunk, offset, values)


def write_rows(arrays: OutputArrays, name: str, chunk: int, start: int, values: np.ndarray) -> None:
    """Write one chunk's rows of array ``name`` and then its progress mark (a task)."""
    arrays.write(name, chunk, start, np.asarray(values))


def is_complete(path: str | os.PathLike[str] | Location) -> bool:
    """Whether a job output exists and is marked complete."""
    try:
        return bool(open_output(as_location(path), "r").attrs.get("complete") is True)
    except Exception:
        return False
