"""``OnlineGaussianMixture``: stepwise EM in one pass over the chunks, continued at will.

Layer: edges. The model's running statistics, step counter and frame are
part of its fitted state and of its model files, so fitting can stop, be saved,
be loaded elsewhere and continue bit for bit where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._random import as_generator, draw_entropy
from .._validation import Constraint, Interval, IsBool, IsNone
from ..core.frame import Frame
from ..core.params import MixtureParams
from ..core.stats import SufficientStats
from ..core.stepwise import (
    OnlineSettings,
    OnlineState,
    default_warmup_rows,
    start_state,
    stats_from_params,
)
from ..engine.compute import blas_guarded
from ..engine.data import ChunkedData
from ..engine.init import initial_params, params_frame, sample_size
from ..engine.online_em import (
    OnlineCheckpoint,
    run_epoch,
    score_and_update,
    state_from_files,
    state_to_files,
)
from ..errors import InvalidInputError, InvalidParameterError, NotFittedError
from .density import MixtureDensity
from .em_settings import EM_RULES, EMEstimator
from .gaussian_mixture import GaussianMixture

logger = logging.getLogger("streammix")


class OnlineGaussianMixture(EMEstimator):
    """A Gaussian mixture fitted by stepwise EM, one chunk (or batch) at a time.

    Shares :class:`GaussianMixture`'s parameters for the model and its
    initialisation; the running statistics are the same
    :class:`~streammix.core.stats.SufficientStats` batch EM uses, updated by
    ``s <- (1 - g_t) s + g_t s(batch)`` with ``g_t = (t + learning_offset) **
    -learning_decay`` and an M-step after every update (see
    :mod:`streammix.core.stepwise` for the warm-up and the re-seeding of starved
    components).

    Parameters
    ----------
    n_components, covariance_type, reg_covar, init_params, weights_init, means_init, \
