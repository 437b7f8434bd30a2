"""Batch EM over chunks: one pass (one ``compute``) per iteration for all restarts.

Layer: engine (dask + numpy).

Each iteration maps the E-step kernel over the chunks, tree-reduces the
statistics and runs the M-step on the client. Several runs (restarts, or
candidates of a model selection) advance together, so one read of a chunk
serves all of them; a run that has converged drops out. The state of every run
is a value (:class:`RunState`) that a front end can checkpoint after each
iteration and hand back to resume.

Convergence follows scikit-learn: the lower bound of an iteration is the mean
log-likelihood under the parameters that iteration started from; a run has
converged when it changed by less than ``tol`` from the previous iteration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._random import row_uniform
from ..core.families import CovarianceFamily, Prepared, get_family
from ..core.frame import Frame
from ..core.kernel import estep
from ..core.missing import estep_missing
from ..core.mstep import m_step
from ..core.params import MixtureParams
from ..core.stats import SufficientStats, weighted_rows
from ..errors import InfiniteEntry, InvalidInputError
from .data import ChunkedData
from .init import add_tuples

logger = logging.getLogger("streammix")


@dataclass(frozen=True, slots=True)
class EMSettings:
    family: CovarianceFamily
    reg_covar: float
    tol: float
    max_iter: int
    on_degenerate: str = "error"
    missing: bool = False
    holdout: Holdout | None = None


@dataclass(frozen=True, slots=True)
class Holdout:
    """Rows set aside for validation: those whose per-row uniform draw (seeded by
    ``entropy``, independent of the chunking) is below ``fraction``; ``keep`` says
    which side a pass uses."""

    entropy: int
    fraction: float
    keep: str = "train"

    def chosen(self, n_rows: int, offset: int) -> np.ndarray:
        """Which of ``n_rows`` rows starting at ``offset`` this side keeps."""
        u = row_uniform(self.entropy, offset, n_rows, 1)[:, 0]
        return u >= self.fraction if self.keep == "train" else u < self.fraction

    def other_side(self) -> Holdout:
        return Holdout(
            self.entropy, self.fraction, "validation" if self.keep == "train" else "train"
        )


@dataclass(frozen=True, slots=True, eq=False)
class RunState:
    """Where one EM run stands: its parameters and the lower bound of every iteration."""

    params: MixtureParams
    lower_bounds: tuple[float, ...] = ()
    converged: bool = False

    @property
    def n_iter(self) -> int:
        return len(self.lower_bounds)

    @property
    def lower_bound(self) -> float:
        return self.lower_bounds[-1] if self.lower_bounds else -np.inf


@dataclass(frozen=True, slots=True, eq=False)
class EMCheckpoint:
    """Where a batch EM fit stands after an iteration: every run's state, the frame and
    the iteration, enough to resume and end exactly where an uninterrupted fit would.

    :meth:`to_files` and :meth:`from_files` give its file contents (JSON metadata and
    named arrays); where they are stored is the caller's business.
    """

    frame: Frame
    states: tuple[RunState, ...]
    iteration: int

    def to_files(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"frame_shift": self.frame.shift}
        runs = []
        for i, s in enumerate(self.states):
            p = s.params
            arrays.update(
                {
                    f"run{i}_weights": p.weights,
                    f"run{i}_means": p.means,
                    f"run{i}_covariances": p.covariances,
                    f"run{i}_precisions_cholesky": p.precisions_cholesky,
                }
            )
            runs.append({"lower_bounds": list(s.lower_bounds), "converged": s.converged})
        family = self.states[0].params.family
        meta = {
            "iteration": self.iteration,
            "frame_scale": self.frame.scale,
            "covariance_type": family.name,
            **family.structural_parameters(),
            "runs": runs,
        }
        return meta, arrays

    @classmethod
    def from_files(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> EMCheckpoint:
        family = get_family(str(meta["covariance_type"]), meta.get("rank"))
        states = []
        for i, run in enumerate(meta["runs"]):
            params = MixtureParams(
                family,
                arrays[f"run{i}_weights"],
                arrays[f"run{i}_means"],
                arrays[f"run{i}_covariances"],
                arrays[f"run{i}_precisions_cholesky"],
            )
            bounds = tuple(float(b) for b in run["lower_bounds"])
            states.append(RunState(params, bounds, bool(run["converged"])))
        frame = Frame(arrays["frame_shift"], float(meta["frame_scale"]))
        return cls(frame, tuple(states), int(meta["iteration"]))


@dataclass(frozen=True, slots=True)
class IterationReport:
    """What a front end sees after every iteration."""

    iteration: int
    states: tuple[RunState, ...]
    seconds: float
    frame: Frame

    @property
    def best(self) -> RunState:
        return max(self.states, key=lambda s: s.lower_bound)

    def checkpoint(self) -> EMCheckpoint:
        """The value a fit resumes from to continue after this iteration."""
        return EMCheckpoint(self.frame, self.states, self.iteration)


def _side(
    X: np.ndarray, offset: int, holdout: Holdout | None, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows (and weights) a pass uses: one side of the holdout, positive weights."""
    if holdout is not None:
        chosen = holdout.chosen(X.shape[0], offset)
        X = X[chosen]
        weights = None if weights is None else weights[chosen]
    return weighted_rows(X, weights)


