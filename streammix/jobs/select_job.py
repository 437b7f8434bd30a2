"""The select job: candidate mixtures fitted in shared passes, the best one saved.

Layer: edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..estimators.selection import select
from ..io.location import StorageOptions, Where, as_location, locate
from ..io.modelfile import check_destination
from ..io.weights import as_weighted


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
    sample_weight: str | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    storage_options: StorageOptions | None = None,
) -> dict[str, Any]:
    """Run :func:`streammix.select` (rows weighted by ``sample_weight``: a Zarr location,
    or a column of Parquet ``data``) and save the chosen model to ``model_dir``."""
    data = locate(data, storage_options)
    model_dir = as_location(model_dir, storage_options)
    check_destination(model_dir)
    if columns or sample_weight is not None:
        data = as_weighted(data, sample_weight, array=array, columns=columns)
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
