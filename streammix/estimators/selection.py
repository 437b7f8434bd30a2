"""Model selection: many candidate mixtures fitted in the same passes over the data.

Layer: edges. Every candidate (a number of components and a covariance
family) starts from k-means (shared Lloyd passes) and then all run EM
together: each chunk read in an iteration serves every candidate still
running. A last pass scores all of them at their final parameters.

Criteria: ``"bic"`` and ``"aic"`` on all rows (lower is better) or
``"heldout"``: the candidates are fitted on the rows not held out (a
``holdout`` share chosen per row by a seeded stream, whatever the chunking)
and ranked by the mean log-likelihood of the held-out rows (higher is
better); the initialisation sees all rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._random import as_generator, draw_entropy
from ..core.families import FAMILY_NAMES, get_family
from ..engine.batch_em import EMSettings, Holdout, IterationReport, RunState, estep_pass, run_em
from ..engine.compute import blas_guarded
from ..engine.init import draw_sample, fit_frame, kmeans_starts
from ..errors import InvalidInputError, InvalidParameterError
from ..io.weights import as_weighted
from .gaussian_mixture import GaussianMixture

CRITERIA = ("bic", "aic", "heldout")


@dataclass(frozen=True, slots=True)
class Selection:
    """The candidates' scores and the chosen, fitted model.

    Attributes
    ----------
    table : list of dict
        One row per candidate: ``n_components``, ``covariance_type``,
        ``n_parameters``, ``log_likelihood`` (mean, all rows or the training
        rows), ``bic``, ``aic``, ``heldout`` (mean held-out log-likelihood, for
        that criterion), ``n_iter``, ``converged``.
    best_ : GaussianMixture
    criterion : str
    """

    table: list[dict[str, Any]]
    best_: GaussianMixture
    criterion: str

    def best_row(self) -> dict[str, Any]:
        return next(r for r in self.table if r["best"])


def parse_component_counts(text: str) -> list[int]:
    """``"1-8"``, ``"2,4,8"`` or ``"1-4,8"`` as a sorted list of component counts."""
    ks: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                ks.extend(range(int(lo), int(hi) + 1))
            else:
                ks.append(int(part))
    except ValueError:
        raise InvalidParameterError(f"{text!r} is not like 1-8 or 2,4,8.") from None
    if not ks or min(ks) < 1:
        raise InvalidParameterError(f"{text!r} must name counts of at least 1.")
    return sorted(set(ks))


def _check(ks: list[int], types: list[str], criterion: str, holdout: float) -> None:
    if not ks or any(not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise InvalidParameterError(f"n_components must be positive integers; got {ks!r}.")
    bad = [t for t in types if t not in FAMILY_NAMES]
    if not types or bad:
        raise InvalidParameterError(
            f"covariance_types must be among {', '.join(FAMILY_NAMES)}; got {types!r}."
        )
    if criterion not in CRITERIA:
        raise InvalidParameterError(
            f"criterion must be one of {', '.join(CRITERIA)}; got {criterion!r}."
        )
    if not 0.0 < holdout < 1.0:
        raise InvalidParameterError(f"holdout must be in (0, 1); got {holdout}.")


@blas_guarded
def select(
    X: Any,
    n_components: Iterable[int] = range(1, 9),
    covariance_types: Sequence[str] = ("full",),
    criterion: str = "bic",
    random_state: Any = None,
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    reg_covar: float = 1e-6,
    holdout: float = 0.2,
    on_degenerate: str = "reseed",
    array: str = "X",
    on_iteration: Callable[[IterationReport], None] | None = None,
    sample_weight: Any = None,
) -> Selection:
    """Fit every (n_components, covariance_type) candidate in shared passes and pick one.

    Parameters
    ----------
    X : array-like, dask array, zarr.Array or path
    n_components : iterable of int
    covariance_types : sequence of {"full", "tied", "diag", "spherical"}
    criterion : {"bic", "aic", "heldout"}
    random_state : int, Generator or None
    holdout : float
        Share of rows held out for ``criterion="heldout"``.
    on_degenerate : {"reseed", "error"}
        Large candidates may collapse components; by default they are re-seeded.
    sample_weight : array-like, dask array, zarr.Array, location or Parquet column, optional
        Row weights (see :func:`streammix.io.weights.as_weighted`). The criteria then
        use the weighted log-likelihood, and BIC's number of rows is the sum of the
        weights (rows repeated ``w`` times give the same table).

    Returns
    -------
    Selection

    Examples
    --------
    >>> import numpy as np
    >>> from streammix import select
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(c, 0.5, (300, 2)) for c in (-6, 0, 6)])
    >>> select(X, n_components=range(1, 6), random_state=0).best_.n_components
    3
    """
    ks = sorted({int(k) for k in n_components})
    types = list(dict.fromkeys(covariance_types))
    _check(ks, types, criterion, holdout)
    data = as_weighted(X, sample_weight, array=array)
    if data.n_rows < min(ks):
        raise InvalidInputError(
            f"Expected n_samples >= n_components but got n_components = {min(ks)}, "
            f"n_samples = {data.n_rows}"
        )
    rng = as_generator(random_state)
    candidates = [(k, get_family(t)) for t in types for k in ks if k <= data.n_rows]
    seeds = np.random.SeedSequence(draw_entropy(rng)).spawn(len(candidates) + 1)
    rngs = [np.random.default_rng(s) for s in seeds]
    sample, sample_w = draw_sample(data, max(ks), rngs[-1])
    frame = fit_frame(data, sample)
    sample_y = (sample - frame.shift) / frame.scale
    starts = kmeans_starts(
        data, sample_y, frame, candidates, rngs[:-1], reg_covar, on_degenerate, sample_w
    )
    split = Holdout(draw_entropy(rng), holdout) if criterion == "heldout" else None
    settings = EMSettings(candidates[0][1], reg_covar, tol, max_iter, on_degenerate, holdout=split)
    states: list[RunState] = run_em(
        data, [RunState(p) for p in starts], frame, settings, on_iteration=on_iteration
    )
    final = [s.params for s in states]
    scored = estep_pass(data, final, frame, holdout=split)
    held = estep_pass(data, final, frame, holdout=split.other_side()) if split else None
    table = []
    for i, (state, stats) in enumerate(zip(states, scored, strict=True)):
        p = state.params.n_parameters()
        n = stats.n
        row = {
            "n_components": state.params.n_components,
            "covariance_type": state.params.family.name,
            "n_parameters": p,
            "log_likelihood": stats.loglik / n,
            "bic": -2.0 * stats.loglik + p * math.log(n),
            "aic": -2.0 * stats.loglik + 2.0 * p,
            "heldout": None if held is None else held[i].loglik / max(held[i].n, 1.0),
            "n_iter": state.n_iter,
            "converged": state.converged,
        }
        table.append(row)
    key = (lambda r: -r["heldout"]) if criterion == "heldout" else (lambda r: r[criterion])
    best = min(range(len(table)), key=lambda i: key(table[i]))
    for i, row in enumerate(table):
        row["best"] = i == best
    model = GaussianMixture.from_run(
        states[best],
        dtype=data.dtype,
        reg_covar=reg_covar,
        tol=tol,
        max_iter=max_iter,
        on_degenerate=on_degenerate,
    )
    return Selection(table, model, criterion)
