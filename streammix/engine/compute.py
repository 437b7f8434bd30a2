"""Running dask graphs: one place that calls ``dask.compute``.

Layer: engine (dask + numpy).

Two rules live here. BLAS runs single-threaded while tasks run in this
process: each dask thread already occupies a core, and letting every GEMM
spawn more threads oversubscribes the machine (measured: twice slower, and a
GEMM stalled for seconds when another process held the second core). Worker
processes of a distributed cluster get the same limit from dask's nanny
(``OMP/OPENBLAS/MKL_NUM_THREADS=1``). And a front end (the CLI) can watch every
computation through :func:`watching`, to draw progress bars.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import dask
from dask.callbacks import Callback
from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None

# A callable taking the collections about to be computed and returning a
# context manager that is active while they run (e.g. a progress bar).
_watcher: contextvars.ContextVar[Callable[[str, tuple[Any, ...]], Any] | None] = (
    contextvars.ContextVar("streammix_watcher", default=None)
)


def _blas_controller() -> ThreadpoolController:
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


_guard_lock = threading.Lock()
_guard_depth = 0
_guard_restore: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread in this process while any guarded block runs.

    The limit is process-wide, so overlapping blocks share one
    reference-counted limit: the first sets it, the last restores it.
    """
    global _guard_depth, _guard_restore
    with _guard_lock:
        if _guard_depth == 0:
            _guard_restore = _blas_controller().limit(limits=1, user_api="blas")
        _guard_depth += 1
    try:
        yield
    finally:
        with _guard_lock:
            _guard_depth -= 1
            if _guard_depth == 0 and _guard_restore is not None:
                _guard_restore.restore_original_limits()
                _guard_restore = None


_pool_limit: Any = None


class _RestoreAfterCompute(Callback):
    """Restores BLAS's threads when a dask computation in which tasks limited them ends."""

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        global _pool_limit
        with _guard_lock:
            if _pool_limit is not None:
                _pool_limit.restore_original_limits()
                _pool_limit = None


_restorer: _RestoreAfterCompute | None = None


def restore_blas_after_computations() -> None:
    """Make every dask computation in this process end with BLAS's threads as they
    were before its tasks limited them. Called when streammix hands a lazy result to
    the caller (whose ``compute`` it cannot wrap); registers one scheduler callback,
    once."""
    global _restorer
    if _restorer is None:
        with _guard_lock:
            if _restorer is None:
                _restorer = _RestoreAfterCompute()
                _restorer.register()


def single_threaded_blas_in_pools() -> None:
    """Called by every chunk task: on a thread other than the main one (a dask
    thread pool computing lazy results the caller asked for), set BLAS to one
    thread until that computation ends.

    Switching the limit on and off around every task costs more than the tasks
    (measured: a lazy score ten times slower), so the limit is set by the first
    task, as dask recommends for BLAS inside its thread pools
    (``OMP_NUM_THREADS=1``), and restored when the computation finishes (see
    :func:`restore_blas_after_computations`): the caller's process gets its BLAS
    threads back.
    """
    global _pool_limit
    if _pool_limit is not None or threading.current_thread() is threading.main_thread():
        return
    with _guard_lock:
        # Inside streammix's own computations the guard holds the limit already.
        if _pool_limit is None and _guard_depth == 0:
            _pool_limit = _blas_controller().limit(limits=1, user_api="blas")


P = ParamSpec("P")
R = TypeVar("R")


def blas_guarded(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with single-threaded BLAS: for fits, whose small client-side
    linear algebra (Cholesky factors of every M-step) otherwise stalls on BLAS
    threads competing with the chunk tasks for the same cores."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with single_threaded_blas():
            return func(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def watching(watcher: Callable[[str, tuple[Any, ...]], Any]) -> Iterator[None]:
    """Route every computation of the block through ``watcher(label, collections)``."""
    token = _watcher.set(watcher)
    try:
        yield
    finally:
        _watcher.reset(token)


def compute(*collections: Any, label: str = "compute") -> tuple[Any, ...]:
    """``dask.compute`` with single-threaded BLAS and the active watcher."""
    watcher = _watcher.get()
    ctx = watcher(label, collections) if watcher is not None else contextlib.nullcontext()
    with single_threaded_blas(), ctx:
        return dask.compute(*collections)


def run_tasks(
    tasks: Sequence[Any],
    progress: Callable[[int, int], None] | None = None,
    label: str = "tasks",
    sizes: Sequence[int] | None = None,
) -> list[Any]:
    """Compute independent delayed tasks; with a distributed client, report every
    completion to ``progress(done, total)`` (otherwise once, at the end).

    ``sizes`` are the units each task covers (chunks of a batch); progress then
    counts units, not tasks.
    """
    if not tasks:
        return []
    weights = list(sizes) if sizes is not None else [1] * len(tasks)
    total = sum(weights)
    try:
        from distributed import as_completed, default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        results = list(compute(*tasks, label=label))
        if progress:
            progress(total, total)
        return results
    futures = client.compute(list(tasks))
    index = {f.key: i for i, f in enumerate(futures)}
    gathered: list[Any] = [None] * len(futures)
    done = 0
    try:
        for future in as_completed(futures):
            i = index[future.key]
            gathered[i] = future.result()
            done += weights[i]
            if progress:
                progress(done, total)
    except BaseException:
        client.cancel(futures)
        raise
    return gathered


def map_indices(
    func: Callable[..., Any],
    indices: Sequence[int],
    *args: Any,
    progress: Callable[[int, int], None] | None = None,
    label: str = "tasks",
) -> list[Any]:
    """``func(index, *args)`` for every index as independent tasks, computed now
    (work with no input chunks: drawing a chunk of samples, writing a chunk of
    flags). ``args`` are shipped once, not once per task."""
    from dask.delayed import delayed

    shared = [delayed(a, traverse=False) for a in args]
    return run_tasks([delayed(func, pure=True)(i, *shared) for i in indices], progress, label)
