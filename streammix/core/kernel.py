"""The E-step kernel: a chunk of rows and the current parameters in, statistics out.

Layer: math (numpy only; no dask, no I/O). Pure functions: the same chunk and
parameters always give the same bits.

Rows are processed in blocks of ``BLOCK_ROWS``, moved into the fit's frame and
transposed, so that the two GEMMs of the family's block kernel (log-densities
``A @ F`` and sums ``F @ resp.T``) see the block as a long contiguous inner or
outer dimension. The kernel is the one carried by the prepared values (or, for
given responsibilities, the one the family chooses for the data's width); this
module never asks which family it serves.
Float32 data stay float32 through the GEMMs; every block's result is added to
float64 accumulators. Responsibilities below ``1e-30`` are set to zero: they
change no statistic, and subnormal values slow the GEMMs down by half.

When several models are evaluated on the same chunk (restarts, model
selection), rows are read and moved into each distinct frame once, and each
distinct kernel builds its feature matrix once per frame.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np

from ..errors import NonFiniteRow, UnscorableRow
from .families import BlockKernel, CovarianceFamily, Prepared
from .frame import Frame
from .stats import SufficientStats

# Rows per block: large enough for efficient GEMMs, small enough for the block's
# feature matrix to stay in cache (measured on a 2-core x86-64 box at D=32).
BLOCK_ROWS = 2048
_LOG_TINY = math.log(1e-30)

P = ParamSpec("P")
R = TypeVar("R")


def data_dtype(X: np.ndarray) -> np.dtype:
    """The dtype the kernels compute in: float32 stays, everything else is float64."""
    return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)


def first_nonfinite_row(X: np.ndarray) -> int | None:
    """Index of the first row with NaN or infinity, or ``None``."""
    bad = ~np.all(np.isfinite(X), axis=1)
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else None


def normalise(lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities from log-joint values, in place.

    Parameters
    ----------
    lp : ndarray of shape (n_components, n_rows)
        Overwritten with the responsibilities.

    Returns
    -------
    resp : ndarray of shape (n_components, n_rows)
        ``lp`` itself.
    log_norm : ndarray of shape (n_rows,), float64
        ``log sum_k exp(lp[k])``, the rows' log-likelihoods.
    """
    top = lp.max(axis=0)
    lp -= top
    tiny = lp < _LOG_TINY
    np.exp(lp, out=lp)
    np.copyto(lp, 0.0, where=tiny)
    total = lp.sum(axis=0)
    lp /= total
    with np.errstate(divide="ignore"):
        log_norm = np.log(total, dtype=np.float64) + top
    return lp, log_norm


