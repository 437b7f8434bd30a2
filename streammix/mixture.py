"""``GaussianMixture``: scikit-learn's estimator, over data of any size.

Layer: edges. Validates arguments, turns input into chunks, and hands the
work to the engine; the fitted parameters live in one
:class:`~streammix.core.params.MixtureParams` value, exposed through
scikit-learn's attribute names.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ._estimator import Estimator
from ._random import as_generator, draw_entropy
from ._validation import (
    Constraint,
    Interval,
    IsArrayLike,
    IsBool,
    IsNone,
    IsRandomState,
    Options,
    check_params,
)
from .core import sampling
from .core.families import FAMILY_NAMES, CholeskyFailure, CovarianceFamily, get_family
from .core.kernel import score_rows
from .core.mstep import DEGENERATE_POLICIES
from .core.params import MixtureParams
from .engine import score as engine_score
from .engine.batch import EMSettings, IterationReport, RunState, best_run, run_em
from .engine.data import ChunkedData
from .engine.init import INIT_METHODS, InitSpec, initial_params, params_frame
from .errors import ConvergenceWarning, InvalidInputError, InvalidParameterError
from .io.inputs import as_chunked
from .io.modelfile import register_kind, write_model_dir

logger = logging.getLogger("streammix")

_RULES: dict[str, list[Constraint]] = {
    "n_components": [Interval("int", 1, None, "left")],
    "covariance_type": [Options(FAMILY_NAMES)],
    "tol": [Interval("real", 0.0, None, "left")],
    "reg_covar": [Interval("real", 0.0, None, "left")],
    "max_iter": [Interval("int", 0, None, "left")],
    "n_init": [Interval("int", 1, None, "left")],
    "init_params": [Options(INIT_METHODS)],
    "weights_init": [IsArrayLike(), IsNone()],
    "means_init": [IsArrayLike(), IsNone()],
    "precisions_init": [IsArrayLike(), IsNone()],
    "random_state": [IsRandomState()],
    "warm_start": [IsBool()],
    "verbose": [Interval("int", 0, None, "left")],
    "verbose_interval": [Interval("int", 1, None, "left")],
    "on_degenerate": [Options(DEGENERATE_POLICIES)],
    "persist": [IsBool()],
}


def _score_sum_chunk(X: np.ndarray, offset: int, prep: Any) -> tuple[float, int]:
    return float(np.sum(score_rows(X, prep))), X.shape[0]


def _add_pairs(a: tuple[float, int], b: tuple[float, int]) -> tuple[float, int]:
    return a[0] + b[0], a[1] + b[1]


class GaussianMixture(Estimator):
    """A Gaussian mixture fitted by EM over chunked data.

    Parameters have scikit-learn's names, defaults and meanings; ``X`` may be a
    numpy array, a dask array, a ``zarr.Array`` or a path to a Zarr array (a
    group path uses its array ``X``). A Zarr input is read chunk by chunk in
    every EM iteration and never loaded whole.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold on the change of the mean per-row log-likelihood.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.
    max_iter : int, default=100
    n_init : int, default=1
        Restarts; the one with the best final lower bound is kept. All restarts
        advance together, one read of the data per iteration.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        ``"kmeans"`` seeds k-means++ on a sample of rows and runs Lloyd passes
        over all chunks.
    weights_init, means_init, precisions_init : array-like, optional
        Starting values; when ``means_init`` is given without
        ``precisions_init``, starting covariances come from assigning each row
        to its nearest given mean.
    random_state : int, Generator, RandomState or None
    warm_start : bool, default=False
        Continue from the fitted parameters (one run, no initialisation).
    verbose : int, default=0
        ``1`` logs restarts and every ``verbose_interval`` iterations on the
        ``streammix`` logger, ``2`` adds the lower bound and timings.
    verbose_interval : int, default=10
    on_degenerate : {"error", "reseed"}, default="error"
        What happens when a component collapses or empties: raise, or replace
        it by half of the heaviest component (see :mod:`streammix.core.mstep`).
    persist : bool, default=False
        Hold lazy input in (cluster) memory for the fit instead of re-reading it
        every iteration; only for data that fit there.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes as scikit-learn: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)``
        diag, ``(K,)`` spherical.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    lower_bounds_ : list of float
        The lower bound of every iteration of the kept run.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from streammix import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (500, 2)), rng.normal(4, 1, (500, 2))])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(gm.means_[:, 0]))
    array([-4.,  4.])
    """

    _estimator_type = "density_estimator"

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        on_degenerate: str = "error",
        persist: bool = False,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.on_degenerate = on_degenerate
        self.persist = persist

    # ------------------------------------------------------------- validation
    def _validate_params(self) -> None:
        check_params(type(self).__name__, _RULES, self.get_params())

    def _family(self) -> CovarianceFamily:
        return get_family(self.covariance_type)

    def _init_spec(self, n_features: int) -> InitSpec:
        k, family = self.n_components, self._family()
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
            if weights.shape != (k,):
                raise InvalidParameterError(
                    f"The parameter 'weights' should have the shape of ({k},), but got "
                    f"{weights.shape}."
                )
            if np.any(weights < 0.0) or np.any(weights > 1.0):
                raise InvalidParameterError(
                    "The parameter 'weights' should be in the range [0, 1], but got "
                    f"max value {weights.max():.5f}, min value {weights.min():.5f}."
                )
            if not np.isclose(weights.sum(), 1.0, rtol=0.0, atol=1e-8):
                raise InvalidParameterError(
                    f"The parameter 'weights' should be normalized, but got sum(weights) = "
                    f"{weights.sum():.5f}."
                )
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=np.float64)
            if means.shape != (k, n_features):
                raise InvalidParameterError(
                    f"The parameter 'means' should have the shape of {(k, n_features)}, but got "
                    f"{means.shape}."
                )
        if self.precisions_init is not None:
            precisions = np.asarray(self.precisions_init, dtype=np.float64)
            try:
                family.check_shape(precisions, k, n_features, "precisions")
                family.check_positive_definite(precisions, "precisions")
            except ValueError as err:
                raise InvalidParameterError(str(err)) from None
        return InitSpec(self.init_params, weights, means, precisions)

    def _data(self, X: Any, *, fitting: bool = False) -> ChunkedData:
        data = as_chunked(X)
        if fitting:
            if self.warm_start and self.__sklearn_is_fitted__():
                self._check_n_features(data.n_features)
        else:
            self._check_fitted()
            self._check_n_features(data.n_features)
        return data

    # -------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None) -> GaussianMixture:
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, zarr.Array or path
        y : ignored

        Returns
        -------
        self
        """
        self._fit(X)
        return self

    def fit_predict(self, X: Any, y: Any = None) -> Any:
        """Fit, then return the most likely component of every row."""
        self._fit(X)
        return self.predict(X)

    def _fit(self, X: Any, on_iteration: Callable[[IterationReport], None] | None = None) -> None:
        self._validate_params()
        data = self._data(X, fitting=True)
        if data.n_rows < self.n_components:
            raise InvalidInputError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {data.n_rows}"
            )
        if self.persist:
            data = data.persist()
        states, frame = self._starts(data)
        settings = EMSettings(
            self._family(),
            float(self.reg_covar),
            float(self.tol),
            int(self.max_iter),
            self.on_degenerate,
        )
        hook = self._verbose_hook(on_iteration)
        states = run_em(data, states, frame, settings, on_iteration=hook)
        self._adopt(states[best_run(states)], data.n_features)

    def _starts(self, data: ChunkedData) -> tuple[list[RunState], Any]:
        if self.warm_start and self.__sklearn_is_fitted__():
            params = self._params()
            return [RunState(params)], params_frame(params, data.dtype)
        rng = as_generator(self.random_state)
        seeds = np.random.SeedSequence(draw_entropy(rng)).spawn(self.n_init)
        rngs = [np.random.default_rng(s) for s in seeds]
        spec = self._init_spec(data.n_features)
        starts, frame = initial_params(
            data,
            self._family(),
            self.n_components,
            spec,
            float(self.reg_covar),
            self.on_degenerate,
            rngs,
        )
        return [RunState(p) for p in starts], frame

    def _verbose_hook(
        self, on_iteration: Callable[[IterationReport], None] | None
    ) -> Callable[[IterationReport], None] | None:
        if not self.verbose:
            return on_iteration

        def hook(report: IterationReport) -> None:
            if report.iteration % self.verbose_interval == 0:
                best = report.best
                if self.verbose > 1:
                    logger.warning(
                        "Iteration %d\t time lapse %.5fs\t lower bound %.5f",
                        report.iteration,
                        report.seconds,
                        best.lower_bound,
                    )
                else:
                    logger.warning("Iteration %d", report.iteration)
            if on_iteration is not None:
                on_iteration(report)

        return hook

    def _adopt(self, state: RunState, n_features: int) -> None:
        """Take the parameters and history of a finished run as the fitted state."""
        if not state.converged and self.max_iter > 0:
            warnings.warn(
                "EM stopped after max_iter iterations without converging (the best run's "
                f"lower bound still changed by {self.tol} or more). Increase max_iter or tol, "
                "try other init parameters, or check the data for degeneracy.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_params(state.params, n_features)
        self.converged_ = bool(state.converged)
        self.n_iter_ = int(state.n_iter)
        self.lower_bounds_ = [float(b) for b in state.lower_bounds]
        self.lower_bound_ = float(state.lower_bound)

    def _set_params(self, params: MixtureParams, n_features: int) -> None:
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = params.precisions
        self.n_features_in_ = n_features

    def _params(self) -> MixtureParams:
        self._check_fitted()
        return MixtureParams(
            self._family(),
            self.weights_,
            self.means_,
            self.covariances_,
            self.precisions_cholesky_,
        )

    # ------------------------------------------------------------ known params
    @classmethod
    def from_parameters(
        cls,
        weights: Any,
        means: Any,
        covariances: Any,
        covariance_type: str = "full",
        **kwargs: Any,
    ) -> GaussianMixture:
        """A fitted mixture from known parameters.

        Parameters
        ----------
        weights : array-like of shape (n_components,)
            Non-negative, summing to one.
        means : array-like of shape (n_components, n_features)
        covariances : array-like
            In the layout of ``covariance_type`` (scikit-learn's ``covariances_``).
        covariance_type : {"full", "tied", "diag", "spherical"}
        **kwargs
            Other constructor parameters.

        Examples
        --------
        >>> import numpy as np
        >>> gm = GaussianMixture.from_parameters([0.5, 0.5], [[0.0], [3.0]], [[[1.0]], [[1.0]]])
        >>> gm.predict(np.array([[2.9]]))
        array([1])
        """
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2:
            raise InvalidParameterError(
                f"means must be 2-D (n_components, n_features); got {means.shape}."
            )
        k, d = means.shape
        gm = cls(n_components=k, covariance_type=covariance_type, **kwargs)
        gm._validate_params()
        gm.weights_init = weights
        spec = gm._init_spec(d)
        gm.weights_init = None
        assert spec.weights is not None
        family = gm._family()
        cov = np.asarray(covariances, dtype=np.float64)
        if not np.all(np.isfinite(means)) or not np.all(np.isfinite(cov)):
            raise InvalidParameterError("means and covariances must be finite.")
        try:
            family.check_shape(cov, k, d, "covariances")
            family.check_positive_definite(cov, "covariances")
            params = MixtureParams.from_covariances(family, spec.weights, means, cov)
        except (ValueError, CholeskyFailure) as err:
            raise InvalidParameterError(f"Invalid covariances: {err}") from None
        gm._set_params(params, d)
        gm.converged_, gm.n_iter_ = True, 0
        gm.lower_bounds_, gm.lower_bound_ = [], float("nan")
        return gm

    # ---------------------------------------------------------------- scoring
    def score_samples(self, X: Any) -> Any:
        """Log-likelihood of every row, ``log p(x)``.

        Returns a numpy array for numpy input and a lazy dask array for dask or
        Zarr input, chunked like the input's rows.
        """
        data = self._data(X)
        return engine_score.score(data, self._params(), "log_likelihood")

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood of the rows (computed, also for lazy input)."""
        data = self._data(X)
        prep = engine_score.prepare_for(self._params(), data)
        total, n = data.map_reduce(_score_sum_chunk, prep, combine=_add_pairs, label="score")
        return float(total / n)

    def predict(self, X: Any) -> Any:
        """The most likely component of every row."""
        data = self._data(X)
        return engine_score.score(data, self._params(), "label")

    def predict_proba(self, X: Any) -> Any:
        """Responsibilities, shape ``(n_samples, n_components)``."""
        data = self._data(X)
        return engine_score.score(data, self._params(), "proba")

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = self._data(X).n_rows
        return float(-2.0 * self.score(X) * n + self._params().n_parameters() * np.log(n))

    def aic(self, X: Any) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        n = self._data(X).n_rows
        return float(-2.0 * self.score(X) * n + 2.0 * self._params().n_parameters())

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw rows from the mixture, in random order (not grouped by component).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
        """
        self._check_fitted()
        if not isinstance(n_samples, int | np.integer) or n_samples < 1:
            raise InvalidParameterError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires at "
                "least one sample."
            )
        return sampling.sample(self._params(), int(n_samples), as_generator(self.random_state))

    # ------------------------------------------------------------------ files
    def _model_meta(self) -> dict[str, Any]:
        hyper = {
            k: v
            for k, v in self.get_params().items()
            if k not in ("weights_init", "means_init", "precisions_init", "random_state")
        }
        return {
            "kind": type(self).__name__,
            "covariance_type": self.covariance_type,
            "n_components": int(self.weights_.shape[0]),
            "n_features": int(self.n_features_in_),
            "hyperparameters": hyper,
            "fit": {
                "converged": bool(self.converged_),
                "n_iter": int(self.n_iter_),
                "lower_bound": float(self.lower_bound_),
                "lower_bounds": list(self.lower_bounds_),
            },
        }

    def _model_arrays(self) -> dict[str, np.ndarray]:
        return {
            "weights": self.weights_,
            "means": self.means_,
            "covariances": self.covariances_,
        }

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the fitted model to the directory ``path`` (atomically, no pickle).

        Returns the path. Load it with :func:`streammix.load`.
        """
        self._check_fitted()
        return str(write_model_dir(path, self._model_meta(), self._model_arrays()))

    @classmethod
    def _from_model(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> GaussianMixture:
        hyper = dict(meta.get("hyperparameters") or {})
        known = set(cls._param_names())
        kwargs = {k: v for k, v in hyper.items() if k in known and k != "n_components"}
        kwargs["covariance_type"] = meta["covariance_type"]
        weights, means, cov = arrays["weights"], arrays["means"], arrays["covariances"]
        for name, arr in arrays.items():
            if not np.all(np.isfinite(arr)):
                raise InvalidParameterError(f"array {name!r} holds NaN or infinity")
        if means.shape != (meta["n_components"], meta["n_features"]):
            raise InvalidParameterError(
                f"means have shape {means.shape}, expected "
                f"{(meta['n_components'], meta['n_features'])}"
            )
        gm = cls.from_parameters(weights, means, cov, **kwargs)
        fit = meta.get("fit") or {}
        gm.converged_ = bool(fit.get("converged", True))
        gm.n_iter_ = int(fit.get("n_iter", 0))
        bounds = fit.get("lower_bounds") or []
        gm.lower_bounds_ = [float("nan") if b is None else float(b) for b in bounds]
        lb = fit.get("lower_bound")
        gm.lower_bound_ = float("nan") if lb is None else float(lb)
        return gm

    def to_sklearn(self) -> Any:
        """An equivalent fitted ``sklearn.mixture.GaussianMixture`` (needs scikit-learn)."""
        from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

        self._check_fitted()
        params = {
            k: v for k, v in self.get_params().items() if k not in ("on_degenerate", "persist")
        }
        params["n_components"] = int(self.weights_.shape[0])
        est = SklearnGaussianMixture(**params)
        for name in (
            "weights_",
            "means_",
            "covariances_",
            "precisions_",
            "precisions_cholesky_",
            "converged_",
            "n_iter_",
            "lower_bound_",
            "lower_bounds_",
            "n_features_in_",
        ):
            value = getattr(self, name)
            setattr(est, name, value.copy() if isinstance(value, np.ndarray) else value)
        return est


register_kind("GaussianMixture", GaussianMixture._from_model)
