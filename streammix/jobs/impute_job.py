"""The impute job: the NaN entries of an input filled from a saved model.

Layer: edges. The output follows the contract of :mod:`streammix.io.outputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..estimators import load
from ..io.inputs import as_chunked, input_id
from ..io.location import StorageOptions, Where, as_location, locate
from ..io.modelfile import model_checksum
from ..io.outputs import ArraySpec, check_destination, regular_chunk_rows, write_lazy, writing

Progress = Callable[[int, int], None]


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
    check_destination(output)
    est = load(model)
    ds = as_chunked(data, array=array, allow_nan=True, columns=columns)
    est.check_n_features(ds.n_features)
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
    lazy = est.impute(ds, n_draws=n_draws, random_state=seed)
    if n_draws:
        lazy = np.moveaxis(lazy, 0, 1)  # rows first (a dask array stays lazy)
    with writing(
        output,
        [ArraySpec(name, "float64", tail)],
        job,
        ds.n_rows,
        chunk_rows,
        overwrite=overwrite,
        parts=ds.parts,
    ) as (out, _):
        written = write_lazy(out, name, lazy, progress)
    return {
        "job": "impute",
        "output": str(output),
        "rows": ds.n_rows,
        "chunks_written": written,
        "complete": True,
    }
