"""Initial parameters over chunked data, for one or several restarts at once.

Layer: engine (dask + numpy).

``init_params`` follows scikit-learn's meanings, without an in-memory copy of
the data:

* ``"kmeans"``: k-means++ seeding and Lloyd refinement on a uniform sample of
  rows, then Lloyd passes over all chunks until the centres settle, then one
  pass of hard-assignment statistics and an M-step.
* ``"k-means++"``: k-means++ seeding on the sample; each component starts on
  its seed row with covariance ``reg_covar``.
* ``"random"``: uniform random responsibilities for every row (drawn per row,
  so they do not depend on the chunking) and an M-step.
* ``"random_from_data"``: random rows as means, covariance ``reg_covar``.

``weights_init``, ``means_init`` and ``precisions_init`` override what the
method produced, as scikit-learn's ``_initialize`` does: with ``means_init``
alone, the method still runs, and its responsibilities give the starting
weights and covariances (each component's covariance about the mean of its own
responsibilities, not about the given mean); only the means are replaced.
Starting from the given means' own assignments instead would differ from
scikit-learn, and fails outright when a given mean attracts no row.

All restarts share one sample and one frame; each pass serves all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._random import draw_entropy, row_uniform
from ..core import kmeans
from ..core.families import CovarianceFamily
from ..core.frame import Frame, frame_of_parameters, make_frame
from ..core.kernel import hard_estep, weighted_estep
from ..core.mstep import m_step
from ..core.params import MixtureParams
from ..core.stats import SufficientStats, weighted_rows
from ..errors import NonFiniteInput
from .data import ChunkedData

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")

# Rows drawn for seeding k-means and choosing the frame.
SAMPLE_ROWS = 20_000
# Lloyd passes over all chunks after refinement on the sample.
MAX_LLOYD_PASSES = 20
LLOYD_TOL = 1e-4


@dataclass(frozen=True, slots=True, eq=False)
class InitSpec:
    """What the user asked for: a method and optional fixed starting values."""

    method: str
    weights: np.ndarray | None = None
    means: np.ndarray | None = None
    precisions: np.ndarray | None = None

    @property
    def fully_given(self) -> bool:
        return self.weights is not None and self.means is not None and self.precisions is not None


def sample_size(n_rows: int, n_components: int) -> int:
    return min(n_rows, max(SAMPLE_ROWS, 100 * n_components))


def draw_sample(
    data: ChunkedData, n_components: int, rng: np.random.Generator, missing: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Uniform rows without replacement (all rows when the data are small), float64,
    and their weights (``None`` for data without weights).

    With ``missing``, NaN entries are filled with their column's mean in the sample
    (the sample only seeds the initialisation)."""
    m = sample_size(data.n_rows, n_components)
    if m == data.n_rows:
        rows = np.arange(data.n_rows)
    else:
        rows = np.sort(rng.choice(data.n_rows, size=m, replace=False))
    sample, weights = data.take_weighted(rows)
    if weights is not None and not np.any(weights > 0):
        weights = None  # no weighted row drawn: seed on the rows as they are
    if missing and not np.any(np.isinf(sample)):
        gaps = np.isnan(sample)
        if gaps.any():
            observed = np.where(gaps, 0.0, sample)
            counts = np.maximum((~gaps).sum(axis=0), 1)
            sample = np.where(gaps, observed.sum(axis=0) / counts, sample)
    if not np.all(np.isfinite(sample)):
        raise NonFiniteInput(data.first_nonfinite_row())
    return sample, weights


def fit_frame(data: ChunkedData, sample: np.ndarray) -> Frame:
    """The frame a fit works in: centred and scaled on the sample."""
    return make_frame(sample, data.dtype)


def params_frame(params: MixtureParams, dtype: np.dtype) -> Frame:
    """A frame for continuing from known parameters."""
    return frame_of_parameters(params.weights, params.means, params.spread()).for_dtype(dtype)


