"""Ancestral sampling of a mixture: a component, then a Gaussian draw from it.

Layer: math (numpy only).
"""

from __future__ import annotations

import numpy as np

from .params import MixtureParams


def covariance_factors(params: MixtureParams) -> np.ndarray:
    """Lower Cholesky factors ``C_k`` of the dense covariances (``cov = C C^T``)."""
    return np.linalg.cholesky(params.dense_covariances())


def sample(
    params: MixtureParams,
    n_samples: int,
    rng: np.random.Generator,
    factors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` draws in random order.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
        The component each row was drawn from.
    """
    C = covariance_factors(params) if factors is None else factors
    labels = rng.choice(
        params.n_components, size=n_samples, p=params.weights / params.weights.sum()
    )
    z = rng.standard_normal((n_samples, params.n_features))
    X = np.empty_like(z)
    for k in range(params.n_components):
        rows = labels == k
        if rows.any():
            X[rows] = params.means[k] + z[rows] @ C[k].T
    return X, labels
