"""The sample job: rows drawn from a saved model into a row-chunked Zarr output.

Layer: edges. The output follows the contract of :mod:`streammix.io.outputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import sampling
from ..engine.compute import map_indices
from ..errors import InvalidParameterError
from ..estimators import load
from ..io.location import StorageOptions, Where, as_location
from ..io.modelfile import model_checksum
from ..io.outputs import ArraySpec, OutputArrays, check_destination, writing

Progress = Callable[[int, int], None]


def _sample_task(chunk: int, out: OutputArrays, model: Any, starts: np.ndarray, seed: int) -> int:
    start, rows = int(starts[chunk]), int(starts[chunk + 1] - starts[chunk])
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
    check_destination(output)
    est = load(model)
    params = est.params_
    job = {"kind": "sample", "model_sha256": model_checksum(model), "seed": int(seed)}
    specs = [ArraySpec("X", "float64", (params.n_features,)), ArraySpec("component", "int32")]
    with writing(output, specs, job, n_samples, chunk_rows, overwrite=overwrite) as (out, _):
        starts = np.concatenate([[0], np.cumsum(out.expected_rows())])
        todo = sorted(set(out.todo("X")) | set(out.todo("component")))
        if todo:
            out.mark_incomplete()
        map_indices(
            _sample_task,
            todo,
            out.arrays(),
            params,
            starts,
            int(seed),
            progress=progress,
            label="sample",
        )
    return {
        "job": "sample",
        "output": str(output),
        "rows": n_samples,
        "chunks_written": len(todo),
        "complete": True,
    }
