"""Shared fixtures: generated data only, no network."""

from __future__ import annotations

import os

# scikit-learn's array-API check (numpy namespace only) runs only when scipy is
# imported with this set; streammix never dispatches, so results must not change.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest
import zarr


def blobs(n: int = 3000, d: int = 5, k: int = 4, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """Well-separated Gaussian clusters with random full covariances."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 6.0, size=(k, d))
    labels = rng.integers(k, size=n)
    mix = rng.normal(size=(k, d, d)) / np.sqrt(d) + np.eye(d)
    z = rng.standard_normal((n, d))
    return centers[labels] + np.einsum("nij,nj->ni", mix[labels], z) + offset


def write_zarr(path, X: np.ndarray, chunk_rows: int, name: str | None = None) -> str:
    """Write ``X`` as a Zarr v3 array (or as member ``name`` of a group)."""
    if name is None:
        arr = zarr.create_array(
            str(path), shape=X.shape, chunks=(chunk_rows, X.shape[1]), dtype=X.dtype
        )
    else:
        g = zarr.open_group(str(path), mode="w")
        arr = g.create_array(name, shape=X.shape, chunks=(chunk_rows, X.shape[1]), dtype=X.dtype)
    arr[:] = X
    return str(path)


@pytest.fixture
def X_blobs() -> np.ndarray:
    return blobs()
