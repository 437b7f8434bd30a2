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
from typing import ParamSpec, TypeVar

import numpy as np

from ..errors import NonFiniteRow, UnscorableRow
from .families import CovarianceFamily, Prepared
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


def _check_block(xb: np.ndarray, log_norm: np.ndarray, index: np.ndarray) -> None:
    """Name the first row (by its chunk index ``index[i]``) that cannot be scored."""
    if np.all(np.isfinite(log_norm)):
        return
    bad = np.flatnonzero(~np.all(np.isfinite(xb), axis=1))
    if bad.size:
        raise NonFiniteRow(int(index[bad].min()))
    raise UnscorableRow(int(index[np.flatnonzero(~np.isfinite(log_norm))].min()))


@_quiet
def estep(
    X: np.ndarray,
    preps: Sequence[Prepared],
    block_rows: int = BLOCK_ROWS,
    row_loglik: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[SufficientStats, ...]:
    """Sufficient statistics of a chunk under each set of prepared parameters.

    Each component's sums are taken about its reference point ``c_k`` (its
    mean, ``prep.refs``): the chunk's rows are grouped by their nearest
    reference ``c_a`` and moved to ``y - c_a``, so that every product the kernel
    forms is of small numbers; the kernel works on each group, block by block,
    with its constants prepared about ``c_a``, and the group's sums are then
    moved to each component's own reference by exact algebra
    (:meth:`CovarianceFamily.recentered`). Prepared values without references
    take every sum about the frame's origin.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
    preps : sequence of Prepared
        One entry per model; all in ``data_dtype(X)``.
    row_loglik : ndarray of shape (n_rows,), optional
        Filled with each row's log-likelihood under the first entry of ``preps``
        (what :func:`score_rows` gives, from the same pass as the statistics).
    weights : ndarray of shape (n_rows,), optional
        Positive row weights (see :func:`~streammix.core.stats.weighted_rows`): each row's
        responsibilities and log-likelihood count ``weight`` times, and the
        statistics' row count is the sum of the weights.

    Returns
    -------
    tuple of SufficientStats, one per entry of ``preps``.

    Raises
    ------
    NonFiniteRow, UnscorableRow
    """
    dtype = data_dtype(X)
    return tuple(
        _centred_estep(X, p, dtype, block_rows, row_loglik if i == 0 else None, weights)
        for i, p in enumerate(preps)
    )


def _even_blocks(rows: np.ndarray, block_rows: int) -> list[np.ndarray]:
    """``rows`` cut into blocks of about ``block_rows`` (the nearest whole number of
    blocks, of equal sizes): a group's remainder is not a block of its own."""
    n_blocks = max(1, round(rows.size / block_rows))
    return np.array_split(rows, n_blocks)


def _groups(X: np.ndarray, prep: Prepared, dtype: np.dtype, block_rows: int) -> list[np.ndarray]:
    """The chunk's rows grouped by nearest reference (``argmax c.y - |c|^2/2``), in
    row order within each group; one group of all rows without references."""
    if prep.refs is None or prep.source is None:
        return [np.arange(X.shape[0])]
    c = prep.refs.astype(dtype)
    half_norms = (0.5 * np.sum(prep.refs * prep.refs, axis=1)).astype(dtype)
    label = np.empty(X.shape[0], dtype=np.intp)
    for start in _blocks(X.shape[0], block_rows):
        y = prep.frame.to_frame(X[start : start + block_rows], dtype)
        score = c @ y
        score -= half_norms[:, None]
        label[start : start + y.shape[1]] = np.argmax(score, axis=0)
    order = np.argsort(label, kind="stable")
    bounds = np.cumsum(np.bincount(label, minlength=c.shape[0]))
    return [order[lo:hi] for lo, hi in zip((0, *bounds[:-1]), bounds, strict=True)]


def _prepared_about(prep: Prepared, a: int) -> Prepared:
    """``prep`` about reference ``a``, prepared once per ``prep``."""
    about = prep.abouts.get(a)
    if about is None:
        assert prep.refs is not None
        about = prep.abouts[a] = prep.source.prepare_about(prep, prep.refs[a])
    return about


def _centred_estep(
    X: np.ndarray,
    prep: Prepared,
    dtype: np.dtype,
    block_rows: int,
    row_loglik: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> SufficientStats:
    n, d = X.shape
    k = prep.n_components
    kernel, family = prep.kernel, prep.family
    centred = prep.refs is not None and prep.source is not None
    refs = prep.refs if centred else np.zeros((k, d))
    assert refs is not None
    groups = _groups(X, prep, dtype, block_rows)
    s0 = np.zeros(k)
    loglik = 0.0
    total = SufficientStats.zero(k, d, family.s2_shapes(k, d), prep.frame, prep.refs)
    s1, s2 = total.s1, total.s2
    for a, rows in enumerate(groups):
        if rows.size == 0:
            continue
        about = _prepared_about(prep, a) if centred else prep
        ref = refs[a].astype(dtype) if centred else None
        acc = np.zeros(kernel.sums_shape(k, d))
        g0 = np.zeros(k)
        for index in _even_blocks(rows, block_rows):
            xb = X[index] if centred else X[index[0] : index[-1] + 1]
            delta = prep.frame.to_frame(xb, dtype)
            if ref is not None:
                delta -= ref[:, None]
            F = kernel.features(delta)
            lp, ctx = kernel.log_joint(F, delta, about)
            resp, log_norm = normalise(lp)
            _check_block(xb, log_norm, index)
            if row_loglik is not None:
                row_loglik[index] = log_norm
            if weights is None:
                loglik += float(log_norm.sum())
            else:
                wb = weights[index] if centred else weights[index[0] : index[-1] + 1]
                loglik += float(log_norm @ wb)
                resp *= wb.astype(resp.dtype)
            g0 += resp.sum(axis=1, dtype=np.float64)
            kernel.add_block_sums(acc, F, delta, resp, about, ctx)
        g1, g2 = kernel.split_sums(acc, k, d)
        if centred:
            # this group's sums are about c_a: move them to every component's reference
            g1, g2 = family.recentered(g0, g1, g2, refs[a] - refs)
        s0 += g0
        s1 = s1 + g1
        s2 = tuple(x + y for x, y in zip(s2, g2, strict=True))
    count = float(n) if weights is None else float(np.sum(weights))
    return SufficientStats(count, loglik, s0, s1, s2, prep.frame, prep.refs)


@_quiet
def score_rows(
    X: np.ndarray, prep: Prepared, what: str = "log_likelihood", block_rows: int = BLOCK_ROWS
) -> np.ndarray:
    """Per-row results of the E-step without statistics.

    ``what`` is ``"log_likelihood"`` (float64, ``(n_rows,)``), ``"label"``
    (int64, the most likely component), or ``"proba"`` (float64,
    ``(n_rows, n_components)``, the responsibilities). A row with NaN or infinity
    raises :class:`NonFiniteRow`, a finite row whose log-density overflows (too
    far from every component for the data dtype) :class:`UnscorableRow`: never a
    NaN result. :func:`score_rows_masked` lets both through as NaN and ``-1``.
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
        label = np.argmax(lp, axis=0) if what == "label" else None
        resp, log_norm = normalise(lp)
        _check_block(xb, log_norm, np.arange(start, start + len(xb)))
        if label is not None:
            out[start : start + len(xb)] = label
        elif what == "log_likelihood":
            out[start : start + len(xb)] = log_norm
        else:
            out[start : start + len(xb)] = resp.T
    return out


@_quiet
def score_rows_masked(
    X: np.ndarray, prep: Prepared, block_rows: int = BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood and most likely component; rows that cannot be scored (NaN or
    infinity, or a log-density that overflows) get NaN and -1."""
    n = X.shape[0]
    dtype = data_dtype(X)
    ll = np.full(n, np.nan)
    label = np.full(n, -1, dtype=np.int64)
    for start in _blocks(n, block_rows):
        xb = X[start : start + block_rows]
        y = prep.frame.to_frame(xb, dtype)
        lp, _ = prep.kernel.log_joint(prep.kernel.features(y), y, prep)
        best = np.argmax(lp, axis=0)
        _, log_norm = normalise(lp)
        ok = np.isfinite(log_norm) & np.all(np.isfinite(xb), axis=1)
        rows = np.arange(start, start + len(xb))[ok]
        ll[rows] = log_norm[ok]
        label[rows] = best[ok]
    return ll, label


def hard_estep(
    X: np.ndarray,
    centers: np.ndarray,
    fam: CovarianceFamily,
    frame: Frame,
    block_rows: int = BLOCK_ROWS,
    weights: np.ndarray | None = None,
) -> SufficientStats:
    """Statistics with one-hot responsibilities: each row to its nearest centre.

    ``centers`` are in frame units; every component's sums are taken about its
    centre (rounded to the data dtype); the log-likelihood of the result is zero.
    With ``weights``, each row's responsibility is its weight.
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
        counts = np.bincount(label, minlength=k)
        wb = None if weights is None else weights[start : start + block_rows]
        s0 += counts if wb is None else np.bincount(label, weights=wb, minlength=k)
        order = np.argsort(label, kind="stable")
        at = 0
        for a in np.flatnonzero(counts):
            rows = order[at : at + counts[a]]
            at += int(counts[a])
            delta = y[:, rows]
            delta -= c[a][:, None]
            resp = np.zeros((k, rows.size), dtype=dtype)
            resp[a] = 1.0 if wb is None else wb[rows]
            kernel.add_block_sums(acc, kernel.features(delta), delta, resp)
    s1, s2 = kernel.split_sums(acc, k, d)
    count = float(n) if weights is None else float(np.sum(weights))
    return SufficientStats(count, 0.0, s0, s1, s2, frame, c.astype(np.float64))


def weighted_estep(
    X: np.ndarray,
    resp: np.ndarray,
    fam: CovarianceFamily,
    frame: Frame,
    weights: np.ndarray | None = None,
) -> SufficientStats:
    """Statistics for given responsibilities ``resp`` of shape ``(n_rows, n_components)``
    (each row's multiplied by its weight, with ``weights``)."""
    if weights is not None:
        resp = resp * np.asarray(weights, dtype=np.float64)[:, None]
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
    count = float(n) if weights is None else float(np.sum(weights))
    return SufficientStats(count, 0.0, resp.sum(axis=0), s1, s2, frame)
