"""k-means pieces for initialising a mixture: seeding, Lloyd steps, chunk sums.

Layer: math (numpy only).

Seeding is greedy k-means++ (Arthur & Vassilvitskii 2007, with ``2 + log k``
candidate centres per step); :func:`lloyd` refines centres on an in-memory
sample; :func:`lloyd_sums` is the per-chunk half of a Lloyd pass over data that
do not fit in memory. Distances use ``|y|^2 - 2 c.y + |c|^2`` (one GEMM), in
frame units so that the expansion does not cancel.
"""

from __future__ import annotations

import math

import numpy as np

from .frame import Frame
from .kernel import BLOCK_ROWS, data_dtype


def _sq_dist(Y: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distances, shape ``(n_rows, n_centers)``, clipped at zero."""
    d = np.sum(Y * Y, axis=1)[:, None] - 2.0 * (Y @ centers.T) + np.sum(centers**2, axis=1)
    return np.maximum(d, 0.0)


def kmeans_plusplus(
    Y: np.ndarray,
    n_clusters: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-means++ seeding.

    Parameters
    ----------
    Y : ndarray of shape (n_rows, n_features)
    n_clusters : int
    rng : numpy.random.Generator
    weights : ndarray of shape (n_rows,), optional
        Row weights: a row is drawn with probability proportional to its weight
        times its squared distance to the nearest centre (the first in proportion
        to its weight), and candidates are compared by weighted potential.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
        The rows chosen as centres.
    """
    n = Y.shape[0]
    trials = 2 + int(math.log(n_clusters))
    if weights is None:
        first = int(rng.integers(n))
    else:
        first = int(np.searchsorted(np.cumsum(weights), rng.random() * weights.sum(), "right"))
        first = min(first, n - 1)
    idx = [first]
    closest = _sq_dist(Y, Y[[first]])[:, 0]
    for _ in range(1, n_clusters):
        mass = closest if weights is None else closest * weights
        total = mass.sum()
        if total <= 0.0:
            # Every row coincides with a centre: further centres repeat rows.
            cand = rng.integers(n, size=trials)
        else:
            cand = np.searchsorted(np.cumsum(mass), rng.random(trials) * total)
            cand = np.minimum(cand, n - 1)
        d = np.minimum(closest[:, None], _sq_dist(Y, Y[cand]))
        potential = d if weights is None else d * weights[:, None]
        best = int(np.argmin(potential.sum(axis=0)))
        idx.append(int(cand[best]))
        closest = d[:, best]
    indices = np.array(idx)
    return Y[indices].copy(), indices


def assign(Y: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every row and the squared distance to it."""
    d = _sq_dist(Y, centers)
    labels = np.argmin(d, axis=1)
    return labels, d[np.arange(len(Y)), labels]


def update_centers(counts: np.ndarray, sums: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """New centres from counts and sums; an empty cluster keeps its centre."""
    out = previous.copy()
    full = counts > 0
    out[full] = sums[full] / counts[full, None]
    return out


def lloyd(
    Y: np.ndarray,
    centers: np.ndarray,
    max_iter: int = 300,
    tol: float = 1e-4,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Lloyd iterations on in-memory rows (weighted means with ``weights``) until the
    squared centre shift is below ``tol`` times the mean feature variance."""
    threshold = tol * float(np.mean(np.var(Y, axis=0)))
    k = centers.shape[0]
    for _ in range(max_iter):
        labels, _ = assign(Y, centers)
        counts = np.bincount(labels, weights=weights, minlength=k).astype(np.float64)
        sums = _group_sums(Y, labels, k, weights)
        new = update_centers(counts, sums, centers)
        shift = float(np.sum((new - centers) ** 2))
        centers = new
        if shift <= threshold:
            break
    return centers


def lloyd_sums(
    X: np.ndarray,
    center_sets: tuple[np.ndarray, ...],
    frame: Frame,
    weights: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per centre set: counts and coordinate sums (frame units) of the rows nearest
    to each centre, for one chunk (weighted with ``weights``)."""
    dtype = data_dtype(X)
    frame = frame.for_dtype(dtype)
    out = [(np.zeros(c.shape[0]), np.zeros(c.shape)) for c in center_sets]
    for start in range(0, X.shape[0], BLOCK_ROWS):
        y = frame.to_frame(X[start : start + BLOCK_ROWS], dtype).T.astype(np.float64)
        wb = None if weights is None else weights[start : start + BLOCK_ROWS]
        for (counts, sums), centers in zip(out, center_sets, strict=True):
            labels, _ = assign(y, centers)
            counts += np.bincount(labels, weights=wb, minlength=centers.shape[0])
            sums += _group_sums(y, labels, centers.shape[0], wb)
    return tuple(out)


def _group_sums(
    y: np.ndarray, labels: np.ndarray, k: int, weights: np.ndarray | None = None
) -> np.ndarray:
    onehot = np.zeros((k, y.shape[0]))
    onehot[labels, np.arange(y.shape[0])] = 1.0 if weights is None else weights
    return onehot @ y


def add_lloyd_sums(
    a: tuple[tuple[np.ndarray, np.ndarray], ...], b: tuple[tuple[np.ndarray, np.ndarray], ...]
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    return tuple((ca + cb, sa + sb) for (ca, sa), (cb, sb) in zip(a, b, strict=True))
