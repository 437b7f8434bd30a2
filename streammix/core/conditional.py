"""Exact inference in a Gaussian mixture: marginals, conditionals, missing values.

Layer: math (numpy/scipy only; no dask, no I/O). Pure functions of a
:class:`~streammix.core.params.MixtureParams` value; randomness only through an
explicit ``numpy.random.Generator``; everything in float64.

For one component with mean ``mu`` and covariance ``S``, split the features into
observed ones ``o`` and the others ``u``::

    x_u | x_o = v  ~  N(mu_u + S_uo S_oo^-1 (v - mu_o),  S_uu - S_uo S_oo^-1 S_ou)

and the mixture's conditional reweights component ``k`` by
``w_k N(v | mu_k,o, S_k,oo)`` (Bayes' rule, normalised in log space). With the
lower Cholesky factor ``S_oo = C C^T``, ``z = C^-1 (v - mu_o)`` and
``A = C^-1 S_ou`` (triangular solves, no inverse), the conditional mean is
``mu_u + A^T z``, the conditional covariance ``S_uu - A^T A`` and the observed
log-density ``-|z|^2 / 2 - log det C - |o| / 2 log 2 pi``.

Families. :func:`marginal` and :func:`condition` keep the covariance family:
full -> full, tied -> tied (the conditional covariance is the same for every
component), diag -> diag and spherical -> spherical (the coordinates are
independent given the component, so conditioning moves only the weights; means
and variances of the other features are unchanged). :func:`condition` obtains
the covariances from the identity ``(S^-1)_uu = (S_uu - S_uo S_oo^-1 S_ou)^-1``:
the family's own ``marginal`` applied to its precisions, then the family's
precision conversions. No code here branches on the family; this relies on a
family's precisions marginalising like its covariances (the layout is indexed
the same way), which holds for every registered family.

Missing values. :func:`impute` and :func:`log_marginal_density` take rows with
NaN in the missing entries, each row with its own pattern. Rows are grouped by
pattern and the linear algebra is done once per (pattern, component): one
Cholesky factor of ``S_oo``, one solve for ``A``, and one triangular solve with
all of the pattern's rows as right-hand sides. The cost is about
``n_patterns * K * |o|^3 / 3`` for the factors plus ``K (|o|^2 + |o| |u|)`` per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg
from scipy.special import logsumexp

from ..errors import CholeskyFailure, InvalidInputError, InvalidParameterError
from .families.interface import LOG_2PI
from .params import MixtureParams

__all__ = [
    "condition",
    "impute",
    "log_marginal_density",
    "marginal",
    "remaining_features",
]


# ------------------------------------------------------------------ validation
def _feature_index(features: ArrayLike, n_features: int) -> np.ndarray:
    """``features`` as distinct indices in ``[0, n_features)``, in the given order.

    Accepts integer indices or a boolean mask of length ``n_features``.
    """
    f = np.asarray(features)
    if f.dtype == np.bool_:
        if f.shape != (n_features,):
            raise InvalidParameterError(
                f"A boolean mask of features must have shape ({n_features},), but got {f.shape}."
            )
        return np.flatnonzero(f)
    f = np.atleast_1d(f)
    if f.ndim != 1:
        raise InvalidParameterError(
            f"features must be a 1-D sequence of feature indices, but got shape {f.shape}."
        )
    if f.size == 0:
        return np.empty(0, dtype=np.intp)
    if not np.issubdtype(f.dtype, np.integer):
        raise InvalidParameterError(
            f"features must be integer indices or a boolean mask, but got dtype {f.dtype}."
        )
    if f.min() < 0 or f.max() >= n_features:
        raise InvalidParameterError(
            f"features must be indices in [0, {n_features}), but got {f.tolist()}."
        )
    if np.unique(f).size != f.size:
        raise InvalidParameterError(f"features must not repeat an index, but got {f.tolist()}.")
    return f.astype(np.intp)


def remaining_features(n_features: int, features: ArrayLike) -> np.ndarray:
    """The features not in ``features``, ascending: the order of :func:`condition`'s result.

    Examples
    --------
    >>> remaining_features(5, [3, 0])
    array([1, 2, 4])
    """
    observed = _feature_index(features, n_features)
    keep = np.ones(n_features, dtype=bool)
    keep[observed] = False
    return np.flatnonzero(keep)


def _check_rows(params: MixtureParams, X: ArrayLike) -> np.ndarray:
    """``X`` as a float64 2-D array with the mixture's features; NaN allowed, inf not."""
    try:
        A = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"X must be a numeric array; converting it failed: {err}") from None
    if A.ndim != 2:
        raise InvalidInputError(
            f"X must be 2-D (n_samples, n_features), but got shape {A.shape}. Reshape a "
            "single row with X.reshape(1, -1)."
        )
    if A.shape[1] != params.n_features:
        raise InvalidInputError(
            f"X has {A.shape[1]} features, but the mixture has {params.n_features}. Pass rows "
            "with every feature of the mixture, NaN where a value is missing."
        )
    infinite = np.isinf(A)
    if infinite.any():
        row = int(np.flatnonzero(infinite.any(axis=1))[0])
        raise InvalidInputError(
            f"X holds infinity in row {row}. Only NaN marks a missing value; replace "
            "infinite entries by NaN or drop the row."
        )
    return A