# ------------------------------------------------------------------ chunk functions
def _hard_chunk(
    X: np.ndarray,
    offset: int,
    center_sets: tuple[np.ndarray, ...],
    families: tuple[CovarianceFamily, ...],
    frame: Frame,
    weights: np.ndarray | None = None,
) -> tuple[SufficientStats, ...]:
    X, w = weighted_rows(X, weights)
    return tuple(
        hard_estep(X, c, f, frame, weights=w) for c, f in zip(center_sets, families, strict=True)
    )


def _random_chunk(
    X: np.ndarray,
    offset: int,
    entropies: tuple[int, ...],
    n_components: int,
    family: CovarianceFamily,
    frame: Frame,
    weights: np.ndarray | None = None,
) -> tuple[SufficientStats, ...]:
    out = []
    for e in entropies:
        resp = row_uniform(e, offset, X.shape[0], n_components)
        resp /= resp.sum(axis=1, keepdims=True)
        if weights is None:
            out.append(weighted_estep(X, resp, family, frame))
        else:
            keep = weights > 0
            out.append(weighted_estep(X[keep], resp[keep], family, frame, weights[keep]))
    return tuple(out)


def _lloyd_chunk(
    X: np.ndarray,
    offset: int,
    center_sets: tuple[np.ndarray, ...],
    frame: Frame,
    weights: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    X, w = weighted_rows(X, weights)
    return kmeans.lloyd_sums(X, center_sets, frame, w)


def add_tuples(a: tuple[SufficientStats, ...], b: tuple[SufficientStats, ...]) -> tuple:
    return tuple(x + y for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------- methods
def _kmeans_centers(
    data: ChunkedData,
    sample_y: np.ndarray,
    ks: Sequence[int],
    frame: Frame,
    rngs: Sequence[np.random.Generator],
    sample_w: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """k-means centres (frame units) for each ``(k, rng)``; all share every pass."""
    centers = [
        kmeans.lloyd(
            sample_y,
            kmeans.kmeans_plusplus(sample_y, k, rng, sample_w)[0],
            weights=sample_w,
        )
        for k, rng in zip(ks, rngs, strict=True)
    ]
    if len(sample_y) == data.n_rows:
        return tuple(centers)
    threshold = LLOYD_TOL * float(np.mean(np.var(sample_y, axis=0)))
    active = list(range(len(centers)))
    for _ in range(MAX_LLOYD_PASSES):
        sets = tuple(centers[i] for i in active)
        sums = data.map_reduce(
            _lloyd_chunk, sets, frame, combine=kmeans.add_lloyd_sums, label="k-means"
        )
        still = []
        for i, (counts, total) in zip(active, sums, strict=True):
            new = kmeans.update_centers(counts, total, centers[i])
            if float(np.sum((new - centers[i]) ** 2)) > threshold:
                still.append(i)
            centers[i] = new
        active = still
        if not active:
            break
    return tuple(centers)


def kmeans_starts(
    data: ChunkedData,
    sample_y: np.ndarray,
    frame: Frame,
    candidates: Sequence[tuple[int, CovarianceFamily]],
    rngs: Sequence[np.random.Generator],
    reg_covar: float,
    on_degenerate: str,
    sample_w: np.ndarray | None = None,
) -> list[MixtureParams]:
    """Parameters from k-means for every ``(n_components, family)`` candidate: shared
    Lloyd passes, then one shared pass of hard-assignment statistics."""
    ks = [k for k, _ in candidates]
    centers = _kmeans_centers(data, sample_y, ks, frame, rngs, sample_w)
    families = tuple(f for _, f in candidates)
    stats_all = data.map_reduce(
        _hard_chunk, centers, families, frame, combine=add_tuples, label="init"
    )
    return [
        m_step(s, f, reg_covar, on_degenerate) for s, f in zip(stats_all, families, strict=True)
    ]


def _seed_rows_stats(
    rows: np.ndarray, family: CovarianceFamily, frame: Frame, dtype: np.dtype
) -> SufficientStats:
    """Statistics of ``k`` rows, each alone in its component."""
    k = rows.shape[0]
    return weighted_estep(rows.astype(dtype), np.eye(k), family, frame)


def initial_params(
    data: ChunkedData,
    family: CovarianceFamily,
    n_components: int,
    spec: InitSpec,
    reg_covar: float,
    on_degenerate: str,
    rngs: Sequence[np.random.Generator],
    missing: bool = False,
) -> tuple[list[MixtureParams], Frame]:
    """Starting parameters for each restart (one per generator) and the fit's frame.

    With ``missing`` (NaN entries in the data), the initialisation runs on a
    sample whose gaps are filled with column means, in memory.
    """
    start_family = family.init_family()
    if start_family is not family:
        starts, frame = initial_params(
            data, start_family, n_components, spec, reg_covar, on_degenerate, rngs, missing
        )
        return [family.from_init(p, rng) for p, rng in zip(starts, rngs, strict=True)], frame
    if spec.fully_given:
        assert spec.weights is not None and spec.means is not None and spec.precisions is not None
        prec_chol = family.precision_cholesky_from_precisions(spec.precisions)
        cov = family.covariances_from_precision_cholesky(prec_chol)
        p = MixtureParams(family, spec.weights, spec.means, cov, prec_chol)
        return [p] * len(rngs), params_frame(p, data.dtype)

    sample, sample_w = draw_sample(data, n_components, rngs[0], missing)
    if missing:
        filled = ChunkedData.from_numpy(sample.astype(data.dtype), weights=sample_w)
        return initial_params(filled, family, n_components, spec, reg_covar, on_degenerate, rngs)
    frame = fit_frame(data, sample)
    sample_y = (sample - frame.shift) / frame.scale

    if spec.method == "kmeans":
        candidates = [(n_components, family)] * len(rngs)
        starts = kmeans_starts(
            data, sample_y, frame, candidates, rngs, reg_covar, on_degenerate, sample_w
        )
    elif spec.method == "random":
        entropies = tuple(draw_entropy(rng) for rng in rngs)
        stats_all = data.map_reduce(
            _random_chunk,
            entropies,
            n_components,
            family,
            frame,
            combine=add_tuples,
            label="init",
        )
        starts = [m_step(s, family, reg_covar, on_degenerate) for s in stats_all]
    else:
        starts = []
        for rng in rngs:
            if spec.method == "k-means++":
                _, idx = kmeans.kmeans_plusplus(sample_y, n_components, rng, sample_w)
                rows = sample[idx]
            elif data.weighted:
                rows = _weighted_draw(sample, sample_w, n_components, rng)
            else:
                idx = rng.choice(data.n_rows, n_components, replace=False)
                order = np.argsort(idx)
                rows = np.empty((n_components, data.n_features))
                rows[order] = data.take(idx[order])
            stats = _seed_rows_stats(rows, family, frame, data.dtype)
            starts.append(m_step(stats, family, reg_covar, on_degenerate))
    return [_override(p, spec, family) for p in starts], frame


def _weighted_draw(
    sample: np.ndarray, weights: np.ndarray | None, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` distinct rows of the sample, drawn in proportion to their weights (rows of
    weight zero last, when fewer than ``k`` rows weigh anything)."""
    w = np.ones(len(sample)) if weights is None else weights
    positive = np.flatnonzero(w > 0)
    if positive.size >= k:
        idx = rng.choice(positive, k, replace=False, p=w[positive] / w[positive].sum())
    else:
        rest = rng.choice(np.flatnonzero(w <= 0), k - positive.size, replace=False)
        idx = np.concatenate([positive, rest])
    return sample[np.sort(idx)]


def _override(p: MixtureParams, spec: InitSpec, family: CovarianceFamily) -> MixtureParams:
    weights = p.weights if spec.weights is None else np.asarray(spec.weights, dtype=np.float64)
    means = p.means if spec.means is None else np.asarray(spec.means, dtype=np.float64)
    if spec.precisions is None:
        cov, prec_chol = p.covariances, p.precisions_cholesky
    else:
        prec_chol = family.precision_cholesky_from_precisions(np.asarray(spec.precisions))
        cov = family.covariances_from_precision_cholesky(prec_chol)
    return MixtureParams(family, weights, means, cov, prec_chol)
