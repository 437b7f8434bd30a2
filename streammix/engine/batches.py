"""Batches of chunks: how many chunks one task walks, and the tasks that walk them.

Layer: engine (dask + numpy).

The scheduler is one process and pays a few milliseconds for every task of
every pass, so a pass over ``C`` chunks on ``W`` worker threads makes about
``TASKS_PER_THREAD x W`` tasks, not ``C``: each task walks a contiguous batch,
reading the rows itself (through the input's reader, one call per leaf) or
taking them from worker memory, and reduces them before anything leaves the
worker. Only the reduced values travel.

Two sizes, both powers of ``SPLIT_EVERY`` and aligned with the fixed-order
reduction of :mod:`streammix.engine.reduce`:

* a *leaf* is ``SPLIT_EVERY ** leaf_level`` consecutive chunks, read and handed
  to the chunk function at once (small chunks cost a read and a kernel call
  each; see :attr:`streammix.engine.data.ChunkedData.leaf_level`): it depends
  on the chunking, the width and the dtype only;
* a *batch* is ``SPLIT_EVERY ** level`` consecutive leaves, the work of one
  task: it depends on the number of worker threads.

A batch is exactly one subtree of the reduction over leaves, so reducing inside
the batches and then across them adds the same numbers in the same order as
reducing leaf by leaf: results are bit-identical whatever the number of
workers, the batch size or the order in which tasks finish. A lost worker's
tasks are run again by Dask (they are pure: they read, or take held rows).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NonFiniteInput, NonFiniteRow, UnscorableInput, UnscorableRow
from .compute import single_threaded_blas_in_pools
from .reduce import SPLIT_EVERY, tree_reduce

# Tasks per worker thread and pass: enough for balance and for a lost worker's
# share to be spread over the others, few enough that the scheduler stays idle.
TASKS_PER_THREAD = 4


def parallelism() -> int:
    """Worker threads that will run the next computation: those of the default
    distributed client's workers, else the local scheduler's threads."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # a scheduler without workers yet, or going away
            return 1
    import dask

    return max(1, int(dask.config.get("num_workers", None) or os.cpu_count() or 1))