precisions_init, random_state, on_degenerate
        As in :class:`GaussianMixture`. Initialisation uses a sample made of the
        first chunks of the first epoch (at least 20,000 rows, or all of them).
    learning_decay : float in (0.5, 1], default=0.6
        ``kappa`` of the step schedule.
    learning_offset : float >= 0, default=1.0
        ``t0`` of the step schedule.
    max_epochs : int, default=1
        Passes over the data in :meth:`fit`.
    batch_size : int or None, default=None
        Rows per update; ``None`` is one chunk (65,536 rows for numpy input).
    shuffle : bool, default=True
        Visit the chunks in a new seeded random order every epoch (and shuffle
        rows within a chunk that holds several updates).
    averaging : bool or int, default=False
        Polyak–Ruppert averaging of the parameters: ``True`` starts after half of
        the first epoch's updates, an int after that many updates.
    forget : float in (0, 1) or None, default=None
        A constant step instead of the decaying one, for streams that drift:
        old data are forgotten at this rate per update.
    warm_start : bool, default=False
        ``fit`` continues from the current state instead of re-initialising.
    verbose : int, default=0

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_, n_features_in_
        As in :class:`GaussianMixture` (the averaged parameters when averaging).
    n_updates_ : int
        Updates since warm-up (``t`` of the schedule).
    n_rows_seen_ : int
    consumed_ : dict or None
        Which input the model last learned from and how far: ``input`` (its
        identity), ``rows`` (rows consumed from its start), ``fingerprint`` (a
        SHA-256 of the last rows consumed) and, for inputs made of files,
        ``parts``. Set by the fit, update and stream jobs; ``update`` continues
        from there.
    stream_history_ : dict of lists
        Per batch of a stream follower: ``batch``, ``rows``, ``log_likelihood``
        (mean, before learning the batch) and ``flagged_share``; the last
        10,000 batches.
    n_iter_ : int
        Epochs run by :meth:`fit`.
    lower_bounds_ : list of float
        For each epoch, the mean log-likelihood of each batch under the parameters
        before it was used (a progressive validation score).
    lower_bound_ : float
    converged_ : bool
        Always ``True`` after a fit (online EM has no convergence test).

    Examples
    --------
    >>> import numpy as np
    >>> from streammix import OnlineGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (5000, 2)), rng.normal(4, 1, (5000, 2))])
    >>> om = OnlineGaussianMixture(2, batch_size=1000, random_state=0).fit(X)
    >>> np.round(np.sort(om.means_[:, 0]))
    array([-4.,  4.])
    """

    _derived = GaussianMixture
    consumed_: dict[str, Any] | None = None
    stream_history_: dict[str, list[Any]]
    _rules: ClassVar[dict[str, list[Constraint]]] = {
        **EM_RULES,
        "learning_decay": [Interval("real", 0.5, 1.0, "right")],
        "learning_offset": [Interval("real", 0.0, None, "left")],
        "max_epochs": [Interval("int", 1, None, "left")],
        "batch_size": [Interval("int", 1, None, "left"), IsNone()],
        "shuffle": [IsBool()],
        "averaging": [IsBool(), Interval("int", 0, None, "left")],
        "forget": [Interval("real", 0.0, 1.0, "neither"), IsNone()],
        "verbose": [Interval("int", 0, None, "left")],
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        rank: int | None = None,
        learning_decay: float = 0.6,
        learning_offset: float = 1.0,
        max_epochs: int = 1,
        batch_size: int | None = None,
        shuffle: bool = True,
        averaging: bool | int = False,
        forget: float | None = None,
        on_degenerate: str = "error",
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.rank = rank
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.averaging = averaging
        self.forget = forget
        self.on_degenerate = on_degenerate
        self.verbose = verbose

    # ------------------------------------------------------------------ state
    def _settings(self, n_features: int, n_updates_per_epoch: int) -> OnlineSettings:
        burn_in: int | None
        if self.averaging is True:
            burn_in = max(1, n_updates_per_epoch // 2)
        elif self.averaging is False:
            burn_in = None
        else:
            burn_in = int(self.averaging)
        return OnlineSettings(
            family=self._family(),
            reg_covar=float(self.reg_covar),
            learning_decay=float(self.learning_decay),
            learning_offset=float(self.learning_offset),
            forget=None if self.forget is None else float(self.forget),
            warmup_rows=default_warmup_rows(self.n_components, n_features),
            averaging_burn_in=burn_in,
            on_degenerate=self.on_degenerate,
        )

    def _state(self) -> OnlineState:
        state = getattr(self, "_online_state", None)
        if state is None:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' or "
                "'partial_fit' before using this estimator."
            )
        return state

    def _adopt(
        self,
        state: OnlineState,
        n_features: int,
        history: tuple[bool, int, list[float], float] | None = None,
    ) -> None:
        if history is not None:
            self._set_history(*history)
        self._online_state = state
        self._set_params(state.current, n_features)
        self.n_updates_ = int(state.n_updates)
        self.n_rows_seen_ = int(state.n_rows)

    def _initial_state(
        self, data: ChunkedData, order: np.ndarray, rng: np.random.Generator
    ) -> OnlineState:
        """Initialise on the first chunks of ``order`` (and pick the frame there)."""
        spec = self._init_spec(data.n_features)
        family = self._family()
        want = sample_size(data.n_rows, self.n_components)
        rows: list[np.ndarray] = []
        taken = 0
        for c in order:
            start = data.offsets[c]
            rows.append(np.arange(start, start + data.row_chunks[c]))
            taken += data.row_chunks[c]
            if taken >= want:
                break
        sample, weights = data.take_weighted(np.sort(np.concatenate(rows)))
        if sample.shape[0] < self.n_components:
            raise InvalidInputError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {sample.shape[0]}"
            )
        starts, frame = initial_params(
            ChunkedData.from_numpy(sample.astype(data.dtype), weights=weights),
            family,
            self.n_components,
            spec,
            float(self.reg_covar),
            self.on_degenerate,
            [rng],
        )
        return self._cold_state(starts[0], frame)

    def _cold_state(self, params: MixtureParams, frame: Frame) -> OnlineState:
        family = params.family
        k, d = params.n_components, params.n_features
        template = SufficientStats.zero(k, d, family.s2_shapes(k, d), frame)
        return start_state(params, template)

    # -------------------------------------------------------------------- fit
    @blas_guarded
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        sample_weight: Any = None,
        on_epoch: Callable[[int, OnlineGaussianMixture], None] | None = None,
        resume: OnlineCheckpoint | None = None,
    ) -> OnlineGaussianMixture:
        """Initialise on a sample, then ``max_epochs`` passes over shuffled chunks.

        With ``warm_start=True`` on a fitted model, continue from its state.

        Parameters
        ----------
        X : array-like, dask array, zarr.Array or location
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative row weights (as for :meth:`GaussianMixture.fit`): a row
            counts its weight in every update's statistics; ``n_rows_seen_`` and the
            warm-up count weight, not rows.
        on_epoch : callable, optional
            Called as ``on_epoch(epoch, self)`` after every epoch; ``checkpoint()``
            is then the value to resume from.
        resume : OnlineCheckpoint, optional
            Continue after the checkpoint's epochs: the result equals an
            uninterrupted fit's.
        """
        self.check_params()
        data = self._fit_data(X, sample_weight)
        rng = as_generator(self.random_state)
        n_chunks = len(data.row_chunks)
        # Every epoch's chunk order and per-chunk row-shuffling seeds are drawn up front,
        # so a resumed fit visits the data exactly as an uninterrupted one.
        plan = [
            (
                rng.permutation(n_chunks) if self.shuffle else np.arange(n_chunks),
                [draw_entropy(rng) for _ in range(n_chunks)] if self.shuffle else None,
            )
            for _ in range(self.max_epochs)
        ]
        if resume is not None:
            state, bounds = resume.state, list(resume.lower_bounds)
        elif self._continuing():
            state, bounds = self._state(), []
        else:
            state, bounds = self._initial_state(data, plan[0][0], rng), []
        for epoch in range(len(bounds), self.max_epochs):
            order, seeds = plan[epoch]
            state, bound = self._epoch(data, state, order, seeds)
            bounds.append(bound)
            self._adopt(state, data.n_features)
            self._set_history(True, len(bounds), bounds, bound)
            if self.verbose:
                logger.info(
                    "epoch %d: mean log-likelihood of unseen batches %.5f", epoch + 1, bound
                )
            if on_epoch is not None:
                on_epoch(epoch + 1, self)
        return self

    @blas_guarded
    def partial_fit(
        self, X: Any, y: Any = None, sample_weight: Any = None
    ) -> OnlineGaussianMixture:
        """Update the model with the rows of ``X``, in order, ``batch_size`` at a time.

        The first call initialises on ``X`` (its first chunks). Successive calls
        continue exactly where the previous one stopped, also across
        :meth:`save` and :func:`streammix.load`. With ``sample_weight``, each
        row counts its weight: integer weights update the model as the rows
        repeated would, when each update's batch holds the same rows (a batch is
        ``batch_size`` rows, whatever their weights).
        """
        self.check_params()
        fitted = getattr(self, "_online_state", None) is not None
        data = self._data(X, sample_weight) if fitted else self._fit_data(X, sample_weight)
        order = np.arange(len(data.row_chunks))
        state = (
            self._state()
            if fitted
            else self._initial_state(data, order, as_generator(self.random_state))
        )
        state, bound = self._epoch(data, state, order, None)
        self._adopt(state, data.n_features)
        history = list(getattr(self, "lower_bounds_", []))
        self._set_history(True, getattr(self, "n_iter_", 0), [*history, bound], bound)
        return self

    def _epoch(
        self,
        data: ChunkedData,
        state: OnlineState,
        order: np.ndarray,
        seeds: list[int] | None,
    ) -> tuple[OnlineState, float]:
        if self.batch_size is None:
            updates = len(order)
        else:
            updates = max(1, math.ceil(data.n_rows / self.batch_size))
        settings = self._settings(data.n_features, updates)
        new = run_epoch(data, state, settings, order.tolist(), self.batch_size, seeds)
        rows = new.n_rows - state.n_rows
        return new, float((new.loglik_sum - state.loglik_sum) / rows) if rows else float("nan")

    @blas_guarded
    def score_and_learn(self, X: Any) -> np.ndarray:
        """Score the rows of ``X`` with the current model, then learn them in one update
        (one batch, whatever its size). Returns each row's log-likelihood before the
        update; rows that cannot be scored (NaN, infinity, or a density that
        underflows) get NaN and are not learned. A follower of a stream calls it once
        per batch, so its batches are the stream's and not a split of them."""
        state = self._state()
        rows = np.asarray(X)
        if rows.ndim != 2 or rows.shape[1] != state.params.n_features:
            raise InvalidInputError(
                f"Expected rows of {state.params.n_features} features; got shape {rows.shape}."
            )
        if rows.dtype.kind != "f":
            rows = rows.astype(np.float64)
        if rows.shape[0] == 0:
            return np.empty(0)
        ll, new = score_and_update(rows, state, self._settings(rows.shape[1], 1))
        if new is not state:
            self._adopt(new, rows.shape[1])
        return ll

    def step_size(self) -> float:
        """The weight the next update gives its batch (``forget``, or the decaying
        ``(t + learning_offset) ** -learning_decay``; 1 during warm-up)."""
        state = self._state()
        if not state.warm:
            return 1.0
        return float(self._settings(self.n_features_in_, 1).step(state.n_updates + 1))

    # --------------------------------------------------------------- transfer
    @classmethod
    def from_model(
        cls, model: MixtureDensity, n_rows: int | None = None, **kwargs: Any
    ) -> OnlineGaussianMixture:
        """An online model that continues from a fitted mixture (e.g. a batch fit).

        The running statistics are those of the model's parameters, weighted as
        ``n_rows`` rows (default: the rows the model was fitted on when known,
        else 10,000): the first updates move the model about as much as that
        many rows of new data would.
        """
        params = model.params_
        kwargs.setdefault("covariance_type", model.covariance_type)
        for name, value in params.family.structural_parameters().items():
            kwargs.setdefault(name, value)
        if "reg_covar" in model.get_params():
            kwargs.setdefault("reg_covar", model.get_params()["reg_covar"])
        est = cls(n_components=params.n_components, warm_start=True, **kwargs).check_params()
        frame = params_frame(params, np.dtype(np.float64))
        k, d = params.n_components, params.n_features
        template = SufficientStats.zero(k, d, params.family.s2_shapes(k, d), frame)
        seen = n_rows or int(getattr(model, "n_rows_seen_", 0)) or 10_000
        stats = stats_from_params(params, template, float(est.reg_covar))
        state = OnlineState(
            stats=stats, params=params, n_updates=max(1, seen // 10_000), n_rows=seen, warm=True
        )
        est._adopt(state, d, (True, 0, [], float("nan")))
        return est

    # ------------------------------------------------------------------ files
    def checkpoint(self) -> OnlineCheckpoint:
        """The value :meth:`fit` resumes from to continue after the last epoch."""
        return OnlineCheckpoint(self._state(), tuple(self.lower_bounds_))

    def _files_meta(self) -> dict[str, Any]:
        meta = super()._files_meta()
        meta["online"], _ = state_to_files(self._state())
        if self.consumed_ is not None:
            meta["consumed"] = dict(self.consumed_)
        if getattr(self, "stream_history_", None):
            meta["stream_history"] = {k: list(v) for k, v in self.stream_history_.items()}
        return meta

    def _files_arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._files_arrays()
        arrays.update(state_to_files(self._state())[1])
        return arrays

    def to_files(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self._state()
        return super().to_files()

    @classmethod
    def from_files(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> OnlineGaussianMixture:
        est = super().from_files(meta, arrays)
        info = meta.get("online")
        if not isinstance(info, dict):
            raise InvalidParameterError("an online model needs its 'online' state")
        try:
            state = state_from_files(info, arrays, est.params_)
        except ValueError as err:
            raise InvalidParameterError(str(err)) from None
        est._online_state = state
        est.consumed_ = dict(meta["consumed"]) if meta.get("consumed") else None
        history = meta.get("stream_history")
        est.stream_history_ = {k: list(v) for k, v in history.items()} if history else {}
        est.n_updates_ = state.n_updates
        est.n_rows_seen_ = state.n_rows
        return est
