"""Synthetic data: a known mixture plus uniform outliers, written to Zarr chunk by chunk.

Layer: edges (writes Zarr).

Every chunk draws from its own stream, seeded by ``(seed, chunk index)``, so
the data do not depend on the order or the process that writes the chunks,
and any size can be written with one chunk in memory at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from .core.families import get_family
from .core.params import MixtureParams
from .engine.compute import map_indices
from .errors import InvalidInputError, InvalidParameterError
from .io.location import Location, StorageOptions, as_location
from .io.outputs import member, open_output

# Outliers are uniform over the data's box widened by this many units.
OUTLIER_MARGIN = 6.0


@dataclass(frozen=True, slots=True, eq=False)
class SyntheticSpec:
    n_samples: int
    n_features: int
    n_components: int
    outlier_fraction: float
    chunk_rows: int
    seed: int

    def validate(self) -> None:
        for name in ("n_samples", "n_features", "n_components", "chunk_rows"):
            if int(getattr(self, name)) < 1:
                raise InvalidParameterError(
                    f"{name} must be at least 1, got {getattr(self, name)}."
                )
        if not 0.0 <= self.outlier_fraction < 1.0:
            raise InvalidParameterError(
                f"outlier_fraction must be in [0, 1), got {self.outlier_fraction}."
            )


def true_mixture(
    n_features: int, n_components: int, seed: int, spread: float = 4.0
) -> MixtureParams:
    """The mixture a synthetic dataset is drawn from: full covariances of unit
    scale, means with standard deviation ``spread`` (4 separates them well, 1 makes
    them overlap)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,)))
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.normal(0.0, spread, size=(n_components, n_features))
    cov = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        a = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
        cov[k] = a @ a.T * 0.6 + 0.4 * np.eye(n_features)
    return MixtureParams.from_covariances(get_family("full"), weights, means, cov)


def _outlier_box(truth: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    return truth.means.min(axis=0) - OUTLIER_MARGIN, truth.means.max(axis=0) + OUTLIER_MARGIN


def synthetic_chunk(
    spec: SyntheticSpec, truth: MixtureParams, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, components and outlier flags of chunk ``index``."""
    start = index * spec.chunk_rows
    n = min(spec.chunk_rows, spec.n_samples - start)
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(index,)))
    component = rng.choice(truth.n_components, size=n, p=truth.weights)
    factors = np.linalg.cholesky(truth.dense_covariances())
    z = rng.standard_normal((n, spec.n_features))
    X = truth.means[component] + np.einsum("nij,nj->ni", factors[component], z)
    outlier = rng.random(n) < spec.outlier_fraction
    lo, hi = _outlier_box(truth)
    X[outlier] = rng.uniform(lo, hi, size=(int(outlier.sum()), spec.n_features))
    component[outlier] = -1
    return X, component.astype(np.int32), outlier.astype(np.int8)


def _write_chunk(
    index: int, arrays: dict[str, zarr.Array], spec: SyntheticSpec, truth: MixtureParams
) -> int:
    """Draw chunk ``index`` and write its rows of the three arrays (a task)."""
    x, c, o = synthetic_chunk(spec, truth, index)
    sl = slice(index * spec.chunk_rows, index * spec.chunk_rows + len(x))
    for name, values in (("X", x), ("component", c), ("is_outlier", o)):
        arrays[name][sl] = values
    return int(o.sum())


def generate(
    path: str | os.PathLike[str] | Location,
    n_samples: int,
    n_features: int = 6,
    n_components: int = 4,
    outlier_fraction: float = 0.0,
    chunk_rows: int = 100_000,
    seed: int = 0,
    overwrite: bool = False,
    storage_options: StorageOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a synthetic dataset as a Zarr group with arrays ``X``, ``component`` and
    ``is_outlier``; returns a summary.

    ``component`` is ``-1`` for outlier rows. The true mixture is recorded in
    the group's attributes. Chunks are written by parallel tasks (on the
    active Dask cluster, if any), each holding one chunk in memory.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.zarr")
    >>> generate(p, 1000, n_features=2, n_components=2, chunk_rows=300)["n_chunks"]
    4
    """
    spec = SyntheticSpec(
        int(n_samples),
        int(n_features),
        int(n_components),
        float(outlier_fraction),
        int(chunk_rows),
        int(seed),
    )
    spec.validate()
    truth = true_mixture(spec.n_features, spec.n_components, spec.seed)
    loc = as_location(path, storage_options)
    loc.check_writable()
    if loc.exists() and not overwrite:
        raise InvalidInputError(f"'{loc}' exists; pass --overwrite to replace it.")
    group = open_output(loc, "w")
    rows = (spec.chunk_rows,)
    group.create_array(
        "X",
        shape=(spec.n_samples, spec.n_features),
        chunks=(spec.chunk_rows, spec.n_features),
        dtype="float64",
        fill_value=np.nan,
    )
    group.create_array(
        "component", shape=(spec.n_samples,), chunks=rows, dtype="int32", fill_value=-2
    )
    group.create_array(
        "is_outlier", shape=(spec.n_samples,), chunks=rows, dtype="int8", fill_value=-1
    )
    n_chunks = -(-spec.n_samples // spec.chunk_rows)
    arrays = {n: member(group, n) for n in ("X", "component", "is_outlier")}
    written = map_indices(
        _write_chunk, range(n_chunks), arrays, spec, truth, progress=progress, label="generate"
    )
    n_outliers = sum(written)
    group.attrs.update(
        {
            "generator": "streammix.datasets.generate",
            "seed": spec.seed,
            "outlier_fraction": spec.outlier_fraction,
            "true_weights": truth.weights.tolist(),
            "true_means": truth.means.tolist(),
            "true_covariances": truth.covariances.tolist(),
        }
    )
    return {
        "path": str(loc),
        "n_samples": spec.n_samples,
        "n_features": spec.n_features,
        "n_components": spec.n_components,
        "n_outliers": n_outliers,
        "n_chunks": n_chunks,
    }
