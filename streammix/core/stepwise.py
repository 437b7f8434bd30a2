"""Stepwise (online) EM on sufficient statistics.

Layer: math (numpy only).

The running statistics ``s`` are per-row averages (``s.n == 1`` once warm). A
batch of rows contributes its statistics ``b`` (E-step under the current
parameters) through ``s <- (1 - g_t) s + g_t b / b.n`` with
``g_t = (t + t0) ** -kappa`` (Cappé & Moulines 2009; Liang & Klein 2009), or a
constant ``g`` (``forget``) for drifting streams; an M-step follows every
update.

Three measures keep early, noisy updates from ruining the fit:

* **Warm-up.** Until ``warmup_rows`` rows have been seen, batches are summed
  under the initial parameters and no M-step runs: the first M-step sees at
  least ``10 (D + 1)`` rows per component.
* **Collapse re-seeding.** A component whose weight falls below
  ``COLLAPSE_WEIGHT / K`` is starved, not converged: it is replaced by half of
  the heaviest component, split along its principal axis, in the running
  statistics themselves (so the next update does not undo it). Families whose
  components share one covariance are left as they are: a starved component
  still has a well-defined covariance.
* **Averaging** (optional). Polyak–Ruppert averages of the parameters after a
  burn-in reduce the noise of the last updates.

``OnlineState`` is a value: the same state and batch always give the same
next state, which is what makes save, load and continue bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .families import CovarianceFamily
from .mstep import COUNT_GUARD, m_step, split_into
from .params import MixtureParams
from .stats import SufficientStats

# A component below this share of 1/K of the data is re-seeded.
COLLAPSE_WEIGHT = 1e-2


@dataclass(frozen=True, slots=True)
class OnlineSettings:
    """How updates are weighted and guarded."""

    family: CovarianceFamily
    reg_covar: float
    learning_decay: float = 0.6
    learning_offset: float = 1.0
    forget: float | None = None
    warmup_rows: int = 0
    averaging_burn_in: int | None = None
    on_degenerate: str = "error"

    def step(self, t: int) -> float:
        """The weight of update ``t`` (``t = 1`` is the first update after warm-up)."""
        if self.forget is not None:
            return float(self.forget)
        return float((t + self.learning_offset) ** (-self.learning_decay))


def default_warmup_rows(n_components: int, n_features: int) -> int:
    return 10 * n_components * (n_features + 1)


@dataclass(frozen=True, slots=True, eq=False)
class OnlineState:
    """Everything an online fit carries from one update to the next.

    Attributes
    ----------
    stats : SufficientStats
        Running statistics: a plain sum during warm-up, per-row averages after.
    params : MixtureParams
        Parameters after the last M-step (the initial ones during warm-up).
    n_updates : int
        Updates since warm-up ended (``t`` of the step schedule).
    n_rows : int
        Rows seen in total.
    warm : bool
        Whether warm-up has ended.
    averaged : MixtureParams or None
        Running average of the parameters after the burn-in.
    n_averaged : int
    n_reseeded : int
        Components re-seeded so far.
    loglik_sum : float
        Sum of every batch's log-likelihood under the parameters before that
        batch was used (a progressive validation score).
    """

    stats: SufficientStats
    params: MixtureParams
    n_updates: int = 0
    n_rows: int = 0
    warm: bool = False
    averaged: MixtureParams | None = None
    n_averaged: int = 0
    n_reseeded: int = 0
    loglik_sum: float = 0.0

    @property
    def current(self) -> MixtureParams:
        """The parameters to score with: the average when there is one."""
        return self.averaged if self.averaged is not None else self.params


def start_state(params: MixtureParams, frame_stats: SufficientStats) -> OnlineState:
    """A cold state: initial parameters and empty statistics (``frame_stats`` gives
    shapes and frame)."""
    zero = SufficientStats.zero(
        frame_stats.n_components,
        frame_stats.n_features,
        tuple(a.shape for a in frame_stats.s2),
        frame_stats.frame,
    )
    return OnlineState(stats=zero, params=params)


def stats_from_params(
    params: MixtureParams, template: SufficientStats, reg_covar: float
) -> SufficientStats:
    """Per-row statistics whose M-step gives back ``params`` (frame of ``template``).

    Used to continue a batch model online: the running statistics are those of
    an infinite sample from the model.
    """
    frame = template.frame
    family = params.family
    means = (params.means - frame.shift) / frame.scale
    cov = family.rescaled(params.covariances, np.full(params.n_features, 1.0 / frame.scale))
    reg = reg_covar / frame.scale**2
    s0 = params.weights.copy()
    # About each component's own mean: the first-order sums vanish.
    s2 = family.second_moments(s0, np.zeros_like(means), cov, reg)
    return SufficientStats(1.0, 0.0, s0, np.zeros_like(means), s2, frame, means)


def _reseed_collapsed(
    stats: SufficientStats, family: CovarianceFamily, reg_covar: float
) -> tuple[SufficientStats, int]:
    """Running statistics with starved components split off the heaviest one."""
    k = stats.n_components
    weights = stats.s0 / stats.s0.sum()
    bad = tuple(int(i) for i in np.flatnonzero(weights < COLLAPSE_WEIGHT / k))
    # Re-seeding copies the heaviest component's own covariance; a shared covariance
    # has none per component (and stays well defined for starved ones).
    if not bad or len(bad) >= k or family.shared_covariance:
        return stats, 0
    nk = stats.s0 + COUNT_GUARD
    offsets, cov = family.mstep_frame(nk, stats.s1, stats.s2, 0.0)
    means = stats.centres + offsets
    new_w, new_means, new_cov = split_into(family, weights, means, cov, bad)
    s0 = new_w * stats.s0.sum()
    # about the new means: the first-order sums vanish
    s2 = family.second_moments(s0, np.zeros_like(new_means), new_cov, 0.0)
    reseeded = replace(stats, s0=s0, s1=np.zeros_like(new_means), s2=s2, refs=new_means)
    return reseeded, len(bad)


def _average(averaged: MixtureParams | None, n: int, params: MixtureParams) -> MixtureParams:
    if averaged is None:
        return params
    f = 1.0 / (n + 1)
    w = averaged.weights + f * (params.weights - averaged.weights)
    m = averaged.means + f * (params.means - averaged.means)
    c = averaged.covariances + f * (params.covariances - averaged.covariances)
    return MixtureParams.from_covariances(params.family, w / w.sum(), m, c)


def update(state: OnlineState, batch: SufficientStats, settings: OnlineSettings) -> OnlineState:
    """The state after one batch whose statistics were taken under ``state.params``
    (the same state for a batch of no rows, e.g. rows all of weight zero)."""
    if batch.n <= 0:
        return state
    n_rows = state.n_rows + round(batch.n)
    loglik_sum = state.loglik_sum + batch.loglik
    if not state.warm:
        total = state.stats.recentered(settings.family, batch.refs) + batch
        if total.n < settings.warmup_rows:
            return replace(state, stats=total, n_rows=n_rows, loglik_sum=loglik_sum)
        running = total.scale(1.0 / total.n)
        t = 1
    else:
        t = state.n_updates + 1
        # the batch's sums are about the current means; move the running ones there
        previous = state.stats.recentered(settings.family, batch.refs)
        running = previous.blend(batch.scale(1.0 / batch.n), settings.step(t))
    running, n_reseeded = _reseed_collapsed(running, settings.family, settings.reg_covar)
    params = m_step(running, settings.family, settings.reg_covar, settings.on_degenerate)
    averaged, n_averaged = state.averaged, state.n_averaged
    if settings.averaging_burn_in is not None and t > settings.averaging_burn_in:
        averaged = _average(averaged, n_averaged, params)
        n_averaged += 1
    return OnlineState(
        stats=running,
        params=params,
        n_updates=t,
        n_rows=n_rows,
        warm=True,
        averaged=averaged,
        n_averaged=n_averaged,
        n_reseeded=state.n_reseeded + n_reseeded,
        loglik_sum=loglik_sum,
    )
