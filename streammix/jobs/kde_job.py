"""The kde job: a kernel density estimate fitted on an input, log-densities written out.

Layer: edges. The output follows the contract of :mod:`streammix.io.outputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..estimators.kernel_density import KernelDensity
from ..io.inputs import as_chunked, input_id
from ..io.location import StorageOptions, Where, as_location, locate
from ..io.outputs import ArraySpec, check_destination, regular_chunk_rows, write_lazy, writing
from ..io.weights import as_weighted

Progress = Callable[[int, int], None]


def kde(
    data: Any,
    output: Where,
    *,
    bandwidth: str | float = "scott",
    query: Any = None,
    array: str = "X",
    columns: Sequence[str] | None = None,
    sample_weight: str | None = None,
    overwrite: bool = False,
    storage_options: StorageOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit a Gaussian KDE on ``data`` (its rows weighted by ``sample_weight``: a Zarr
    location, or a column of Parquet ``data``) and write the log-density of every row
    of ``query`` (default: ``data`` itself) to ``output`` (``log_density``)."""
    data, query = locate(data, storage_options), locate(query, storage_options)
    output = as_location(output, storage_options)
    check_destination(output)
    reference = as_weighted(
        data, sample_weight, array=array, columns=columns, storage_options=storage_options
    )
    if query is None:
        queries = reference.features()
    else:
        queries = as_chunked(query, array=array, columns=columns)
    chunk_rows = regular_chunk_rows(queries.row_chunks)
    model = KernelDensity(bandwidth=bandwidth).fit(reference)
    job = {
        "kind": "kde",
        "reference": input_id(data, array, columns),
        "sample_weight": None if sample_weight is None else str(sample_weight),
        "bandwidth": bandwidth,
        "query": input_id(query if query is not None else data, array, columns),
    }
    lazy = model.score_samples(queries)
    with writing(
        output,
        [ArraySpec("log_density", "float64")],
        job,
        queries.n_rows,
        chunk_rows,
        overwrite=overwrite,
        parts=queries.parts,
    ) as (out, _):
        written = write_lazy(out, "log_density", lazy, progress)
    return {
        "job": "kde",
        "output": str(output),
        "rows": queries.n_rows,
        "bandwidth_factor": model.factor_,
        "chunks_written": written,
        "complete": True,
    }