def _log_weights(params: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """``log w`` (``-inf`` for empty components) and the indices of non-empty components."""
    with np.errstate(divide="ignore"):
        log_w = np.log(params.weights)
    active = np.flatnonzero(params.weights > 0.0)
    if active.size == 0:
        raise InvalidParameterError("The mixture has no component with a positive weight.")
    return log_w, active


def _check_scorable(log_density: np.ndarray, rows: np.ndarray) -> None:
    """Raise for rows whose observed entries have zero density under every component."""
    bad = np.flatnonzero(~np.isfinite(log_density))
    if bad.size:
        raise InvalidInputError(
            f"Row {int(rows[bad[0]])} of X is so far from every component that the density "
            "of its observed entries underflows to zero, so nothing can be inferred from "
            "it. Check the row's units, or drop it."
        )


# ------------------------------------------------- one (pattern, component)
@dataclass(frozen=True, slots=True)
class ComponentSplit:
    """One component's algebra for one split of the features into ``o`` and ``u``.

    ``chol`` is ``C`` (lower, ``S_oo = C C^T``), ``gain`` is ``A = C^-1 S_ou``
    and ``log_const`` is ``log w - log det C - |o| / 2 log 2 pi``.
    """

    chol: np.ndarray
    gain: np.ndarray
    log_const: float
    mean_o: np.ndarray
    mean_u: np.ndarray
    cov_uu: np.ndarray

    def whiten(self, Xo: np.ndarray) -> np.ndarray:
        """``z = C^-1 (x_o - mu_o)`` for rows ``Xo`` of shape ``(n, |o|)``; ``(|o|, n)``."""
        return linalg.solve_triangular(
            self.chol, (Xo - self.mean_o).T, lower=True, check_finite=False
        )

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """``log w + log N(x_o | mu_o, S_oo)``, shape ``(n,)``."""
        return self.log_const - 0.5 * np.einsum("ij,ij->j", z, z)

    def mean(self, z: np.ndarray) -> np.ndarray:
        """Conditional means ``mu_u + A^T z``, shape ``(n, |u|)``."""
        return self.mean_u + z.T @ self.gain

    def covariance(self) -> np.ndarray:
        """Conditional covariance ``S_uu - A^T A`` (Schur complement), ``(|u|, |u|)``."""
        sc = self.cov_uu - self.gain.T @ self.gain
        return 0.5 * (sc + sc.T)


def split_component(
    cov: np.ndarray,
    mean: np.ndarray,
    log_w: float,
    observed: np.ndarray,
    missing: np.ndarray,
    component: int,
) -> ComponentSplit:
    try:
        chol = np.linalg.cholesky(cov[np.ix_(observed, observed)])
    except np.linalg.LinAlgError:
        raise InvalidParameterError(
            f"The covariance of component {component} restricted to features "
            f"{observed.tolist()} is not positive definite; refit with a larger reg_covar."
        ) from None
    gain = linalg.solve_triangular(
        chol, cov[np.ix_(observed, missing)], lower=True, check_finite=False
    )
    log_det = float(np.sum(np.log(np.diagonal(chol))))
    return ComponentSplit(
        chol=chol,
        gain=gain,
        log_const=float(log_w) - log_det - 0.5 * observed.size * LOG_2PI,
        mean_o=mean[observed],
        mean_u=mean[missing],
        cov_uu=cov[np.ix_(missing, missing)],
    )


def missing_patterns(missing: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(rows, observed, missing)`` index arrays for every distinct row of ``missing``."""
    if missing.shape[0] == 0:
        return
    packed = np.packbits(missing, axis=1)  # 8 features per byte: cheaper to sort
    _, inverse, counts = np.unique(packed, axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    for rows in np.split(order, np.cumsum(counts)[:-1]):
        pattern = missing[rows[0]]
        yield rows, np.flatnonzero(~pattern), np.flatnonzero(pattern)


def _mixture_moments(
    dense: np.ndarray,
    params: MixtureParams,
    observed: np.ndarray,
    missing: np.ndarray,
    rows: np.ndarray,
    Xo: np.ndarray,
    want_mean: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Log-density of the observed entries and (optionally) ``E[x_u | x_o]`` for rows
    sharing one pattern.

    One pass over the components with a running log-sum-exp: the running maximum
    ``top``, the sum ``total`` of ``exp(lp_k - top)`` and the matching weighted sum of
    conditional means are rescaled whenever ``top`` grows.
    """
    log_w, active = _log_weights(params)
    n = Xo.shape[0]
    top = np.full(n, -np.inf)
    total = np.zeros(n)
    acc = np.zeros((n, missing.size)) if want_mean else None
    # A row whose quadratic form overflows gets -inf everywhere (NaN after the
    # subtraction below); it is reported by name instead of warned about.
    with np.errstate(over="ignore", invalid="ignore"):
        for k in active:
            part = split_component(dense[k], params.means[k], log_w[k], observed, missing, int(k))
            z = part.whiten(Xo)
            lp = part.log_density(z)
            new_top = np.maximum(top, lp)
            shrink = np.exp(top - new_top)
            w = np.exp(lp - new_top)
            total = total * shrink + w
            if acc is not None:
                acc *= shrink[:, None]
                acc += w[:, None] * part.mean(z)
            top = new_top
        log_density = top + np.log(total)
    _check_scorable(log_density, rows)
    return log_density, None if acc is None else acc / total[:, None]


def _mixture_draws(
    dense: np.ndarray,
    params: MixtureParams,
    observed: np.ndarray,
    missing: np.ndarray,
    rows: np.ndarray,
    Xo: np.ndarray,
    uniforms: np.ndarray,
    normals: np.ndarray,
) -> np.ndarray:
    """Draws of ``x_u | x_o`` for rows sharing one pattern, ``(n_draws, n, |u|)``.

    ``uniforms`` (``(n_draws, n)``) pick the component by inverting the cumulative
    conditional responsibilities; ``normals`` (``(n_draws, n, |u|)``) are mapped
    through the Cholesky factor of the component's conditional covariance.
    """
    log_w, active = _log_weights(params)
    parts = [
        split_component(dense[k], params.means[k], log_w[k], observed, missing, int(k))
        for k in active
    ]
    with np.errstate(over="ignore"):
        lp = np.stack([part.log_density(part.whiten(Xo)) for part in parts])
    top = lp.max(axis=0)
    _check_scorable(top, rows)
    cum = np.cumsum(np.exp(lp - top), axis=0)
    cum /= cum[-1]
    # Component j is chosen when cum[j-1] <= U < cum[j]: an empty interval for a
    # component whose responsibility is zero.
    choice = np.zeros(uniforms.shape, dtype=np.intp)
    for j in range(len(parts) - 1):
        choice += cum[j] <= uniforms
    out = np.empty(normals.shape)
    for j, part in enumerate(parts):
        draw, row = np.nonzero(choice == j)
        if draw.size == 0:
            continue
        try:
            factor = np.linalg.cholesky(part.covariance())
        except np.linalg.LinAlgError:
            raise InvalidParameterError(
                f"The conditional covariance of component {int(active[j])} given features "
                f"{observed.tolist()} is not positive definite; refit with a larger reg_covar."
            ) from None
        out[draw, row] = part.mean(part.whiten(Xo))[row] + normals[draw, row] @ factor.T
    return out


# -------------------------------------------------------------------- public
def marginal(params: MixtureParams, features: ArrayLike) -> MixtureParams:
    """The mixture's distribution of the sub-vector ``x[features]``.

    Parameters
    ----------
    params : MixtureParams
    features : array-like of int, or boolean mask of shape (n_features,)
        Distinct feature indices; the result's features follow this order.

    Returns
    -------
    MixtureParams
        Same weights and family; means of shape ``(n_components, len(features))``
        and the family's marginal covariances, with their precision factors.

    Examples
    --------
    >>> import numpy as np
    >>> from streammix.core.families import get_family
    >>> p = MixtureParams.from_covariances(
    ...     get_family("diag"), [0.5, 0.5], [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], np.ones((2, 3))
    ... )
    >>> marginal(p, [2, 0]).means
    array([[2., 0.],
           [5., 3.]])
    """
    idx = _feature_index(features, params.n_features)
    if idx.size == 0:
        raise InvalidParameterError(
            "features must name at least one feature to marginalise onto, but got none."
        )
    family = params.family
    return MixtureParams.from_covariances(
        family,
        params.weights.copy(),
        params.means[:, idx],
        family.marginal(params.covariances, idx),
    )


def condition(params: MixtureParams, features: ArrayLike, values: ArrayLike) -> MixtureParams:
    """The mixture's distribution of the other features given ``x[features] = values``.

    Parameters
    ----------
    params : MixtureParams
    features : array-like of int, or boolean mask of shape (n_features,)
        The observed features (distinct). An empty selection returns ``params``.
    values : array-like of shape (n_observed,)
        Finite values of the observed features, in the order of ``features``
        (ascending feature order for a mask).

    Returns
    -------
    MixtureParams
        Over the features :func:`remaining_features` lists (ascending). Weights are
        ``w_k N(v | mu_k,o, S_k,oo)`` normalised; means and covariances are the
        components' Gaussian conditionals. The family is ``params.family``:
        full and tied (one shared conditional covariance) stay so, and diag and
        spherical keep their means and variances (only the weights change).

    Examples
    --------
    >>> import numpy as np
    >>> from streammix.core.families import get_family
    >>> p = MixtureParams.from_covariances(
    ...     get_family("full"), [1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.5, 1.0]]]
    ... )
    >>> c = condition(p, [0], [2.0])
    >>> c.means, c.covariances
    (array([[1.]]), array([[[0.75]]]))
    """
    d = params.n_features
    observed = _feature_index(features, d)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (observed.size,):
        raise InvalidParameterError(
            f"values must have shape ({observed.size},), one per observed feature, but got "
            f"{v.shape}."
        )
    if not np.all(np.isfinite(v)):
        raise InvalidParameterError(
            f"values must be finite, but got {v.tolist()}. To leave a feature unobserved, "
            "omit it from features."
        )
    if observed.size == 0:
        return params
    missing = remaining_features(d, observed)
    if missing.size == 0:
        raise InvalidParameterError(
            f"features lists all {d} features, so nothing is left to condition. Use "
            "log_marginal_density for the density of a complete row."
        )
    log_w, _ = _log_weights(params)
    dense = params.dense_covariances()
    lp = np.empty(params.n_components)
    means = np.empty((params.n_components, missing.size))
    for k in range(params.n_components):
        part = split_component(dense[k], params.means[k], log_w[k], observed, missing, k)
        z = part.whiten(v[None, :])
        with np.errstate(over="ignore"):
            lp[k] = part.log_density(z)[0]
        means[k] = part.mean(z)[0]
    if not np.isfinite(lp.max()):
        raise InvalidParameterError(
            f"values {v.tolist()} are so far from every component that their density "
            "underflows to zero, so the conditional is undefined. Check their units."
        )
    weights = np.exp(lp - logsumexp(lp))
    weights /= weights.sum()
    # The conditional covariance is the inverse of the precision's `u` block, which
    # keeps each family's layout: marginalise the precisions, then invert.
    family = params.family
    try:
        prec_chol = family.precision_cholesky_from_precisions(
            family.marginal(params.precisions, missing)
        )
    except CholeskyFailure as err:
        raise InvalidParameterError(
            f"The precisions of components {err.components} restricted to features "
            f"{missing.tolist()} are not positive definite; refit with a larger reg_covar."
        ) from None
    covariances = family.covariances_from_precision_cholesky(prec_chol)
    return MixtureParams(family, weights, means, covariances, prec_chol)


def log_marginal_density(params: MixtureParams, X: ArrayLike) -> np.ndarray:
    """Log-density of every row's observed entries; NaN marks a missing entry.

    Parameters
    ----------
    params : MixtureParams
    X : array-like of shape (n_samples, n_features)
        NaN where a value is missing; every row may have its own pattern.

    Returns
    -------
    ndarray of shape (n_samples,), float64
        ``log sum_k w_k N(x_o | mu_k,o, S_k,oo)`` with ``o`` the row's observed
        features: the full log-density for complete rows, 0 for rows with no
        observed entry.

    Examples
    --------
    >>> import numpy as np
    >>> from streammix.core.families import get_family
    >>> p = MixtureParams.from_covariances(get_family("spherical"), [1.0], [[0.0, 0.0]], [1.0])
    >>> log_marginal_density(p, np.array([[0.0, np.nan], [np.nan, np.nan]]))
    array([-0.91893853,  0.        ])
    """
    A = _check_rows(params, X)
    out = np.zeros(A.shape[0])
    dense = params.dense_covariances()
    for rows, observed, missing in missing_patterns(np.isnan(A)):
        if observed.size == 0:
            continue
        log_density, _ = _mixture_moments(
            dense, params, observed, missing, rows, A[np.ix_(rows, observed)], want_mean=False
        )
        out[rows] = log_density
    return out


def impute(
    params: MixtureParams,
    X: ArrayLike,
    n_draws: int = 0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Fill the NaN entries of every row from the mixture's conditional given the rest.

    Parameters
    ----------
    params : MixtureParams
    X : array-like of shape (n_samples, n_features)
        NaN where a value is missing; every row may have its own pattern.
    n_draws : int, default 0
        0 for the conditional mean ``E[x_u | x_o]``; otherwise the number of
        independent draws from the conditional mixture per row.
    rng : numpy.random.Generator, optional
        Required when ``n_draws > 0``. Draws of row ``i`` use the ``i``-th slice of
        the generator's output, so they do not depend on the other rows' patterns.

    Returns
    -------
    ndarray, float64
        ``(n_samples, n_features)`` when ``n_draws == 0``, else
        ``(n_draws, n_samples, n_features)``. Observed entries are copied
        unchanged; rows with no missing entry are returned as they are, and rows
        with no observed entry get the mixture mean (or draws from the mixture).

    Examples
    --------
    >>> import numpy as np
    >>> from streammix.core.families import get_family
    >>> p = MixtureParams.from_covariances(
    ...     get_family("tied"), [1.0], [[0.0, 0.0]], [[1.0, 0.5], [0.5, 1.0]]
    ... )
    >>> impute(p, np.array([[2.0, np.nan], [1.0, 1.0]]))
    array([[2., 1.],
           [1., 1.]])
    """
    if isinstance(n_draws, bool) or not isinstance(n_draws, int | np.integer) or n_draws < 0:
        raise InvalidParameterError(
            f"n_draws must be an int in [0, inf), but got {n_draws!r}. Use 0 for the "
            "conditional mean."
        )
    n_draws = int(n_draws)
    if n_draws > 0 and not isinstance(rng, np.random.Generator):
        raise InvalidParameterError(
            f"rng must be a numpy.random.Generator when n_draws > 0, but got {rng!r}. Pass "
            "numpy.random.default_rng(seed)."
        )
    A = _check_rows(params, X)
    n, d = A.shape
    nan = np.isnan(A)
    dense = params.dense_covariances()
    if n_draws == 0:
        out = A.copy()
        for rows, observed, missing in missing_patterns(nan):
            if missing.size == 0:
                continue
            _, mean = _mixture_moments(
                dense, params, observed, missing, rows, A[np.ix_(rows, observed)], want_mean=True
            )
            out[np.ix_(rows, missing)] = mean
        return out
    assert rng is not None
    uniforms = rng.random((n_draws, n))
    normals = rng.standard_normal((n_draws, n, d))
    draws = np.broadcast_to(A, (n_draws, n, d)).copy()
    for rows, observed, missing in missing_patterns(nan):
        if missing.size == 0:
            continue
        cells = (rows[:, None], missing[None, :])
        draws[:, cells[0], cells[1]] = _mixture_draws(
            dense,
            params,
            observed,
            missing,
            rows,
            A[np.ix_(rows, observed)],
            uniforms[:, rows],
            normals[:, cells[0], cells[1]],
        )
    return draws