def _quiet(func: Callable[P, R]) -> Callable[P, R]:
    """Run without numpy floating-point warnings: bad rows are detected and named
    explicitly instead."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)

    return wrapper


def _blocks(n_rows: int, block_rows: int) -> range:
    return range(0, n_rows, block_rows)


def _check_block(xb: np.ndarray, log_norm: np.ndarray, start: int) -> None:
    if np.all(np.isfinite(log_norm)):
        return
    bad = first_nonfinite_row(xb)
    if bad is not None:
        raise NonFiniteRow(start + bad)
    raise UnscorableRow(start + int(np.flatnonzero(~np.isfinite(log_norm))[0]))


@_quiet
def estep(
    X: np.ndarray, preps: Sequence[Prepared], block_rows: int = BLOCK_ROWS
) -> tuple[SufficientStats, ...]:
    """Sufficient statistics of a chunk under each set of prepared parameters.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
    preps : sequence of Prepared
        One entry per model; all in ``data_dtype(X)``.

    Returns
    -------
    tuple of SufficientStats, one per entry of ``preps``.

    Raises
    ------
    NonFiniteRow, UnscorableRow
    """
    n, d = X.shape
    dtype = data_dtype(X)
    accs = [np.zeros(p.kernel.sums_shape(p.n_components, d)) for p in preps]
    s0 = [np.zeros(p.n_components) for p in preps]
    loglik = [0.0] * len(preps)
    for start in _blocks(n, block_rows):
        xb = X[start : start + block_rows]
        moved: dict[Frame, np.ndarray] = {}
        feats: dict[tuple[Frame, BlockKernel[Any]], np.ndarray] = {}
        for i, p in enumerate(preps):
            y = moved.get(p.frame)
            if y is None:
                y = moved[p.frame] = p.frame.to_frame(xb, dtype)
            F = feats.get((p.frame, p.kernel))
            if F is None:
                F = feats[(p.frame, p.kernel)] = p.kernel.features(y)
            lp, ctx = p.kernel.log_joint(F, y, p)
            resp, log_norm = normalise(lp)
            _check_block(xb, log_norm, start)
            loglik[i] += float(log_norm.sum())
            s0[i] += resp.sum(axis=1, dtype=np.float64)
            p.kernel.add_block_sums(accs[i], F, y, resp, p, ctx)
    out = []
    for i, p in enumerate(preps):
        s1, s2 = p.kernel.split_sums(accs[i], p.n_components, d)
        out.append(SufficientStats(float(n), loglik[i], s0[i], s1, s2, p.frame))
    return tuple(out)


@_quiet
def score_rows(
    X: np.ndarray, prep: Prepared, what: str = "log_likelihood", block_rows: int = BLOCK_ROWS
) -> np.ndarray:
    """Per-row results of the E-step without statistics.

    ``what`` is ``"log_likelihood"`` (float64, ``(n_rows,)``), ``"label"``
    (int64, the most likely component), or ``"proba"`` (float64,
    ``(n_rows, n_components)``, the responsibilities). Non-finite rows raise
    :class:`NonFiniteRow`; use :func:`score_rows_masked` to let them through.
    """
    n = X.shape[0]
    dtype = data_dtype(X)
    if what == "log_likelihood":
        out = np.empty(n)
    elif what == "label":
        out = np.empty(n, dtype=np.int64)
    else:
        out = np.empty((n, prep.n_components))
    for start in _blocks(n, block_rows):
        xb = X[start : start + block_rows]
        y = prep.frame.to_frame(xb, dtype)
        lp, _ = prep.kernel.log_joint(prep.kernel.features(y), y, prep)
        if what == "label":
            bad = first_nonfinite_row(xb)
            if bad is not None:
                raise NonFiniteRow(start + bad)
            out[start : start + len(xb)] = np.argmax(lp, axis=0)
            continue
        resp, log_norm = normalise(lp)
        bad = first_nonfinite_row(xb) if not np.all(np.isfinite(log_norm)) else None
        if bad is not None:
            raise NonFiniteRow(start + bad)
        if what == "log_likelihood":
            out[start : start + len(xb)] = log_norm
        else:
            out[start : start + len(xb)] = resp.T
    return out


def score_rows_masked(
    X: np.ndarray, prep: Prepared, block_rows: int = BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood and most likely component; rows with NaN/inf get NaN and -1."""
    finite = np.all(np.isfinite(X), axis=1)
    ll = np.full(X.shape[0], np.nan)
    label = np.full(X.shape[0], -1, dtype=np.int64)
    if finite.any():
        good = X[finite]
        ll[finite] = score_rows(good, prep, "log_likelihood", block_rows)
        label[finite] = score_rows(good, prep, "label", block_rows)
    return ll, label


def hard_estep(
    X: np.ndarray,
    centers: np.ndarray,
    fam: CovarianceFamily,
    frame: Frame,
    block_rows: int = BLOCK_ROWS,
) -> SufficientStats:
    """Statistics with one-hot responsibilities: each row to its nearest centre.

    ``centers`` are in frame units; the log-likelihood of the result is zero.
    """
    n, d = X.shape
    dtype = data_dtype(X)
    frame = frame.for_dtype(dtype)
    kernel = fam.kernel(d)
    k = centers.shape[0]
    c = centers.astype(dtype)
    half_norms = 0.5 * np.sum(centers * centers, axis=1).astype(dtype)
    acc = np.zeros(kernel.sums_shape(k, d))
    s0 = np.zeros(k)
    for start in _blocks(n, block_rows):
        xb = X[start : start + block_rows]
        y = frame.to_frame(xb, dtype)
        score = c @ y
        score -= half_norms[:, None]
        label = np.argmax(score, axis=0)
        resp = np.zeros((k, y.shape[1]), dtype=dtype)
        resp[label, np.arange(y.shape[1])] = 1.0
        s0 += np.bincount(label, minlength=k)
        kernel.add_block_sums(acc, kernel.features(y), y, resp)
    s1, s2 = kernel.split_sums(acc, k, d)
    return SufficientStats(float(n), 0.0, s0, s1, s2, frame)


def weighted_estep(
    X: np.ndarray, resp: np.ndarray, fam: CovarianceFamily, frame: Frame
) -> SufficientStats:
    """Statistics for given responsibilities ``resp`` of shape ``(n_rows, n_components)``."""
    n, d = X.shape
    dtype = data_dtype(X)
    frame = frame.for_dtype(dtype)
    kernel = fam.kernel(d)
    k = resp.shape[1]
    y = frame.to_frame(X, dtype)
    acc = np.zeros(kernel.sums_shape(k, d))
    r = np.ascontiguousarray(resp.T, dtype=dtype)
    kernel.add_block_sums(acc, kernel.features(y), y, r)
    s1, s2 = kernel.split_sums(acc, k, d)
    return SufficientStats(float(n), 0.0, resp.sum(axis=0), s1, s2, frame)
