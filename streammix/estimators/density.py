"""A fitted Gaussian mixture density: parameters, scoring, sampling, exact inference, files.

Layer: edges. :class:`MixtureDensity` is the role every fitted mixture plays,
whatever fitted it (batch EM, online EM, the robust outlier detector): it keeps
its parameters in scikit-learn's attributes (``weights_``, ``means_``,
``covariances_``, ``precisions_``, ``precisions_cholesky_``), offers them as one
public :class:`~streammix.core.params.MixtureParams` value (``params_``), and
scores, samples, conditions, explains and saves itself. How parameters are
estimated (EM settings, restarts, initialisation) is another role
(:mod:`streammix.estimators.em_settings`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ClassVar

import numpy as np

from .._random import as_generator, draw_entropy
from .._validation import (
    Constraint,
    Interval,
    IsNone,
    IsRandomState,
    Options,
)
from ..core import conditional, explain, sampling
from ..core.families import COVARIANCE_TYPES, CovarianceFamily, family_for, get_family
from ..core.feature_mixtures import RowScorer
from ..core.kernel import score_rows
from ..core.params import MixtureParams
from ..core.stats import weighted_rows
from ..engine import scoring as engine_score
from ..engine.data import ChunkedData
from ..errors import CholeskyFailure, InvalidParameterError
from ..io.inputs import as_chunked
from ..io.location import Location
from ..io.modelfile import write_model_dir
from ..io.modelmeta import check_model_files
from ..io.weights import as_weighted
from .estimator import Estimator

# Rules for the parameters that define a density's structure; estimators add their own.
DENSITY_RULES: dict[str, list[Constraint]] = {
    "covariance_type": [Options(COVARIANCE_TYPES)],
    "rank": [Interval("int", 1, None, "left"), IsNone()],
    "random_state": [IsRandomState()],
}

# Hyperparameters that are arrays or generators and are not written to model files.
_NOT_SAVED = ("weights_init", "means_init", "precisions_init", "random_state")
# Hyperparameters a scikit-learn GaussianMixture takes, passed on by to_sklearn.
_SKLEARN_PARAMS = ("reg_covar", "init_params", "random_state")


def check_weights(weights: Any, n_components: int) -> np.ndarray:
    """``weights`` as float64 after checking shape, range and normalisation.

    Float32 weights only hold a sum of one to about ``1e-7``, so they are checked
    at ``1e-6`` (scikit-learn's tolerance for them), other weights at ``1e-8``.
    """
    given = np.asarray(weights)
    atol = 1e-6 if given.dtype == np.float32 else 1e-8
    w = np.asarray(given, dtype=np.float64)
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
    if not np.isclose(w.sum(), 1.0, rtol=0.0, atol=atol):
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


def fitted_dtype(*arrays: Any) -> np.dtype:
    """The dtype of a model's attributes: float32 when every given array is float32
    (parameters fitted on, or given as, float32), float64 otherwise."""
    if arrays and all(np.asarray(a).dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _score_sum_chunk(
    X: np.ndarray, offset: int, prep: Any, weights: np.ndarray | None = None
) -> tuple[float, float]:
    X, w = weighted_rows(X, weights)
    values = score_rows(X, prep)
    if w is None:
        return float(np.sum(values)), float(X.shape[0])
    return float(values @ w), float(np.sum(w))


def _add_pairs(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
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


class MixtureDensity(Estimator):
    """A fitted Gaussian mixture density.

    Concrete classes (:class:`~streammix.GaussianMixture`,
    :class:`~streammix.OnlineGaussianMixture`, :class:`~streammix.OutlierDetector`)
    add how they are fitted; every one of them has ``covariance_type``, ``rank``
    (for ``"lowrank"``) and ``random_state`` parameters.

    Attributes
    ----------
    params_ : MixtureParams
        The fitted parameters as one immutable value (family, weights, means,
        covariances, precision factors), in float64.
    weights_, means_, covariances_, precisions_, precisions_cholesky_, n_features_in_
        scikit-learn's attributes. As in scikit-learn, they are float32 when the
        model was fitted on float32 data (statistics still add up in float64),
        and model files keep that dtype. Log-likelihoods and probabilities come
        back in float32 when both the model and the rows scored are float32,
        in float64 otherwise.
    converged_, n_iter_, lower_bound_, lower_bounds_
        The fit's history.
    threshold_ : float, optional
        The log-likelihood below which a row is an outlier, after :meth:`calibrate`.
    """

    _estimator_type = "density_estimator"
    _rules: ClassVar[dict[str, list[Constraint]]] = DENSITY_RULES
    #: What :meth:`marginal` and :meth:`condition` return (this class when unset).
    _derived: ClassVar[type[MixtureDensity] | None] = None

    covariance_type: str
    random_state: Any

    # ------------------------------------------------------------ structure
    def _family(self) -> CovarianceFamily:
        try:
            return get_family(self.covariance_type, getattr(self, "rank", None))
        except ValueError as err:
            raise InvalidParameterError(str(err)) from None

    def _data(self, X: Any, sample_weight: Any = None) -> ChunkedData:
        """Data to score: any accepted input (with its weights), checked against the
        fitted model."""
        data = as_weighted(X, sample_weight)
        self.check_fitted()
        self.check_n_features(data.n_features)
        return data

    # ----------------------------------------------------------- parameters
    @property
    def params_(self) -> MixtureParams:
        """The fitted parameters as one value (float64 whatever the attributes' dtype:
        everything computed from them works in float64)."""
        self.check_fitted()
        return MixtureParams(
            self._family(),
            np.asarray(self.weights_, dtype=np.float64),
            np.asarray(self.means_, dtype=np.float64),
            np.asarray(self.covariances_, dtype=np.float64),
            np.asarray(self.precisions_cholesky_, dtype=np.float64),
        )

    def scoring_params(self) -> tuple[MixtureParams, float]:
        """The mixture and the constant whose log-density plus that constant is
        :meth:`score_samples`: what jobs score rows with (``params_`` and 0 here)."""
        return self.params_, 0.0

    def row_scorer(self, data: ChunkedData) -> RowScorer:
        """What jobs score ``data``'s rows with, chunk by chunk: :meth:`score_samples`
        and the most likely component."""
        params, constant = self.scoring_params()
        return RowScorer(engine_score.prepare_for(params, data), constant)

    def _set_params(self, params: MixtureParams, n_features: int, dtype: Any = np.float64) -> None:
        """Take ``params`` as the fitted attributes, in ``dtype`` (the training data's)."""
        dt = np.dtype(dtype)
        family = params.family
        covariances = params.covariances.astype(dt, copy=False)
        prec_chol = params.precisions_cholesky
        if covariances.dtype != params.covariances.dtype:
            # The factor of the rounded covariances (computed in float64, then rounded):
            # the attributes stay consistent with each other, and a model file's factor,
            # checked against its covariances on loading, passes that check whatever
            # the covariances' condition number.
            with contextlib.suppress(CholeskyFailure):
                prec_chol = family.precision_cholesky(covariances.astype(np.float64))
        self.weights_ = params.weights.astype(dt, copy=False)
        self.means_ = params.means.astype(dt, copy=False)
        self.covariances_ = covariances
        self.precisions_cholesky_ = prec_chol.astype(dt, copy=False)
        self.precisions_ = family.precisions(prec_chol).astype(dt, copy=False)
        self.n_features_in_ = n_features

    def _output_dtype(self, data: ChunkedData) -> np.dtype:
        """The dtype of log-likelihoods and probabilities of ``data``: float32 only for
        a float32 model scoring float32 rows (numpy's promotion, as in scikit-learn)."""
        return np.result_type(self.means_.dtype, data.dtype, np.float32)

    def _set_history(
        self, converged: bool, n_iter: int, lower_bounds: list[float], lower_bound: float
    ) -> None:
        self.converged_ = bool(converged)
        self.n_iter_ = int(n_iter)
        self.lower_bounds_ = [float(b) for b in lower_bounds]
        self.lower_bound_ = float(lower_bound)

    @classmethod
    def _from_params(
        cls,
        params: MixtureParams,
        history: tuple[bool, int, list[float], float] = (True, 0, [], float("nan")),
        dtype: Any = np.float64,
        **kwargs: Any,
    ) -> Any:
        """A fitted instance holding ``params`` (attributes in ``dtype``), with
        ``history`` (converged, n_iter, lower bounds, lower bound) and the other
        constructor parameters ``kwargs``."""
        if "n_components" in cls.param_names():
            kwargs["n_components"] = params.n_components
        factory: Any = cls  # subclasses define the constructor
        est = factory(**kwargs).check_params()
        est._set_params(params, params.n_features, dtype)
        est._set_history(*history)
        return est

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
        covariance_type : {"full", "tied", "diag", "spherical", "lowrank"}
        **kwargs
            Other constructor parameters.

        The attributes are float32 when ``means`` and ``covariances`` are float32
        arrays (the parameters of a model fitted on float32 data), float64 otherwise.

        Examples
        --------
        >>> import numpy as np
        >>> from streammix import GaussianMixture
        >>> gm = GaussianMixture.from_parameters([0.5, 0.5], [[0.0], [3.0]], [[[1.0]], [[1.0]]])
        >>> gm.predict(np.array([[2.9]]))
        array([1])
        """
        dtype = fitted_dtype(means, covariances)
        means = np.asarray(means, dtype=np.float64)
        cov_arr = np.asarray(covariances, dtype=np.float64)
        if kwargs.get("rank") is None:
            # a structural parameter (the rank) read off the covariances' layout; for an
            # unknown type or an unreadable layout the parameter checks below name the cause
            with contextlib.suppress(ValueError):
                kwargs.update(family_for(covariance_type, cov_arr).structural_parameters())
        if means.ndim != 2:
            raise InvalidParameterError(
                f"means must be 2-D (n_components, n_features); got shape {means.shape}."
            )
        k, d = means.shape
        if "n_components" in cls.param_names():
            kwargs["n_components"] = k
        factory: Any = cls  # subclasses define the constructor
        family = factory(covariance_type=covariance_type, **kwargs).check_params()._family()
        w = check_weights(weights, k)
        m = check_means(means, k, d)
        cov = check_matrices(family, covariances, k, d, "covariances")
        try:
            params = MixtureParams.from_covariances(family, w, m, cov)
        except CholeskyFailure as err:
            raise InvalidParameterError(
                f"covariances of components {err.components} are not positive definite"
            ) from None
        return cls._from_params(params, dtype=dtype, covariance_type=covariance_type, **kwargs)

    # ---------------------------------------------------------------- scoring
    def score_samples(self, X: Any) -> Any:
        """Log-likelihood of every row, ``log p(x)``.

        Returns a numpy array for numpy input and a lazy dask array for dask or
        Zarr input, chunked like the input's rows; float32 when the model and
        the rows are float32, float64 otherwise.
        """
        data = self._data(X)
        return engine_score.score(
            data, self.params_, "log_likelihood", dtype=self._output_dtype(data)
        )

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Mean log-likelihood of the rows (computed, also for lazy input); with
        ``sample_weight``, the weighted mean.

        The rows' log-likelihoods are added in float64; the mean is rounded to
        the dtype of :meth:`score_samples` before it becomes a Python float, so
        that it is the mean of those values to their precision.
        """
        return self._total(self._data(X, sample_weight))[0]

    def _total(
        self, data: ChunkedData, params: MixtureParams | None = None, offset: float = 0.0
    ) -> tuple[float, float]:
        """Mean log-likelihood under ``params`` (default the fitted ones) plus
        ``offset``, rounded as :meth:`score` says, and the number of rows (sum of
        weights) of ``data``."""
        prep = engine_score.prepare_for(self.params_ if params is None else params, data)
        total, n = data.map_reduce(_score_sum_chunk, prep, combine=_add_pairs, label="score")
        return float(self._output_dtype(data).type(total / n + offset)), n

    def bic(self, X: Any, sample_weight: Any = None) -> float:
        """Bayesian information criterion on ``X`` (lower is better):
        ``-2 log L + p log n``. With ``sample_weight``, ``log L`` is the weighted
        log-likelihood and ``n`` the sum of the weights, so rows repeated ``w``
        times and weights ``w`` give the same value."""
        mean, n = self._total(self._data(X, sample_weight))
        return float(-2.0 * mean * n + self.params_.n_parameters() * np.log(n))

    def aic(self, X: Any, sample_weight: Any = None) -> float:
        """Akaike information criterion on ``X`` (lower is better): ``-2 log L + 2 p``,
        ``log L`` weighted with ``sample_weight``."""
        mean, n = self._total(self._data(X, sample_weight))
        return float(-2.0 * mean * n + 2.0 * self.params_.n_parameters())

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw rows from the mixture, in random order (not grouped by component).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
        """
        self.check_fitted()
        if not isinstance(n_samples, int | np.integer) or n_samples < 1:
            raise InvalidParameterError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires at "
                "least one sample."
            )
        return sampling.sample(self.params_, int(n_samples), as_generator(self.random_state))

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
        return self._derived_from(conditional.marginal(self.params_, features))

    def condition(self, features: Any, values: Any) -> Any:
        """The mixture of the other features given ``x[features] = values``.

        Weights are reweighted by each component's density of the observed values;
        means and covariances are the Gaussian conditionals (Schur complements).
        The remaining features keep their order.
        """
        params = self.params_
        if not params.family.exact_conditionals:
            params = params.to_full()
        return self._derived_from(conditional.condition(params, features, values))

    def _derived_from(self, params: MixtureParams) -> Any:
        """A fitted mixture of the class that derived densities take (``_derived``)."""
        target = self._derived or type(self)
        kwargs = {k: v for k, v in self.get_params().items() if k in ("reg_covar",)}
        return target.from_parameters(
            params.weights,
            params.means,
            params.covariances,
            params.family.name,
            **params.family.structural_parameters(),
            **{k: v for k, v in kwargs.items() if k in target.param_names()},
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
        self.check_fitted()
        data = as_chunked(X, allow_nan=True)
        self.check_n_features(data.n_features)
        entropy = draw_entropy(as_generator(random_state)) if n_draws else 0
        tail = (int(n_draws), data.n_features) if n_draws else (data.n_features,)
        out = data.map_rows(
            _impute_chunk, self.params_, int(n_draws), entropy, dtype=np.float64, tail=tail
        )
        if not n_draws:
            return out
        return np.moveaxis(out, 1, 0)  # lazy for lazy input

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
        params = self.params_
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
        self.check_fitted()
        data = as_chunked(X, allow_nan=True)
        self.check_n_features(data.n_features)
        return data.map_rows(_marginal_chunk, self.params_, dtype=np.float64)

    # ------------------------------------------------------------------ files
    def calibrate(self, X: Any, contamination: float, sample_weight: Any = None) -> float:
        """Set ``threshold_``: the ``contamination`` quantile of ``X``'s log-likelihoods
        (of the rows repeated as their weights say, with ``sample_weight``).

        Rows scoring below it are outliers; the threshold is saved with the model.
        """
        if not 0.0 < contamination <= 0.5:
            raise InvalidParameterError(f"contamination must be in (0, 0.5]; got {contamination}.")
        data = as_weighted(X, sample_weight)
        scores = self.score_samples(data)
        return self._calibrated(scores, contamination, data.weight_column(lazy=True))

    def _calibrated(self, scores: Any, contamination: float, weights: Any) -> float:
        """Set ``threshold_`` to the ``contamination`` quantile of the rows' ``scores``
        (weighted by ``weights``, ``None`` for none)."""
        from ..engine.quantile import quantile

        self.threshold_ = float(quantile(scores, contamination, weights))
        self.threshold_info_ = {"contamination": float(contamination), "source": "fit data"}
        return self.threshold_

    def to_files(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The model as its files' contents: JSON metadata and named arrays (what
        :meth:`save` writes and :meth:`from_files` reads)."""
        self.check_fitted()
        return self._files_meta(), self._files_arrays()

    def _files_meta(self) -> dict[str, Any]:
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

    def _files_arrays(self) -> dict[str, np.ndarray]:
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
        meta, arrays = self.to_files()
        return write_model_dir(path, meta, arrays)

    @classmethod
    def from_files(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        """Rebuild a fitted estimator from its files' contents (see :meth:`to_files`);
        raises ``ValueError`` (or ``KeyError``) when they do not describe one."""
        check_model_files(meta, arrays)
        hyper = dict(meta.get("hyperparameters") or {})
        known = set(cls.param_names())
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

        self.check_fitted()
        params = self.params_
        if params.family.sklearn_name is None:
            # scikit-learn has no such family: hand over the same density, full.
            return self._derived_from(params.to_full()).to_sklearn()
        settings = {k: v for k, v in self.get_params().items() if k in _SKLEARN_PARAMS}
        est = SklearnGaussianMixture(
            n_components=int(self.weights_.shape[0]),
            covariance_type=params.family.sklearn_name,
            **settings,
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
