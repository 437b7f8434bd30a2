"""``BayesianGaussianMixture``: scikit-learn's variational mixture, over data of any size.

Layer: edges. Validates arguments, resolves the priors (one pass over the data
for their defaults), starts every restart from streammix's initialisation,
and runs variational EM: each iteration is one pass of the ordinary E-step
kernel with the posterior's effective parameters
(:meth:`~streammix.core.variational.Posterior.estep_params`), shared by all
restarts, then the variational M-step and the lower bound on the client
(:mod:`streammix.core.variational`).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar

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
)
from ..core.families import FAMILY_NAMES, CovarianceFamily, get_family
from ..core.frame import Frame
from ..core.params import MixtureParams
from ..core.stats import merge_moments, row_moments
from ..core.variational import (
    PRIOR_TYPES,
    Posterior,
    Priors,
    lower_bound,
    moments,
    moments_from_params,
    mstep,
    sum_resp_log_resp,
)
from ..engine import scoring
from ..engine.batch_em import estep_pass
from ..engine.compute import blas_guarded
from ..engine.data import CACHE_MODES, ChunkedData
from ..engine.init import INIT_METHODS, InitSpec, initial_params, params_frame
from ..errors import (
    CholeskyFailure,
    ConvergenceWarning,
    DegenerateComponentError,
    InvalidInputError,
    InvalidParameterError,
)
from ..io.modelmeta import check_model_files
from .em_settings import EMEstimator
from .gaussian_mixture import GaussianMixture, show_logs

logger = logging.getLogger("streammix")

# Initialisations whose responsibilities are one-hot on one seed row per component.
_SEED_ROW_METHODS = ("k-means++", "random_from_data")
# The initial EM M-step adds at least this share of the data's mean variance to every
# covariance (so that a k-means cluster of one row is still a Gaussian); it is taken
# out again before the variational M-step, which has the prior covariance instead.
_INIT_REGULARISATION = 1e-6
# Posterior arrays in model files, besides the point estimates.
_POSTERIOR_ARRAYS = ("weight_concentration", "mean_precision", "degrees_of_freedom")


@dataclass(frozen=True, slots=True, eq=False)
class _Run:
    """One restart: its posterior, the lower bound of every iteration, and the bound
    its first iteration is compared with (a continued fit's previous one)."""

    posterior: Posterior
    lower_bounds: tuple[float, ...] = ()
    previous: float = -math.inf
    converged: bool = False

    @property
    def lower_bound(self) -> float:
        return self.lower_bounds[-1] if self.lower_bounds else self.previous


class BayesianGaussianMixture(EMEstimator):
    """A variational Bayesian Gaussian mixture fitted over chunked data.

    Parameters, defaults, fitted attributes and results are scikit-learn's
    ``BayesianGaussianMixture``'s: a Dirichlet process (stick-breaking) or a
    Dirichlet distribution prior on the weights and a Gaussian-Wishart prior on
    the components, fitted by variational inference, so that superfluous
    components get weights near zero. ``X`` may be a numpy array, a dask array,
    a ``zarr.Array`` or a Zarr location; each iteration reads every chunk once
    for all restarts, and never loads the data whole.

    Parameters
    ----------
    n_components : int, default=1
        The largest number of components; the data decide how many get weight.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        ``"lowrank"`` has no conjugate (Wishart) posterior and is refused.
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (a sum over rows,
        as in scikit-learn).
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
        Restarts; the one with the largest final lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the starting responsibilities are chosen (streammix's
        initialisation, see :mod:`streammix.engine.init`); the first
        variational M-step is taken from them, as in scikit-learn.
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, \
default="dirichlet_process"
    weight_concentration_prior : float or None, default=None
        ``1 / n_components`` when None.
    mean_precision_prior : float or None, default=None
        1 when None.
    mean_prior : array-like of shape (n_features,) or None, default=None
        The data's mean when None.
    degrees_of_freedom_prior : float or None, default=None
        ``n_features`` when None; must exceed ``n_features - 1``.
    covariance_prior : float or array-like or None, default=None
        The data's covariance (``ddof=1``) when None, in the layout of one
        component: ``(D, D)`` for full and tied, ``(D,)`` for diag, a float for
        spherical.
    random_state : int, Generator, RandomState or None
    warm_start : bool, default=False
        Continue from the fitted posterior (one run, no initialisation).
    verbose : int, default=0
    verbose_interval : int, default=10
    persist : bool, default=False
        Hold lazy input in (cluster) memory for the fit.
    cache : {"memory"} or None, default=None
        Like ``persist``, only when the data fit in half of the workers' memory.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_
        Point estimates of the posterior (scikit-learn's layout and meaning).
    weight_concentration_prior_, weight_concentration_ : float, tuple or ndarray
        ``weight_concentration_`` is a pair of arrays (the sticks' Beta
        parameters) for a Dirichlet process, an array for a distribution.
    mean_precision_prior_, mean_precision_, mean_prior_
    degrees_of_freedom_prior_, degrees_of_freedom_, covariance_prior_
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_

    Notes
    -----
    As in scikit-learn, :meth:`predict`, :meth:`predict_proba`,
    :meth:`score_samples` and :meth:`score` use the variational quantities:
    ``score_samples`` returns, for each row, ``log sum_k exp(E[ln pi_k] +
    E[ln N(x | mu_k, Lambda_k)])`` with the expectations under the posterior,
    which is neither the log-density of the mixture of Gaussians at the point
    estimates nor the log of the posterior predictive (a mixture of Student-t
    distributions). :meth:`sample`, :meth:`marginal`, :meth:`condition` and
    :attr:`params_` use the mixture of Gaussians at the point estimates
    ``weights_``, ``means_`` and ``covariances_`` (marginals and conditionals
    are :class:`GaussianMixture` models).

    Examples
    --------
    >>> import numpy as np
    >>> from streammix import BayesianGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (500, 2)), rng.normal(4, 1, (500, 2))])
    >>> bgm = BayesianGaussianMixture(n_components=5, random_state=0, max_iter=500).fit(X)
    >>> int(np.sum(bgm.weights_ > 0.05))
    2
    """

    _rules: ClassVar[dict[str, list[Constraint]]] = {
        "n_components": [Interval("int", 1, None, "left")],
        "covariance_type": [Options(FAMILY_NAMES)],
        "tol": [Interval("real", 0.0, None, "left")],
        "reg_covar": [Interval("real", 0.0, None, "left")],
        "max_iter": [Interval("int", 0, None, "left")],
        "n_init": [Interval("int", 1, None, "left")],
        "init_params": [Options(INIT_METHODS)],
        "weight_concentration_prior_type": [Options(PRIOR_TYPES)],
        "weight_concentration_prior": [Interval("real", 0.0, None, "neither"), IsNone()],
        "mean_precision_prior": [Interval("real", 0.0, None, "neither"), IsNone()],
        "mean_prior": [IsArrayLike(), IsNone()],
        "degrees_of_freedom_prior": [Interval("real", 0.0, None, "neither"), IsNone()],
        "covariance_prior": [IsArrayLike(), Interval("real", 0.0, None, "neither"), IsNone()],
        "random_state": [IsRandomState()],
        "warm_start": [IsBool()],
        "verbose": [Interval("int", 0, None, "left")],
        "verbose_interval": [Interval("int", 1, None, "left")],
        "persist": [IsBool()],
        "cache": [Options(CACHE_MODES), IsNone()],
    }
    #: Marginals and conditionals are mixtures of Gaussians at the point estimates.
    _derived = GaussianMixture

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
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float | None = None,
        mean_prior: Any = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        persist: bool = False,
        cache: str | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.persist = persist
        self.cache = cache

    def check_params(self) -> BayesianGaussianMixture:
        if self.covariance_type == "lowrank":
            raise InvalidParameterError(
                "The 'covariance_type' parameter of BayesianGaussianMixture cannot be "
                "'lowrank': a low-rank-plus-diagonal covariance has no conjugate (Wishart) "
                "posterior. Use 'full', 'tied', 'diag' or 'spherical', or "
                "GaussianMixture(covariance_type='lowrank') for a point estimate."
            )
        super().check_params()
        return self

    # -------------------------------------------------------------------- fit
    @blas_guarded
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> BayesianGaussianMixture:
        """Estimate the posterior with variational EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, zarr.Array or location
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative row weights, as for :meth:`GaussianMixture.fit`: every
            statistic, the data moments the default priors are taken from, and the
            k-means initialisation count a row ``w`` times.

        Returns
        -------
        self
        """
        self.check_params()
        data = self._fit_data(X, sample_weight)
        if data.n_rows < 2:
            raise InvalidInputError(
                f"Found array with {data.n_rows} sample(s) (shape=({data.n_rows}, "
                f"{data.n_features})) while a minimum of 2 is required by "
                "BayesianGaussianMixture."
            )
        if data.n_rows < self.n_components:
            raise InvalidInputError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {data.n_rows}"
            )
        if self.persist:
            data = data.persist()
        data = data.cache(self.cache)
        family = self._family()
        n, mean, scatter = data.map_reduce(row_moments, combine=merge_moments, label="moments")
        priors = self._resolve_priors(family, mean, scatter / (n - 1.0))
        if self._continuing():
            posterior = replace(self._posterior(), prior_type=priors.prior_type)
            frame = params_frame(posterior.point_params(), data.dtype)
            runs = [_Run(posterior, previous=float(self.lower_bound_))]
        else:
            runs, frame = self._starts(data, family, priors, float(np.mean(np.diag(scatter)) / n))
        runs = self._iterate(data, runs, frame, priors, family)
        best = 0
        for i in range(1, len(runs)):
            if runs[i].lower_bound > runs[best].lower_bound or runs[best].lower_bound == -math.inf:
                best = i
        self._adopt(runs[best], priors, data.n_features, data.dtype)
        return self

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit, then return the most likely component of every row."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def _resolve_priors(
        self, family: CovarianceFamily, mean: np.ndarray, covariance: np.ndarray
    ) -> Priors:
        """The priors, defaults taken from the data's ``mean`` and ``covariance``."""
        d = mean.shape[0]
        if self.degrees_of_freedom_prior is None:
            dof = float(d)
        elif self.degrees_of_freedom_prior > d - 1.0:
            dof = float(self.degrees_of_freedom_prior)
        else:
            raise InvalidParameterError(
                "The parameter 'degrees_of_freedom_prior' should be greater than "
                f"{d - 1}, but got {float(self.degrees_of_freedom_prior):.3f}."
            )
        if self.mean_prior is None:
            mean_prior = mean
        else:
            mean_prior = np.asarray(self.mean_prior, dtype=np.float64)
            if mean_prior.shape != (d,):
                raise InvalidParameterError(
                    f"The parameter 'means' should have the shape of {(d,)}, but got "
                    f"{mean_prior.shape}."
                )
            if not np.all(np.isfinite(mean_prior)):
                raise InvalidParameterError("The parameter 'mean_prior' holds NaN or infinity.")
        layout = family.covariance_shape(1, d)
        single = layout if family.shared_covariance else layout[1:]
        if self.covariance_prior is None:
            pooled = family.s2_from_dense(covariance[None])
            cov_prior = np.reshape(
                family.covariances_from_stats(np.ones(1), np.zeros((1, d)), pooled, 0.0), single
            )
        else:
            cov_prior = np.asarray(self.covariance_prior, dtype=np.float64)
            if cov_prior.shape != single:
                raise InvalidParameterError(
                    f"The parameter '{family.name} covariance_prior' should have the shape of "
                    f"{single}, but got {cov_prior.shape}."
                )
            try:
                if not np.all(np.isfinite(cov_prior)):
                    raise ValueError("'covariance_prior' holds NaN or infinity")
                family.check_positive_definite(np.reshape(cov_prior, layout), "covariance_prior")
            except ValueError as err:
                raise InvalidParameterError(str(err)) from None
        wc = self.weight_concentration_prior
        mp = self.mean_precision_prior
        return Priors(
            self.weight_concentration_prior_type,
            1.0 / self.n_components if wc is None else float(wc),
            1.0 if mp is None else float(mp),
            mean_prior,
            dof,
            cov_prior,
        )

    def _starts(
        self, data: ChunkedData, family: CovarianceFamily, priors: Priors, variance: float
    ) -> tuple[list[_Run], Frame]:
        """Every restart's first posterior: the variational M-step of its starting
        responsibilities (as scikit-learn's initialisation)."""
        rng = as_generator(self.random_state)
        seeds = np.random.SeedSequence(draw_entropy(rng)).spawn(self.n_init)
        rngs = [np.random.default_rng(s) for s in seeds]
        reg = float(self.reg_covar)
        reg_init = reg + _INIT_REGULARISATION * max(variance, np.finfo(np.float64).tiny)
        starts, frame = initial_params(
            data,
            family,
            self.n_components,
            InitSpec(self.init_params),
            reg_init,
            "error",
            rngs,
        )
        assigned = self.n_components if self.init_params in _SEED_ROW_METHODS else data.n_rows
        runs = [
            _Run(self._mstep(*moments_from_params(p, assigned, reg_init, reg), priors, family))
            for p in starts
        ]
        return runs, frame

    @staticmethod
    def _mstep(
        nk: np.ndarray, xk: np.ndarray, sk: np.ndarray, priors: Priors, family: CovarianceFamily
    ) -> Posterior:
        try:
            return mstep(nk, xk, sk, priors, family)
        except CholeskyFailure as failure:
            which = family.describe_degenerate(failure.components)
            raise DegenerateComponentError(
                f"Fitting the mixture model failed because the posterior covariance of "
                f"{which} is not positive definite. Try a larger reg_covar or "
                "covariance_prior, or scaled input data."
            ) from None

    def _iterate(
        self,
        data: ChunkedData,
        runs: list[_Run],
        frame: Frame,
        priors: Priors,
        family: CovarianceFamily,
    ) -> list[_Run]:
        """Variational EM until every run converged or ``max_iter`` iterations ran;
        one pass over the data per iteration for all runs still going."""
        if self.verbose:
            show_logs()
        reg = float(self.reg_covar)
        for iteration in range(1, int(self.max_iter) + 1):
            active = [i for i, r in enumerate(runs) if not r.converged]
            if not active:
                break
            t0 = time.perf_counter()
            estep = [runs[i].posterior.estep_params() for i in active]
            stats = estep_pass(data, [p for p, _ in estep], frame)
            for i, st, (eparams, _) in zip(active, stats, estep, strict=True):
                posterior = self._mstep(*moments(st, family, reg), priors, family)
                bound = lower_bound(posterior, sum_resp_log_resp(st, eparams))
                change = bound - runs[i].lower_bound
                runs[i] = replace(
                    runs[i],
                    posterior=posterior,
                    lower_bounds=(*runs[i].lower_bounds, bound),
                    converged=bool(abs(change) < self.tol),
                )
            if self.verbose and iteration % self.verbose_interval == 0:
                best = max(runs[i].lower_bound for i in active)
                if self.verbose > 1:
                    logger.info(
                        "Iteration %d\t time lapse %.5fs\t lower bound %.5f",
                        iteration,
                        time.perf_counter() - t0,
                        best,
                    )
                else:
                    logger.info("Iteration %d", iteration)
        return runs

    def _adopt(self, run: _Run, priors: Priors, n_features: int, dtype: Any) -> None:
        if not run.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data. "
                f"(Variational EM stopped after max_iter={self.max_iter} iterations; the "
                f"best run's lower bound still changed by tol={self.tol} or more.)",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_priors(priors)
        self._set_posterior(run.posterior, n_features, dtype)
        bounds = list(run.lower_bounds)
        self._set_history(run.converged, len(bounds), bounds, bounds[-1] if bounds else -np.inf)

    # -------------------------------------------------------------- state
    def _set_priors(self, priors: Priors) -> None:
        self.weight_concentration_prior_ = priors.weight_concentration
        self.mean_precision_prior_ = priors.mean_precision
        self.mean_prior_ = np.asarray(priors.mean, dtype=np.float64).copy()
        self.degrees_of_freedom_prior_ = priors.degrees_of_freedom
        cov = np.asarray(priors.covariance, dtype=np.float64)
        self.covariance_prior_ = float(cov) if cov.ndim == 0 else cov.copy()

    def _set_posterior(self, posterior: Posterior, n_features: int, dtype: Any) -> None:
        self._set_params(posterior.point_params(), n_features, dtype)
        wc = posterior.weight_concentration
        self.weight_concentration_ = (wc[0].copy(), wc[1].copy()) if wc.ndim == 2 else wc.copy()
        self.mean_precision_ = posterior.mean_precision.copy()
        nu = np.asarray(posterior.degrees_of_freedom, dtype=np.float64)
        self.degrees_of_freedom_ = float(nu) if nu.ndim == 0 else nu.copy()

    def _posterior(self) -> Posterior:
        """The fitted posterior as one value (float64)."""
        self.check_fitted()
        return Posterior(
            self._family(),
            self.weight_concentration_prior_type,
            np.asarray(self.weight_concentration_, dtype=np.float64),
            np.asarray(self.mean_precision_, dtype=np.float64),
            np.asarray(self.means_, dtype=np.float64),
            np.asarray(self.degrees_of_freedom_, dtype=np.float64),
            np.asarray(self.covariances_, dtype=np.float64),
            np.asarray(self.precisions_cholesky_, dtype=np.float64),
        )

    @classmethod
    def from_parameters(cls, *args: Any, **kwargs: Any) -> Any:
        """Not available: a variational mixture is its posterior, not a set of weights,
        means and covariances; fit one, or load a saved one."""
        raise InvalidParameterError(
            "BayesianGaussianMixture cannot be made from weights, means and covariances "
            "alone (it is defined by its posterior): fit it, load a saved one, or use "
            "GaussianMixture.from_parameters for a mixture with these parameters."
        )

    # ------------------------------------------------------------- scoring
    def _variational(self) -> tuple[MixtureParams, float]:
        return self._posterior().estep_params()

    def scoring_params(self) -> tuple[MixtureParams, float]:
        """The effective mixture and constant of :meth:`score_samples` (the jobs'
        scores equal it)."""
        return self._variational()

    def predict(self, X: Any) -> Any:
        """The component with the largest variational responsibility for every row."""
        data = self._data(X)
        params, _ = self._variational()
        return scoring.score(data, params, "label")

    def predict_proba(self, X: Any) -> Any:
        """Variational responsibilities, shape ``(n_samples, n_components)``."""
        data = self._data(X)
        params, _ = self._variational()
        return scoring.score(data, params, "proba", dtype=self._output_dtype(data))

    def score_samples(self, X: Any) -> Any:
        """Per row, ``log sum_k exp(E[ln pi_k] + E[ln N(x | mu_k, Lambda_k)])``, the
        expectations under the posterior (what scikit-learn's returns; see the
        class notes). A numpy array for numpy input, a lazy dask array otherwise."""
        data = self._data(X)
        params, offset = self._variational()
        out_dtype = self._output_dtype(data)
        scores = scoring.score(data, params, "log_likelihood", dtype=out_dtype)
        return scores + out_dtype.type(offset)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Mean of :meth:`score_samples` over the rows (computed, also for lazy input);
        weighted with ``sample_weight``."""
        params, offset = self._variational()
        return self._total(self._data(X, sample_weight), params, offset)[0]

    # ------------------------------------------------------------------ files
    def _files_meta(self) -> dict[str, Any]:
        meta = super()._files_meta()
        hyper = meta["hyperparameters"]
        hyper.pop("mean_prior", None)
        hyper.pop("covariance_prior", None)
        meta["variational"] = {
            "weight_concentration_prior": float(self.weight_concentration_prior_),
            "mean_precision_prior": float(self.mean_precision_prior_),
            "degrees_of_freedom_prior": float(self.degrees_of_freedom_prior_),
            "mean_prior_given": self.mean_prior is not None,
            "covariance_prior_given": self.covariance_prior is not None,
        }
        return meta

    def _files_arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._files_arrays()
        arrays.update(
            weight_concentration=np.asarray(self.weight_concentration_, dtype=np.float64),
            mean_precision=np.asarray(self.mean_precision_, dtype=np.float64),
            degrees_of_freedom=np.atleast_1d(np.asarray(self.degrees_of_freedom_, np.float64)),
            mean_prior=np.asarray(self.mean_prior_, dtype=np.float64),
            covariance_prior=np.reshape(
                np.asarray(self.covariance_prior_, dtype=np.float64),
                self._family().covariance_shape(1, self.n_features_in_),
            ),
        )
        return arrays

    @classmethod
    def from_files(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        """Rebuild a fitted model from its files' contents (see :meth:`to_files`)."""
        check_model_files(meta, arrays)
        hyper = dict(meta.get("hyperparameters") or {})
        known = set(cls.param_names())
        kwargs = {k: v for k, v in hyper.items() if k in known}
        kwargs["covariance_type"] = meta["covariance_type"]
        kwargs["n_components"] = meta["n_components"]
        info = meta["variational"]
        if info["mean_prior_given"]:
            kwargs["mean_prior"] = arrays["mean_prior"].copy()
        if info["covariance_prior_given"]:
            cov = cls._single_prior(meta["covariance_type"], arrays["covariance_prior"])
            kwargs["covariance_prior"] = float(cov) if cov.ndim == 0 else cov
        est = cls(**kwargs).check_params()
        est._restore(meta, arrays)
        return est

    @staticmethod
    def _single_prior(covariance_type: str, saved: np.ndarray) -> np.ndarray:
        """A saved prior covariance (one component's covariances) in the layout of
        ``covariance_prior``."""
        family = get_family(covariance_type)
        layout = family.covariance_shape(1, saved.shape[-1] if saved.ndim > 1 else 1)
        single = layout if family.shared_covariance else layout[1:]
        return np.reshape(np.asarray(saved, dtype=np.float64), single).copy()

    @staticmethod
    def _single_dof(family: CovarianceFamily, saved: np.ndarray) -> np.ndarray:
        """Saved degrees of freedom; one shared value for a shared covariance."""
        nu = np.asarray(saved, dtype=np.float64)
        return np.asarray(nu[0]) if family.shared_covariance else nu

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Take the fitted state from checked model files."""
        family = get_family(meta["covariance_type"])
        try:
            prec_chol = family.precision_cholesky(np.asarray(arrays["covariances"], np.float64))
        except CholeskyFailure:
            raise InvalidParameterError("covariances are not positive definite") from None
        saved = arrays["precisions_cholesky"]
        if not np.allclose(saved, prec_chol, rtol=1e-6, atol=0.0):
            raise InvalidParameterError("precisions_cholesky does not match the covariances")
        info = meta["variational"]
        prior_type = self.weight_concentration_prior_type
        self._set_priors(
            Priors(
                prior_type,
                float(info["weight_concentration_prior"]),
                float(info["mean_precision_prior"]),
                arrays["mean_prior"],
                float(info["degrees_of_freedom_prior"]),
                self._single_prior(meta["covariance_type"], arrays["covariance_prior"]),
            )
        )
        posterior = Posterior(
            family,
            prior_type,
            np.asarray(arrays["weight_concentration"], dtype=np.float64),
            np.asarray(arrays["mean_precision"], dtype=np.float64),
            np.asarray(arrays["means"], dtype=np.float64),
            self._single_dof(family, arrays["degrees_of_freedom"]),
            np.asarray(arrays["covariances"], dtype=np.float64),
            prec_chol,
        )
        self._set_posterior(posterior, int(meta["n_features"]), arrays["means"].dtype)
        # the saved arrays bit for bit (scores after loading equal scores before)
        self.weights_ = arrays["weights"]
        self.covariances_ = arrays["covariances"]
        self.precisions_cholesky_ = saved
        self.precisions_ = family.precisions(saved)
        fit = meta.get("fit") or {}
        bounds = [float("nan") if b is None else float(b) for b in fit.get("lower_bounds") or []]
        lb = fit.get("lower_bound")
        self._set_history(
            fit.get("converged", True),
            fit.get("n_iter", 0),
            bounds,
            -math.inf if lb is None else float(lb),
        )
        calibration = meta.get("calibration")
        if isinstance(calibration, dict) and calibration.get("threshold") is not None:
            self.threshold_ = float(calibration["threshold"])
            self.threshold_info_ = {k: v for k, v in calibration.items() if k != "threshold"}

    def to_sklearn(self) -> Any:
        """An equivalent fitted ``sklearn.mixture.BayesianGaussianMixture`` (needs
        scikit-learn); with ``warm_start=True`` it continues from this posterior."""
        from sklearn.mixture import BayesianGaussianMixture as SklearnBGM

        self.check_fitted()
        names = set(SklearnBGM().get_params())
        est = SklearnBGM(**{k: v for k, v in self.get_params().items() if k in names})
        for name in (
            "weights_",
            "means_",
            "covariances_",
            "precisions_",
            "precisions_cholesky_",
            "weight_concentration_prior_",
            "weight_concentration_",
            "mean_precision_prior_",
            "mean_precision_",
            "mean_prior_",
            "degrees_of_freedom_prior_",
            "degrees_of_freedom_",
            "covariance_prior_",
            "converged_",
            "n_iter_",
            "lower_bound_",
            "lower_bounds_",
            "n_features_in_",
        ):
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = tuple(v.copy() for v in value)
            elif isinstance(value, np.ndarray | list):
                value = value.copy()
            setattr(est, name, value)
        return est