def batch_level(n_chunks: int, threads: int) -> int:
    """The largest ``level`` whose batches of ``SPLIT_EVERY ** level`` chunks still
    make at least ``TASKS_PER_THREAD x threads`` tasks (0: one chunk per task).

    Examples
    --------
    >>> batch_level(1000, 2), batch_level(10, 2), batch_level(100_000, 1000)
    (2, 0, 1)
    """
    target = TASKS_PER_THREAD * max(1, threads)
    level = 0
    while -(-n_chunks // SPLIT_EVERY ** (level + 1)) >= target:
        level += 1
    return level


def batch_ranges(n_chunks: int, level: int) -> list[range]:
    """Consecutive aligned batches of ``SPLIT_EVERY ** level`` chunks covering all."""
    size = SPLIT_EVERY**level
    return [range(s, min(s + size, n_chunks)) for s in range(0, n_chunks, size)]


def runs(chunks: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """``chunks`` cut into runs of at most ``size`` consecutive indices, in order
    (for passes over a chosen subset of chunks, where no reduction order matters)."""
    out: list[tuple[int, ...]] = []
    current: list[int] = []
    for c in chunks:
        if current and (c != current[-1] + 1 or len(current) >= size):
            out.append(tuple(current))
            current = []
        current.append(c)
    if current:
        out.append(tuple(current))
    return out


def row_offsets(row_chunks: Sequence[int]) -> tuple[int, ...]:
    """The first row of every chunk."""
    return tuple(itertools.accumulate(row_chunks[:-1], initial=0)) if row_chunks else ()


@dataclass(frozen=True, slots=True, eq=False)
class ChunkReader:
    """What a task needs to read rows itself: the input's reader
    (``reader[row_slice, col_slice]``), the dtype rows are converted to, and the
    number of columns.

    Small when pickled (no per-chunk list), so a pass ships it once.
    """

    reader: Any
    dtype: np.dtype
    n_features: int

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``: one call, which fetches and decodes the chunks it
        spans together."""
        block = np.asarray(self.reader[slice(start, stop), slice(0, self.n_features)])
        return block if block.dtype == self.dtype else block.astype(self.dtype)


# A leaf's rows as a task finds them: read through the shared reader, or held
# (one array, or the leaf's chunks as arrays, joined on use).
Held = np.ndarray | Sequence[np.ndarray]


def on_chunk(func: Callable[..., Any], chunk: Any, offset: int, *args: Any) -> Any:
    """Run a chunk function, turning chunk-local row errors into global ones."""
    chunk = np.asarray(chunk)
    single_threaded_blas_in_pools()
    try:
        return func(chunk, offset, *args)
    except NonFiniteRow as err:
        raise NonFiniteInput(offset + err.row, first=False) from None
    except UnscorableRow as err:
        raise UnscorableInput(offset + err.row) from None


def _joined(held: Held) -> np.ndarray:
    if isinstance(held, np.ndarray):
        return held
    return held[0] if len(held) == 1 else np.concatenate(held, axis=0)


def _walk(source: ChunkReader | Sequence[Held], spans: np.ndarray) -> Iterator[np.ndarray]:
    """The rows of every span (rows of ``spans``: start, stop), one span in memory
    at a time when read."""
    if isinstance(source, ChunkReader):
        return (source.read(int(a), int(b)) for a, b in spans)
    return (_joined(h) for h in source)


def load_batch(source: ChunkReader | Sequence[Held], spans: np.ndarray) -> tuple[np.ndarray, ...]:
    """The rows of every leaf of a batch (a task whose result stays on its worker)."""
    return tuple(_walk(source, spans))


def reduce_batch(
    source: ChunkReader | Sequence[Held],
    spans: np.ndarray,
    func: Callable[..., Any],
    combine: Callable[[Any, Any], Any],
    *args: Any,
) -> Any:
    """``combine``-reduction (the tree of :func:`tree_reduce`) of
    ``func(rows, first_row, *args)`` over the leaves of a batch (``spans``: one
    ``(start, stop)`` row per leaf)."""
    parts = [
        on_chunk(func, X, int(a), *args)
        for X, (a, _) in zip(_walk(source, spans), spans, strict=True)
    ]
    return tree_reduce(parts, combine)


@dataclass(frozen=True, slots=True, eq=False)
class BatchFailure:
    """What a batch of a chunk job returns when one of its chunks failed: the error
    and the chunks done before it. Returned, not raised, so that the job raises
    only once every task has stopped (none still writing) and raises the failure
    of the first chunk, whatever the order in which tasks ended."""

    error: BaseException | None  # None: stopped because another task failed
    done: int


# Passes of chunk jobs in which a task failed: the other tasks of the pass in this
# process stop at their next chunk.
_failed_passes: set[str] = set()


def map_batch(
    source: ChunkReader | Sequence[Held],
    table: np.ndarray,
    sizes: Sequence[int],
    token: str,
    func: Callable[..., Any],
    *args: Any,
) -> list[Any] | BatchFailure:
    """``func(chunk, first_row, chunk_index, *args)`` for every chunk of a batch.

    ``table`` has one ``(chunk_index, start, stop)`` row per chunk, in groups of
    ``sizes`` consecutive chunks; each group is read (or joined) at once and cut
    into its chunks. A failure is returned as a :class:`BatchFailure`; ``token``
    names the pass, whose other tasks then stop early.
    """
    bounds = np.cumsum((0, *sizes))
    groups = [table[i:j] for i, j in itertools.pairwise(bounds)]
    spans = np.array([(g[0, 1], g[-1, 2]) for g in groups], dtype=np.int64).reshape(-1, 2)
    out: list[Any] = []
    try:
        for X, group in zip(_walk(source, spans), groups, strict=True):
            base = int(group[0, 1])
            for c, a, b in group.tolist():
                if token in _failed_passes:
                    return BatchFailure(None, len(out))
                out.append(on_chunk(func, X[a - base : b - base], a, c, *args))
    except Exception as err:
        _failed_passes.add(token)
        return BatchFailure(err, len(out))
    return out


def raise_first_failure(results: Sequence[Any], token: str) -> None:
    """Raise the error of the first failed batch (in chunk order), if any."""
    _failed_passes.discard(token)
    for r in results:
        if isinstance(r, BatchFailure) and r.error is not None:
            raise r.error
