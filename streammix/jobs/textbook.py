"""Jobs for what the textbook does with a mixture: sample, impute, KDE, select.

Layer: edges. Outputs follow the contract of :mod:`streammix.jobs.outputs`
(row-aligned, chunk by chunk, resumable, ``complete`` set last).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.delayed import delayed

from ..core import sampling
from ..engine.compute import run_tasks
from ..errors import InvalidParameterError
from ..io.inputs import as_chunked, input_id
from ..io.location import StorageOptions, as_location
from ..io.modelfile import load, model_checksum
from ..kde import KernelDensity
from ..selection import select
from .outputs import ArraySpec, OutputArrays, RowOutput, regular_chunk_rows, write_rows
from .score import Where, locate

Progress = Callable[[int, int], None]


def _write_lazy(out: RowOutput, name: str, lazy: Any, progress: Progress | None) -> int:
    """Write the chunks of a lazy row-aligned array that ``out`` still misses."""
    todo = out.todo(name)
    if not todo:
        return 0
    if not isinstance(lazy, da.Array):
        lazy = da.from_array(np.asarray(lazy), chunks=(out.chunk_rows, *np.shape(lazy)[1:]))
    out.mark_incomplete()
    blocks = lazy.to_delayed().reshape(lazy.numblocks[0], -1)[:, 0]
    arrays = delayed(out.arrays(), traverse=False)
    starts = np.concatenate([[0], np.cumsum(lazy.chunks[0])[:-1]])
    tasks = [
        delayed(write_rows, pure=True)(arrays, name, c, int(starts[c]), blocks[c]) for c in todo
    ]
    run_tasks(tasks, progress, name)
    return len(todo)


def _run_output(out: RowOutput, created: bool, work: Callable[[], int]) -> int:
    try:
        written = work()
        out.finish()
    except BaseException:
        if created:
            out.remove()
        raise
    return written


def _sample_task(
    out: OutputArrays, model: Any, chunk: int, start: int, rows: int, seed: int
) -> int:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk,)))
    X, labels = sampling.sample(model, rows, rng)
    out.write("X", chunk, start, X)
    out.write("component", chunk, start, labels.astype(np.int32))
    return rows


def sample(
    model: Where,
    output: Where,
    n_samples: int,
    *,
    chunk_rows: int = 100_000,
    seed: int = 0,
    overwrite: bool = False,
    storage_options: StorageOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Draw ``n_samples`` rows from a saved model into a Zarr group (``X``, ``component``).

    Chunk ``c`` draws from its own stream seeded by ``(seed, c)``: the output
    does not depend on the number of workers, and any size fits.
    """
    if n_samples < 1 or chunk_rows < 1:
        raise InvalidParameterError("n_samples and chunk_rows must be at least 1.")
    model, output = as_location(model, storage_options), as_location(output, storage_options)
    output.check_writable()
    est = load(model)
    params = est._params()
    job = {"kind": "sample", "model_sha256": model_checksum(model), "seed": int(seed)}
    specs = [ArraySpec("X", "float64", (params.n_features,)), ArraySpec("component", "int32")]
    out, created = RowOutput.prepare(output, specs, job, n_samples, chunk_rows, overwrite=overwrite)
    rows = out.expected_rows()
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]])

    def work() -> int:
        todo = sorted(set(out.todo("X")) | set(out.todo("component")))
        if todo:
            out.mark_incomplete()
        shared = delayed(params, traverse=False)
        arrays = delayed(out.arrays(), traverse=False)
        tasks = [
            delayed(_sample_task, pure=True)(
                arrays, shared, c, int(starts[c]), int(rows[c]), int(seed)
            )
            for c in todo
        ]
        run_tasks(tasks, progress, "sample")
        return len(todo)

    written = _run_output(out, created, work)
    return {
        "job": "sample",
        "output": str(output),
        "rows": n_samples,
        "chunks_written": written,
        "complete": True,
    }


