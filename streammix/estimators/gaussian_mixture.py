"""``GaussianMixture``: scikit-learn's estimator, over data of any size.

Layer: edges. Validates arguments, turns input into chunks, and hands the
work to the batch EM engine; scoring, sampling and model files come from the
density role (:class:`~streammix.estimators.density.MixtureDensity`), EM
settings and component assignments from
:class:`~streammix.estimators.em_settings.EMEstimator`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._random import as_generator, draw_entropy
from .._validation import Constraint, Interval, IsBool, IsNone, Options
from ..core.missing import MISSING_POLICIES
from ..engine.batch_em import (
    EMCheckpoint,
    EMSettings,
    IterationReport,
    RunState,
    best_run,
    run_em,
)
from ..engine.compute import blas_guarded
from ..engine.data import CACHE_MODES, ChunkedData
from ..engine.init import initial_params, params_frame
from ..errors import ConvergenceWarning, InvalidInputError
from .density import MixtureDensity
from .em_settings import EM_RULES, EMEstimator

logger = logging.getLogger("streammix")


def show_logs() -> None:
    """Make ``verbose`` output visible when the application configured no logging."""
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


class GaussianMixture(EMEstimator):
    """A Gaussian mixture fitted by EM over chunked data.

    Parameters have scikit-learn's names, defaults and meanings; ``X`` may be a
    numpy array, a dask array, a ``zarr.Array`` or a path to a Zarr array (a
    group path uses its array ``X``). A Zarr input is read chunk by chunk in
    every EM iteration and never loaded whole.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical", "lowrank"}, default="full"
        ``"lowrank"`` is ``L L^T + diag(psi)`` per component with ``L`` of rank
        ``rank`` (a mixture of factor analysers): nothing ``D x D`` is formed,
        scoring costs ``O(N K D rank)``. ``covariances_`` then packs ``[L | psi]``
        as ``(K, D, rank + 1)``; see :mod:`streammix.core.families.lowrank`.
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
        Starting values. They replace what ``init_params`` produced, as in
        scikit-learn: given ``means_init`` alone, the starting weights and
        covariances are still those of the ``init_params`` responsibilities.
    random_state : int, Generator, RandomState or None
    warm_start : bool, default=False
        Continue from the fitted parameters (one run, no initialisation). The
        first iteration's lower bound is compared with the previous fit's last
        one, so repeated fits with a small ``max_iter`` report convergence.
    verbose : int, default=0
        ``1`` logs restarts and every ``verbose_interval`` iterations on the
        ``streammix`` logger, ``2`` adds the lower bound and timings.
    verbose_interval : int, default=10
    rank : int or None, default=None
        The rank of the low-rank part, for ``covariance_type="lowrank"``.
    on_degenerate : {"error", "reseed"}, default="error"
        What happens when a component collapses or empties: raise, or replace
        it by half of the heaviest component (see :mod:`streammix.core.mstep`).
    persist : bool, default=False
        Hold lazy input in (cluster) memory for the fit instead of re-reading it
        every iteration; only for data that fit there.
    cache : {"memory"} or None, default=None
        ``"memory"``: like ``persist``, but only when the decoded data fit in half
        of the workers' memory (Dask spills under pressure and reads a lost
        worker's share again); otherwise the data are re-read every iteration.
    missing : {"error", "em"}, default="error"
        NaN in the data: an error naming the first such row, or missing values
        handled exactly by EM (Ghahramani & Jordan 1994: responsibilities from
        each row's observed entries, expected statistics with the conditional
        covariance of the missing ones; see :mod:`streammix.core.missing`). The
        lower bound is then the mean log-likelihood of the observed entries.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes as scikit-learn: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)``
        diag, ``(K,)`` spherical. Every fitted array is float32 when ``X`` is
        float32, float64 otherwise.
    converged_ : bool
    n_iter_ : int
        Iterations of the last fit.
    lower_bound_ : float
    lower_bounds_ : list of float
        The lower bound of every iteration of the kept run in the last fit.
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

    _rules: ClassVar[dict[str, list[Constraint]]] = {
        **EM_RULES,
        "tol": [Interval("real", 0.0, None, "left")],
        "max_iter": [Interval("int", 0, None, "left")],
        "n_init": [Interval("int", 1, None, "left")],
        "verbose": [Interval("int", 0, None, "left")],
        "verbose_interval": [Interval("int", 1, None, "left")],
        "persist": [IsBool()],
        "cache": [Options(CACHE_MODES), IsNone()],
        "missing": [Options(MISSING_POLICIES)],
    }

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
        rank: int | None = None,
        verbose: int = 0,
        verbose_interval: int = 10,
        on_degenerate: str = "error",
        persist: bool = False,
        missing: str = "error",
        cache: str | None = None,
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
        self.rank = rank
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.on_degenerate = on_degenerate
        self.persist = persist
        self.missing = missing
        self.cache = cache

    # -------------------------------------------------------------------- fit
    @blas_guarded
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        sample_weight: Any = None,
        on_iteration: Callable[[IterationReport], None] | None = None,
        resume: EMCheckpoint | None = None,
    ) -> GaussianMixture:
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, zarr.Array or location
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative row weights: a numpy or dask array, a ``zarr.Array`` or the
            location of one, or (for Parquet ``X``) the name of a column. A row of
            integer weight ``w`` counts as ``w`` copies of it (the fit equals the
            fit on repeated rows), a row of weight 0 as no row; k-means
            initialisation is weighted too, and the lower bound is the weighted mean
            log-likelihood. See :mod:`streammix.io.weights`.
        on_iteration : callable, optional
            Called after every iteration with an
            :class:`~streammix.engine.batch_em.IterationReport`; its
            ``checkpoint()`` is the value to resume from.
        resume : EMCheckpoint, optional
            Continue a fit from a checkpoint of the same settings and data: the
            result equals an uninterrupted fit's.

        Returns
        -------
        self
        """
        self.check_params()
        data = self._fit_data(X, sample_weight)
        if data.n_rows < self.n_components:
            raise InvalidInputError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {data.n_rows}"
            )
        if self.persist:
            data = data.persist()
        data = data.cache(self.cache)
        start_iteration = 0
        prior = self._prior_bounds()
        if resume is not None:
            frame, states, start_iteration = resume.frame, list(resume.states), resume.iteration
            # a checkpoint of a continued fit starts with the previous fit's bound
            if len(states) != 1 or states[0].lower_bounds[: len(prior)] != prior:
                prior = ()
        else:
            states, frame = self._starts(data, prior)
        settings = EMSettings(
            self._family(),
            float(self.reg_covar),
            float(self.tol),
            int(self.max_iter),
            self.on_degenerate,
            missing=self.missing == "em",
        )
        hook = self._verbose_hook(on_iteration)
        states = run_em(
            data, states, frame, settings, on_iteration=hook, start_iteration=start_iteration
        )
        self._adopt(states[best_run(states)], data.n_features, data.dtype, len(prior))
        return self

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit, then return the most likely component of every row."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    @classmethod
    def from_model(cls, model: MixtureDensity, **kwargs: Any) -> GaussianMixture:
        """A batch mixture that continues from another fitted mixture's parameters.

        The result has ``warm_start=True``: its :meth:`fit` runs batch EM from
        ``model``'s parameters, e.g. to polish an :class:`OnlineGaussianMixture`.

        Examples
        --------
        >>> import numpy as np
        >>> from streammix import GaussianMixture, OnlineGaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(3000, 2))
        >>> online = OnlineGaussianMixture(2, batch_size=500, random_state=0).fit(X)
        >>> polished = GaussianMixture.from_model(online).fit(X)
        >>> polished.score(X) >= online.score(X) - 1e-9
        True
        """
        params = model.params_
        kwargs.setdefault("covariance_type", model.covariance_type)
        for name, value in params.family.structural_parameters().items():
            kwargs.setdefault(name, value)
        if "reg_covar" in model.get_params():
            kwargs.setdefault("reg_covar", model.get_params()["reg_covar"])
        kwargs.setdefault("warm_start", True)
        return cls._from_params(params, (False, 0, [], float("nan")), model.means_.dtype, **kwargs)

    @classmethod
    def from_run(cls, run: RunState, *, dtype: Any = np.float64, **kwargs: Any) -> GaussianMixture:
        """The fitted mixture an EM run reached (parameters and history), e.g. the
        candidate a model selection chose; ``dtype`` is the dtype of the data it ran
        on (that of the fitted attributes) and ``kwargs`` are other constructor
        parameters."""
        params = run.params
        kwargs.setdefault("covariance_type", params.family.name)
        for name, value in params.family.structural_parameters().items():
            kwargs.setdefault(name, value)
        history = (run.converged, run.n_iter, list(run.lower_bounds), run.lower_bound)
        return cls._from_params(params, history, dtype, **kwargs)

    def _prior_bounds(self) -> tuple[float, ...]:
        """What a continued fit's convergence test starts from: the previous fit's last
        lower bound, as in scikit-learn (none for a fresh fit, or when the previous
        fit ran no iteration)."""
        if not self._continuing():
            return ()
        bound = float(getattr(self, "lower_bound_", float("nan")))
        return (bound,) if np.isfinite(bound) else ()

    def _starts(
        self, data: ChunkedData, prior: tuple[float, ...] = ()
    ) -> tuple[list[RunState], Any]:
        if self._continuing():
            params = self.params_
            # The run carries the previous bound so that its first iteration's change
            # is measured from it; _adopt drops it from this fit's history.
            return [RunState(params, prior)], params_frame(params, data.dtype)
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
            missing=self.missing == "em",
        )
        return [RunState(p) for p in starts], frame

    def _verbose_hook(
        self, on_iteration: Callable[[IterationReport], None] | None
    ) -> Callable[[IterationReport], None] | None:
        if not self.verbose:
            return on_iteration
        show_logs()

        def hook(report: IterationReport) -> None:
            if report.iteration % self.verbose_interval == 0:
                if self.verbose > 1:
                    logger.info(
                        "Iteration %d\t time lapse %.5fs\t lower bound %.5f",
                        report.iteration,
                        report.seconds,
                        report.best.lower_bound,
                    )
                else:
                    logger.info("Iteration %d", report.iteration)
            if on_iteration is not None:
                on_iteration(report)

        return hook

    def _adopt(self, state: RunState, n_features: int, dtype: Any, n_prior: int = 0) -> None:
        """Take the parameters and history of a finished run as the fitted state, the
        attributes in the data's ``dtype``; the first ``n_prior`` lower bounds of the
        run are the previous fit's."""
        if not state.converged and self.max_iter > 0:
            # scikit-learn's wording first, so that warning filters written for it match
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data. "
                f"(EM stopped after max_iter={self.max_iter} iterations; the best run's "
                f"lower bound still changed by tol={self.tol} or more.)",
                ConvergenceWarning,
                stacklevel=3,
            )
        bounds = list(state.lower_bounds[n_prior:])
        self._set_params(state.params, n_features, dtype)
        self._set_history(state.converged, len(bounds), bounds, bounds[-1] if bounds else -np.inf)
