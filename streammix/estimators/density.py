"""What batch and online mixtures share: parameters, scoring, sampling, files.

Layer: edges. A fitted mixture keeps its parameters in scikit-learn's
attributes (``weights_``, ``means_``, ``covariances_``, ``precisions_``,
``precisions_cholesky_``); :meth:`BaseMixture._params` views them as one
:class:`~streammix.core.params.MixtureParams` value for the engine.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import dask.array as da
import numpy as np

from .._random import as_generator, draw_entropy
from .._validation import (
    Constraint,
    Interval,
    IsArrayLike,
    IsBool,
    IsNone,
    IsRandomState,
    Options,
    check_params,
)
from ..core import conditional, explain, sampling
from ..core.families import COVARIANCE_TYPES, CovarianceFamily, get_family
from ..core.kernel import score_rows
from ..core.mstep import DEGENERATE_POLICIES
from ..core.params import MixtureParams
from ..engine import scoring as engine_score
from ..engine.data import ChunkedData
from ..engine.init import INIT_METHODS, InitSpec
from ..errors import CholeskyFailure, InvalidParameterError
from ..io.inputs import as_chunked
from ..io.location import Location
from ..io.modelfile import write_model_dir
from .estimator import Estimator

# Rules for the parameters every mixture has; subclasses add their own.
COMMON_RULES: dict[str, list[Constraint]] = {
    "n_components": [Interval("int", 1, None, "left")],
    "covariance_type": [Options(COVARIANCE_TYPES)],
    "rank": [Interval("int", 1, None, "left"), IsNone()],
    "reg_covar": [Interval("real", 0.0, None, "left")],
    "init_params": [Options(INIT_METHODS)],
    "weights_init": [IsArrayLike(), IsNone()],
    "means_init": [IsArrayLike(), IsNone()],
    "precisions_init": [IsArrayLike(), IsNone()],
    "random_state": [IsRandomState()],
    "warm_start": [IsBool()],
    "on_degenerate": [Options(DEGENERATE_POLICIES)],
}

# Hyperparameters that are arrays or generators and are not written to model files.
_NOT_SAVED = ("weights_init", "means_init", "precisions_init", "random_state")


def check_weights(weights: Any, n_components: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_components,):
        raise InvalidParameterError(
            f"The parameter 'weights' should have the shape of ({n_components},), but got "
            f"{w.shape}."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0.0) or np.any(w > 1.0):
        raise InvalidParameterError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"max value {np.max(w):.5f}, min value {np.min(w):.5f}."
        )
    if not np.isclose(w.sum(), 1.0, rtol=0.0, atol=1e-8):
        raise InvalidParameterError(
            f"The parameter 'weights' should be normalized, but got sum(weights) = {w.sum():.5f}."
        )
    return w


def check_means(means: Any, n_components: int, n_features: int) -> np.ndarray:
    m = np.asarray(means, dtype=np.float64)
    if m.shape != (n_components, n_features):
        raise InvalidParameterError(
            f"The parameter 'means' should have the shape of {(n_components, n_features)}, "
            f"but got {m.shape}."
        )
    if not np.all(np.isfinite(m)):
        raise InvalidParameterError("The parameter 'means' holds NaN or infinity.")
    return m


def check_matrices(
    family: CovarianceFamily, value: Any, n_components: int, n_features: int, what: str
) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    try:
        family.check_shape(a, n_components, n_features, what)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"The parameter {what!r} holds NaN or infinity.")
        family.check_positive_definite(a, what)
    except ValueError as err:
        raise InvalidParameterError(str(err)) from None
    return a


def _score_sum_chunk(X: np.ndarray, offset: int, prep: Any) -> tuple[float, int]:
    return float(np.sum(score_rows(X, prep))), X.shape[0]


def _add_pairs(a: tuple[float, int], b: tuple[float, int]) -> tuple[float, int]:
    return a[0] + b[0], a[1] + b[1]


def _impute_chunk(
    X: np.ndarray, offset: int, params: MixtureParams, n_draws: int, entropy: int
) -> np.ndarray:
    if not n_draws:
        return conditional.impute(params, X)
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(offset,)))
    return np.moveaxis(conditional.impute(params, X, n_draws=n_draws, rng=rng), 0, 1)


def _explain_chunk(
    X: np.ndarray, offset: int, params: MixtureParams, prep: Any, top: int
) -> np.ndarray:
    component = score_rows(X, prep, "label")
    z = explain.conditional_zscores(params, X, component)
    return np.column_stack([component, z, explain.top_features(z, top)]).astype(np.float64)


def _marginal_chunk(X: np.ndarray, offset: int, params: MixtureParams) -> np.ndarray:
    return conditional.log_marginal_density(params, X)


class BaseMixture(Estimator):
    """Parameters, scoring, sampling and model files of a Gaussian mixture."""

    _estimator_type = "density_estimator"
    _rules: ClassVar[dict[str, list[Constraint]]] = COMMON_RULES

    n_components: int
    covariance_type: str
    reg_covar: float
    init_params: str
    weights_init: Any
    means_init: Any
    precisions_init: Any
    random_state: Any
    warm_start: bool
    on_degenerate: str

    # ------------------------------------------------------------- validation
    def _validate_params(self) -> None:
        check_params(type(self).__name__, self._rules, self.get_params())

    def _family(self) -> CovarianceFamily:
        try:
            return get_family(self.covariance_type, getattr(self, "rank", None))
        except ValueError as err:
            raise InvalidParameterError(str(err)) from None

    def _init_spec(self, n_features: int) -> InitSpec:
        k = self.n_components
        return InitSpec(
            self.init_params,
            None if self.weights_init is None else check_weights(self.weights_init, k),
            None if self.means_init is None else check_means(self.means_init, k, n_features),
            None
            if self.precisions_init is None
            else check_matrices(self._family(), self.precisions_init, k, n_features, "precisions"),
        )

    def _continuing(self) -> bool:
        return bool(self.warm_start) and self.__sklearn_is_fitted__()

    def _data(self, X: Any, *, fitting: bool = False) -> ChunkedData:
        allow_nan = fitting and getattr(self, "missing", "error") == "em"
        data = as_chunked(X, allow_nan=allow_nan)
        if not fitting:
            self._check_fitted()
        if not fitting or self._continuing():
            self._check_n_features(data.n_features)
        return data

    # -------------------------------------------------------------- parameters
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

    def _set_history(
        self, converged: bool, n_iter: int, lower_bounds: list[float], lower_bound: float
    ) -> None:
        self.converged_ = bool(converged)
        self.n_iter_ = int(n_iter)
        self.lower_bounds_ = [float(b) for b in lower_bounds]
        self.lower_bound_ = float(lower_bound)

    @classmethod
    def from_parameters(
        cls,
        weights: Any,
        means: Any,
        covariances: Any,
        covariance_type: str = "full",
        **kwargs: Any,
    ) -> Any:
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
        >>> from streammix import GaussianMixture
        >>> gm = GaussianMixture.from_parameters([0.5, 0.5], [[0.0], [3.0]], [[[1.0]], [[1.0]]])
        >>> gm.predict(np.array([[2.9]]))
        array([1])
        """
        means = np.asarray(means, dtype=np.float64)
        cov_arr = np.asarray(covariances, dtype=np.float64)
        if covariance_type == "lowrank" and kwargs.get("rank") is None and cov_arr.ndim == 3:
            kwargs["rank"] = cov_arr.shape[2] - 1
        if means.ndim != 2:
            raise InvalidParameterError(
                f"means must be 2-D (n_components, n_features); got shape {means.shape}."
            )
        k, d = means.shape
        factory: Any = cls  # subclasses define the constructor
        est = factory(n_components=k, covariance_type=covariance_type, **kwargs)
        est._validate_params()
        family = est._family()
        w = check_weights(weights, k)
        m = check_means(means, k, d)
        cov = check_matrices(family, covariances, k, d, "covariances")
        try:
            params = MixtureParams.from_covariances(family, w, m, cov)
        except CholeskyFailure as err:
            raise InvalidParameterError(
                f"covariances of components {err.components} are not positive definite"
            ) from None
        est._set_params(params, d)
        est._set_history(True, 0, [], float("nan"))
        return est

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

    # ------------------------------------------------------- exact inference
    def marginal(self, features: Any) -> Any:
        """The mixture of the sub-vector ``x[features]`` (a fitted :class:`GaussianMixture`).

        Examples
        --------
        >>> import numpy as np
        >>> from streammix import GaussianMixture
        >>> gm = GaussianMixture.from_parameters([1.0], [[1.0, 2.0]], [np.eye(2)])
        >>> gm.marginal([1]).means_
        array([[2.]])
        """
        return self._known(conditional.marginal(self._params(), features))

    def condition(self, features: Any, values: Any) -> Any:
        """The mixture of the other features given ``x[features] = values``.

        Weights are reweighted by each component's density of the observed values;
        means and covariances are the Gaussian conditionals (Schur complements).
        The remaining features keep their order.
        """
        params = self._params()
        if not params.family.exact_conditionals:
            params = params.to_full()
        return self._known(conditional.condition(params, features, values))

    def _known(self, params: MixtureParams) -> Any:
        from .gaussian_mixture import GaussianMixture

        return GaussianMixture.from_parameters(
            params.weights,
            params.means,
            params.covariances,
            params.family.name,
            reg_covar=self.reg_covar,
            rank=getattr(params.family, "rank", None),
        )

    def impute(self, X: Any, n_draws: int = 0, random_state: Any = None) -> Any:
        """Fill the NaN entries of every row from the mixture conditional on its
        observed entries (each row its own pattern).

        Parameters
        ----------
        X : array-like, dask array, zarr.Array or path, with NaN for missing values
        n_draws : int, default=0
            0 fills with the conditional mean; ``n > 0`` returns ``n`` conditional
            draws, shape ``(n, n_samples, n_features)``.
        random_state : int, Generator or None
            Seeds the draws; chunk ``c`` draws from its own stream, so the result
            is reproducible for a given chunking.

        Returns
        -------
        ndarray for numpy input, lazy dask array for dask or Zarr input.
        """
        if not isinstance(n_draws, int | np.integer) or n_draws < 0:
            raise InvalidParameterError(f"n_draws must be an int >= 0; got {n_draws!r}.")
        self._check_fitted()
        data = as_chunked(X, allow_nan=True)
        self._check_n_features(data.n_features)
        entropy = draw_entropy(as_generator(random_state)) if n_draws else 0
        tail = (int(n_draws), data.n_features) if n_draws else (data.n_features,)
        out = data.map_rows(
            _impute_chunk, self._params(), int(n_draws), entropy, dtype=np.float64, tail=tail
        )
        if not n_draws:
            return out
        return da.moveaxis(out, 1, 0) if data.is_lazy else np.moveaxis(out, 1, 0)

    def explain(self, X: Any, top: int = 3) -> dict[str, Any]:
        """Why rows score as they do: for each row its most likely component, every
        feature's conditional z-score under that component (how unusual the feature
        is given the row's other features; see :mod:`streammix.core.explain`) and
        the ``top`` features by ``|z|``.

        Returns
        -------
        dict with ``component`` (n_samples,), ``zscores`` (n_samples, n_features)
        and ``top_features`` (n_samples, top); numpy arrays for numpy input, lazy
        dask arrays for lazy input.
        """
        data = self._data(X)
        d = data.n_features
        top = min(int(top), d)
        params = self._params()
        out = data.map_rows(
            _explain_chunk,
            params,
            engine_score.prepare_for(params, data),
            top,
            dtype=np.float64,
            tail=(1 + d + top,),
        )
        return {
            "component": out[:, 0].astype(np.int64),
            "zscores": out[:, 1 : 1 + d],
            "top_features": out[:, 1 + d :].astype(np.int64),
        }

    def log_marginal_density(self, X: Any) -> Any:
        """Log-density of every row's observed (non-NaN) entries; 0 for empty rows."""
        self._check_fitted()
        data = as_chunked(X, allow_nan=True)
        self._check_n_features(data.n_features)
        return data.map_rows(_marginal_chunk, self._params(), dtype=np.float64)

    # ------------------------------------------------------------------ files
    def calibrate(self, X: Any, contamination: float) -> float:
        """Set ``threshold_``: the ``contamination`` quantile of ``X``'s log-likelihoods.

        Rows scoring below it are outliers; the threshold is saved with the model.
        """
        from ..engine.quantile import quantile

        if not 0.0 < contamination <= 0.5:
            raise InvalidParameterError(f"contamination must be in (0, 0.5]; got {contamination}.")
        scores = self.score_samples(X)
        value = quantile(scores, contamination)
        self.threshold_ = float(value)
        self.threshold_info_ = {"contamination": float(contamination), "source": "fit data"}
        return self.threshold_

    def _model_meta(self) -> dict[str, Any]:
        hyper = {k: v for k, v in self.get_params().items() if k not in _NOT_SAVED}
        calibration = None
        if getattr(self, "threshold_", None) is not None:
            calibration = {"threshold": self.threshold_, **getattr(self, "threshold_info_", {})}
        return {
            "calibration": calibration,
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
            "precisions_cholesky": self.precisions_cholesky_,
        }

    def save(self, path: str | os.PathLike[str] | Location) -> str:
        """Write the fitted model to the directory ``path`` (atomically, no pickle).

        Returns the path. Load it with :func:`streammix.load`.
        """
        self._check_fitted()
        return str(write_model_dir(path, self._model_meta(), self._model_arrays()))

    @classmethod
    def _from_model(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        """Rebuild a fitted estimator from a validated model directory."""
        hyper = dict(meta.get("hyperparameters") or {})
        known = set(cls._param_names())
        kwargs = {k: v for k, v in hyper.items() if k in known and k != "n_components"}
        kwargs["covariance_type"] = meta["covariance_type"]
        for name, arr in arrays.items():
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise InvalidParameterError(f"array {name!r} holds NaN or infinity")
        expected = (meta["n_components"], meta["n_features"])
        if arrays["means"].shape != expected:
            raise InvalidParameterError(
                f"means have shape {arrays['means'].shape}, expected {expected}"
            )
        est = cls.from_parameters(
            arrays["weights"], arrays["means"], arrays["covariances"], **kwargs
        )
        # Keep the saved factors bit for bit (scores after loading equal scores before),
        # once they are shown to factor the saved covariances.
        saved = arrays["precisions_cholesky"]
        if saved.shape != est.precisions_cholesky_.shape or not np.allclose(
            saved, est.precisions_cholesky_, rtol=1e-6, atol=0.0
        ):
            raise InvalidParameterError("precisions_cholesky does not match the covariances")
        est.precisions_cholesky_ = saved
        est.precisions_ = est._family().precisions(saved)
        fit = meta.get("fit") or {}
        bounds = [float("nan") if b is None else float(b) for b in fit.get("lower_bounds") or []]
        lb = fit.get("lower_bound")
        calibration = meta.get("calibration")
        if isinstance(calibration, dict) and calibration.get("threshold") is not None:
            est.threshold_ = float(calibration["threshold"])
            est.threshold_info_ = {k: v for k, v in calibration.items() if k != "threshold"}
        est._set_history(
            fit.get("converged", True),
            fit.get("n_iter", 0),
            bounds,
            float("nan") if lb is None else float(lb),
        )
        return est

    def to_sklearn(self) -> Any:
        """An equivalent fitted ``sklearn.mixture.GaussianMixture`` (needs scikit-learn)."""
        from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

        self._check_fitted()
        params = self._params()
        if params.family.name not in ("full", "tied", "diag", "spherical"):
            # scikit-learn has no such family: hand over the same density, full.
            return self._known(params.to_full()).to_sklearn()
        est = SklearnGaussianMixture(
            n_components=int(self.weights_.shape[0]),
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            init_params=self.init_params,
            random_state=self.random_state,
        )
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