def estep_chunk(
    X: np.ndarray,
    offset: int,
    preps: tuple[Prepared, ...],
    holdout: Holdout | None = None,
    weights: np.ndarray | None = None,
) -> tuple[SufficientStats, ...]:
    """The per-chunk task of an EM pass."""
    X, w = _side(X, offset, holdout, weights)
    return estep(X, preps, weights=w)


def estep_missing_chunk(
    X: np.ndarray,
    offset: int,
    params: tuple[MixtureParams, ...],
    frame: Frame,
    holdout: Holdout | None = None,
    weights: np.ndarray | None = None,
) -> tuple[SufficientStats, ...]:
    """The per-chunk task of an EM pass over data with missing (NaN) entries."""
    X, w = _side(X, offset, holdout, weights)
    try:
        return tuple(estep_missing(X, p, frame, w) for p in params)
    except InfiniteEntry as err:
        raise InvalidInputError(
            f"Input row {offset + err.row} contains infinity (NaN marks a missing value; "
            "infinity is not allowed)."
        ) from None


def estep_pass(
    data: ChunkedData,
    params: Sequence[MixtureParams],
    frame: Frame,
    missing: bool = False,
    holdout: Holdout | None = None,
) -> tuple[SufficientStats, ...]:
    """Statistics of the data (or one side of a holdout) under each parameter set,
    in one pass."""
    if missing:
        stats = data.map_reduce(
            estep_missing_chunk, tuple(params), frame, holdout, combine=add_tuples, label="EM"
        )
        return tuple(stats)
    preps = tuple(p.prepare(frame, data.dtype) for p in params)
    return tuple(data.map_reduce(estep_chunk, preps, holdout, combine=add_tuples, label="EM"))


def run_em(
    data: ChunkedData,
    states: Sequence[RunState],
    frame: Frame,
    settings: EMSettings,
    on_iteration: Callable[[IterationReport], None] | None = None,
    start_iteration: int = 0,
) -> list[RunState]:
    """Advance every run until it converges or ``settings.max_iter`` iterations have run.

    Parameters
    ----------
    data : ChunkedData
    states : sequence of RunState
        Fresh runs (no lower bounds yet) or runs restored from a checkpoint.
    frame : Frame
        The fit's working coordinates (shared by all runs).
    settings : EMSettings
    on_iteration : callable, optional
        Called with an :class:`IterationReport` after every iteration.
    start_iteration : int
        Iterations already done (when resuming).
    """
    states = list(states)
    for iteration in range(start_iteration + 1, settings.max_iter + 1):
        active = [i for i, s in enumerate(states) if not s.converged]
        if not active:
            break
        t0 = time.perf_counter()
        stats = estep_pass(
            data, [states[i].params for i in active], frame, settings.missing, settings.holdout
        )
        for i, st in zip(active, stats, strict=True):
            bound = st.loglik / st.n
            change = bound - states[i].lower_bound
            family = states[i].params.family
            params = m_step(st, family, settings.reg_covar, settings.on_degenerate)
            states[i] = replace(
                states[i],
                params=params,
                lower_bounds=(*states[i].lower_bounds, bound),
                converged=bool(abs(change) < settings.tol),
            )
        seconds = time.perf_counter() - t0
        logger.debug("EM iteration %d: %d run(s), %.3f s", iteration, len(active), seconds)
        if on_iteration is not None:
            on_iteration(IterationReport(iteration, tuple(states), seconds, frame))
    return states


def best_run(states: Sequence[RunState]) -> int:
    """Index of the run with the highest final lower bound (the first on ties)."""
    best = 0
    for i in range(1, len(states)):
        if states[i].lower_bound > states[best].lower_bound or states[best].lower_bound == -np.inf:
            best = i
    return best