def impute(
    data: Any,
    model: Where,
    output: Where,
    *,
    array: str = "X",
    columns: Sequence[str] | None = None,
    n_draws: int = 0,
    seed: int = 0,
    overwrite: bool = False,
    storage_options: StorageOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fill the NaN entries of ``data`` from a saved model into ``output``.

    ``X`` (float64, like the input) holds the conditional means; with
    ``n_draws > 0``, ``draws`` (rows x n_draws x features) holds conditional draws.
    """
    data, model = locate(data, storage_options), as_location(model, storage_options)
    output = as_location(output, storage_options)
    output.check_writable()
    est = load(model)
    ds = as_chunked(data, array=array, allow_nan=True, columns=columns)
    est._check_n_features(ds.n_features)
    chunk_rows = regular_chunk_rows(ds.row_chunks)
    name = "draws" if n_draws else "X"
    tail = (int(n_draws), ds.n_features) if n_draws else (ds.n_features,)
    job = {
        "kind": "impute",
        "model_sha256": model_checksum(model),
        "input": input_id(data, array, columns),
        "n_draws": int(n_draws),
        "seed": int(seed),
    }
    out, created = RowOutput.prepare(
        output,
        [ArraySpec(name, "float64", tail)],
        job,
        ds.n_rows,
        chunk_rows,
        overwrite=overwrite,
        parts=ds.parts,
    )
    lazy = est.impute(ds, n_draws=n_draws, random_state=seed)
    if n_draws:
        lazy = np.moveaxis(lazy, 0, 1) if isinstance(lazy, np.ndarray) else da.moveaxis(lazy, 0, 1)
    written = _run_output(out, created, lambda: _write_lazy(out, name, lazy, progress))
    return {
        "job": "impute",
        "output": str(output),
        "rows": ds.n_rows,
        "chunks_written": written,
        "complete": True,
    }


def kde(
    data: Any,
    output: Where,
    *,
    bandwidth: str | float = "scott",
    query: Any = None,
    array: str = "X",
    columns: Sequence[str] | None = None,
    overwrite: bool = False,
    storage_options: StorageOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit a Gaussian KDE on ``data`` and write the log-density of every row of
    ``query`` (default: ``data`` itself) to ``output`` (``log_density``)."""
    data, query = locate(data, storage_options), locate(query, storage_options)
    output = as_location(output, storage_options)
    output.check_writable()
    reference = as_chunked(data, array=array, columns=columns)
    queries = reference if query is None else as_chunked(query, array=array, columns=columns)
    chunk_rows = regular_chunk_rows(queries.row_chunks)
    model = KernelDensity(bandwidth=bandwidth).fit(reference)
    job = {
        "kind": "kde",
        "reference": input_id(data, array, columns),
        "bandwidth": bandwidth,
        "query": input_id(query if query is not None else data, array, columns),
    }
    out, created = RowOutput.prepare(
        output,
        [ArraySpec("log_density", "float64")],
        job,
        queries.n_rows,
        chunk_rows,
        overwrite=overwrite,
        parts=queries.parts,
    )
    lazy = model.score_samples(queries)
    written = _run_output(out, created, lambda: _write_lazy(out, "log_density", lazy, progress))
    return {
        "job": "kde",
        "output": str(output),
        "rows": queries.n_rows,
        "bandwidth_factor": model.factor_,
        "chunks_written": written,
        "complete": True,
    }


def select_job(
    data: Any,
    model_dir: Where,
    *,
    n_components: Sequence[int],
    covariance_types: Sequence[str] = ("full",),
    criterion: str = "bic",
    seed: int = 0,
    array: str = "X",
    columns: Sequence[str] | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    storage_options: StorageOptions | None = None,
) -> dict[str, Any]:
    """Run :func:`streammix.select` and save the chosen model to ``model_dir``."""
    data = locate(data, storage_options)
    model_dir = as_location(model_dir, storage_options)
    model_dir.check_writable()
    if columns:
        data = as_chunked(data, array=array, columns=columns)
    result = select(
        data,
        n_components,
        covariance_types,
        criterion,
        seed,
        tol=tol,
        max_iter=max_iter,
        array=array,
    )
    result.best_.save(model_dir)
    best = result.best_row()
    return {
        "job": "select",
        "model": str(model_dir),
        "criterion": criterion,
        "n_components": best["n_components"],
        "covariance_type": best["covariance_type"],
        "candidates": result.table,
    }
