"""Why a row scores low: its component and per-feature conditional z-scores.

Layer: math (numpy only).

For the row's most likely component ``k`` with precision ``P = S^-1``, feature
``j`` given all the others is Gaussian with mean
``mu_j - sum_{i != j} P_ji (x_i - mu_i) / P_jj`` and variance ``1 / P_jj``, so its
conditional z-score is::

    z_j = (P (x - mu))_j / sqrt(P_jj)

A large ``|z_j|`` says that feature ``j`` is unusual *given the rest of the row*:
a value that alone is ordinary but contradicts its correlated features stands
out too.
"""

from __future__ import annotations

import numpy as np

from .params import MixtureParams


def conditional_zscores(params: MixtureParams, X: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Per-feature conditional z-scores of each row under its given component.

    Parameters
    ----------
    params : MixtureParams
    X : ndarray of shape (n_rows, n_features)
    components : ndarray of shape (n_rows,)
        The component each row is explained by.

    Returns
    -------
    ndarray of shape (n_rows, n_features)
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.empty_like(X)
    precisions = np.linalg.inv(params.dense_covariances())
    for k in np.unique(components):
        rows = components == k
        P = precisions[k]
        out[rows] = ((X[rows] - params.means[k]) @ P) / np.sqrt(np.diag(P))
    return out


def top_features(zscores: np.ndarray, n: int = 3) -> np.ndarray:
    """Indices of the ``n`` features with the largest ``|z|`` in each row, largest first."""
    n = min(n, zscores.shape[1])
    order = np.argsort(-np.abs(zscores), axis=1, kind="stable")
    return order[:, :n]
