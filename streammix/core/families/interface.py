"""The interfaces every covariance family implements: the family and its block kernels.

Layer: math (numpy/scipy only).

A family (:class:`CovarianceFamily`) owns everything that depends on the shape
of the covariances: the parameter algebra in original units (Cholesky factors
of precisions, dense covariances, marginals, rescaling, parameter counts), the
M-step (how sums turn back into covariances), and the facts other layers would
otherwise read off its name: whether its components share one covariance, its
scikit-learn equivalent, its structural parameters. Nothing outside the
families branches on a family's name; :mod:`streammix.core.families` maps
names to instances.

The E-step in frame units belongs to the family's block kernels
(:class:`BlockKernel`): how a block of rows turns into per-component
log-densities and into sums. A family offers one kernel per width of data
(:meth:`CovarianceFamily.kernel`); most have a single kernel, a family whose
best algorithm depends on the number of features has one per regime, chosen
once when the parameters are prepared. The E-step (:mod:`streammix.core.kernel`)
talks only to the kernel carried by the prepared values (:class:`Prepared`).

Kernel conventions: a block arrives in frame units and transposed, ``y`` of
shape ``(n_features, n_rows)`` in the data dtype; ``features(y)`` builds the
matrix ``F`` that both GEMMs of the kernel read; ``log_joint`` returns
``log w_k + log N(x | k)`` of shape ``(n_components, n_rows)`` in original
units; ``add_block_sums`` accumulates ``F @ resp.T`` (or the kernel's
equivalent) into a float64 accumulator that ``split_sums`` turns into statistics.

Kernels are frozen values that compare equal when they are of the same kind for
the same family, so that blocks' feature matrices can be shared between models
and a kernel shipped to another process (inside the prepared values of a task
graph) still matches its original.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from ..frame import Frame

LOG_2PI = math.log(2.0 * math.pi)


class CovarianceFamily(ABC):
    """One covariance structure: ``full``, ``tied``, ``diag``, ``spherical``, ..."""

    name: ClassVar[str]
    #: scikit-learn's ``covariance_type`` for the same structure, or ``None`` where
    #: scikit-learn has no such family.
    sklearn_name: ClassVar[str | None] = None
    #: Whether conditionals stay in this family (see :mod:`streammix.core.conditional`);
    #: otherwise they are taken on the equivalent full covariances.
    exact_conditionals: ClassVar[bool] = True
    #: Whether all components share one covariance. Then a component without
    #: weight still has a well-defined covariance, and an ill-defined covariance
    #: belongs to no single component, so it cannot be re-seeded from another.
    shared_covariance: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<covariance family {self.name!r}>"

    def __reduce__(self) -> tuple[object, tuple[Any, ...]]:
        # Families are singletons; travel between processes by name.
        from . import get_family

        return (get_family, (self.name,))

    def structural_parameters(self) -> dict[str, int]:
        """What, besides :attr:`name`, selects this family in the registry
        (``family_for(self.name, **self.structural_parameters()) is self``);
        empty for unparametrised families."""
        return {}

    def dense_family(self) -> CovarianceFamily:
        """The family whose layout is :meth:`dense` (``full``); itself when it is."""
        from . import get_family

        return get_family("full")

    def describe_degenerate(self, components: tuple[int, ...]) -> str:
        """How an error message names the ill-defined covariances of ``components``."""
        return (
            "component"
            + ("s " if len(components) > 1 else " ")
            + ", ".join(str(c) for c in components)
        )

    # ----------------------------------------------------------- shapes
    @abstractmethod
    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        """Shape of ``covariances_`` (and of ``precisions_cholesky_``)."""

    @abstractmethod
    def s2_shapes(self, n_components: int, n_features: int) -> tuple[tuple[int, ...], ...]:
        """Shapes of the second-order statistics in :class:`SufficientStats`."""

    @abstractmethod
    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        """Free parameters in the covariances, for BIC and AIC."""

    # ------------------------------------------------ parameter algebra
    @abstractmethod
    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        """Upper factors ``L`` with ``precision = L L^T``; raises :class:`CholeskyFailure`."""

    @abstractmethod
    def covariances_from_precision_cholesky(self, prec_chol: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`precision_cholesky`."""

    @abstractmethod
    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        """``precisions_`` in scikit-learn's layout."""

    @abstractmethod
    def precision_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        """Factors of given precision matrices; raises :class:`CholeskyFailure`."""

    @abstractmethod
    def log_det_cholesky(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray:
        """``log det L_k`` for every component, shape ``(n_components,)`` or broadcastable."""

    @abstractmethod
    def dense(self, covariances: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        """Covariances as ``(n_components, n_features, n_features)`` matrices."""

    @abstractmethod
    def marginal(self, covariances: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Covariances of the sub-vector ``x[features]``, in this family's layout."""

    @abstractmethod
    def rescaled(self, covariances: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Covariances of ``x = center + scale * z`` given those of ``z``.

        Parameters
        ----------
        covariances : ndarray
            Covariances of ``z`` in this family's layout.
        scale : ndarray of shape (n_features,)
            Per-feature scales.

        Returns
        -------
        ndarray
            ``diag(scale) S_k diag(scale)`` for every component, in this family's layout.

        Raises
        ------
        ValueError
            When the family cannot hold the rescaled covariances (one variance
            per component and unequal scales).
        """

    def check_shape(self, array: np.ndarray, n_components: int, n_features: int, what: str) -> None:
        expected = self.covariance_shape(n_components, n_features)
        if array.shape != expected:
            raise ValueError(
                f"The parameter {what!r} should have the shape {expected} for "
                f"covariance_type={self.name!r}, but got {array.shape}."
            )

    @abstractmethod
    def check_positive_definite(self, matrices: np.ndarray, what: str) -> None:
        """Raise ``ValueError`` unless ``matrices`` are symmetric positive definite."""

    # ----------------------------------------------------- E-step kernel
    @abstractmethod
    def kernel(self, n_features: int) -> BlockKernel[Any]:
        """The block kernel for data of ``n_features`` features."""

    # ------------------------------------------------------------ M-step
    def mstep_frame(
        self, s0: np.ndarray, s1: np.ndarray, s2: tuple[np.ndarray, ...], reg: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Means and covariances (frame units) from statistics; ``s0`` includes the
        ``10 eps`` guard. The means are the weighted means unless a family
        estimates them jointly with its covariances."""
        means = s1 / s0[:, None]
        return means, self.covariances_from_stats(s0, means, s2, reg)

    def init_family(self) -> CovarianceFamily:
        """The family whose statistics initialise this one (itself by default)."""
        return self

    def from_init(self, params: Any, rng: np.random.Generator) -> Any:
        """Starting parameters of this family from ``init_family``'s (identity by default)."""
        return params

    @abstractmethod
    def covariances_from_stats(
        self,
        s0: np.ndarray,
        means: np.ndarray,
        s2: tuple[np.ndarray, ...],
        reg: float,
    ) -> np.ndarray:
        """Covariances in frame units; ``s0`` already includes the ``10 eps`` guard
        and ``means`` are ``s1 / s0`` in frame units."""

    @abstractmethod
    def recentered(
        self, s0: np.ndarray, s1: np.ndarray, s2: tuple[np.ndarray, ...], shift: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """``(s1, s2)`` taken about references moved by ``-shift``: statistics of
        ``y - c_k`` become those of ``y - c'_k`` with ``shift[k] = c_k - c'_k`` (exact
        algebra; no row is read again).

        Parameters
        ----------
        s0 : ndarray of shape (n_components,)
        s1 : ndarray of shape (n_components, n_features)
        s2 : tuple of ndarray
            In this family's layout.
        shift : ndarray of shape (n_components, n_features)
        """

    @abstractmethod
    def s2_from_dense(self, moments: np.ndarray) -> tuple[np.ndarray, ...]:
        """``s2`` from per-component dense second moments ``(K, D, D)`` (e.g. expected
        moments with missing values)."""

    @abstractmethod
    def second_moments(
        self, s0: np.ndarray, means: np.ndarray, covariances: np.ndarray, reg: float
    ) -> tuple[np.ndarray, ...]:
        """The ``s2`` for which :meth:`covariances_from_stats` returns ``covariances``
        (frame units): the inverse M-step."""


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """Per-iteration constants of one kernel, in frame units and the data dtype.

    Each kernel extends this with the arrays it reads, named for what they hold.

    Parameters
    ----------
    kernel : BlockKernel
        The kernel that made these values and reads them.
    frame : Frame
        The coordinates the rows are moved into.
    dtype : numpy.dtype
        The dtype the kernel computes in.
    const : ndarray of shape (n_components,), float64
        ``log w_k`` plus every term of ``log N(x | k)`` that does not depend on ``x``.
    refs : ndarray of shape (n_components, n_features), float64, optional
        Every component's reference point in frame units (its mean, rounded to the
        data dtype): the E-step moves rows near component ``a`` to ``y - c_a`` and
        takes every component's statistics about its own reference. ``None``: the
        frame's origin for all.
    source : MixtureParams, optional
        The parameters these values were prepared from, to prepare them again
        about each reference point.
    abouts : dict
        The same constants prepared about each reference point, by component, filled
        on first use so that every chunk scored with these values shares them.
    """

    kernel: BlockKernel[Any]
    frame: Frame
    dtype: np.dtype
    const: np.ndarray
    refs: np.ndarray | None = field(default=None, kw_only=True)
    source: Any = field(default=None, kw_only=True)
    abouts: dict[int, Prepared] = field(default_factory=dict, init=False, repr=False)

    @property
    def family(self) -> CovarianceFamily:
        return self.kernel.family

    @property
    def n_components(self) -> int:
        return int(self.const.shape[0])


PreparedT = TypeVar("PreparedT", bound=Prepared)


class BlockKernel(ABC, Generic[PreparedT]):
    """The E-step of one family at one width of data."""

    __slots__ = ()

    family: CovarianceFamily

    @abstractmethod
    def prepare(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        prec_chol: np.ndarray,
        frame: Frame,
        dtype: np.dtype,
    ) -> PreparedT:
        """Constants for one iteration, in frame units and ``dtype``, from parameters in
        original units (``prec_chol`` in the family's layout)."""

    @abstractmethod
    def features(self, y: np.ndarray) -> np.ndarray:
        """The matrix both GEMMs of the kernel read; ``y`` is ``(n_features, n_rows)``."""

    @abstractmethod
    def log_joint(self, F: np.ndarray, y: np.ndarray, prep: PreparedT) -> tuple[np.ndarray, Any]:
        """``log w_k + log N(x_i | k)`` of shape ``(n_components, n_rows)``, and any
        intermediate result :meth:`add_block_sums` can reuse (or ``None``)."""

    @abstractmethod
    def sums_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        """Shape of the float64 accumulator of :meth:`add_block_sums`."""

    @abstractmethod
    def add_block_sums(
        self,
        acc: np.ndarray,
        F: np.ndarray,
        y: np.ndarray,
        resp: np.ndarray,
        prep: PreparedT | None = None,
        ctx: Any = None,
    ) -> None:
        """``acc += `` this block's first- and second-order sums (``prep`` and ``ctx``
        from :meth:`log_joint`, for kernels whose statistics depend on the parameters)."""

    @abstractmethod
    def split_sums(
        self, acc: np.ndarray, n_components: int, n_features: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The accumulator as ``(s1, s2)`` in :class:`SufficientStats` layout."""

    def context_columns(self, ctx: Any, columns: np.ndarray) -> Any:
        """The part of :meth:`log_joint`'s intermediate result for some rows (the
        columns of the block), for :meth:`add_block_sums` on those rows only."""
        return ctx


def frame_means(means: np.ndarray, frame: Frame) -> np.ndarray:
    """Means in frame units."""
    return (np.asarray(means, dtype=np.float64) - frame.shift) / frame.scale


def log_constants(
    weights: np.ndarray,
    log_det: np.ndarray,
    quad_means: np.ndarray,
    n_features: int,
    frame: Frame,
) -> np.ndarray:
    """``log w_k + log det L'_k - m'^T P' m' / 2 - D/2 log 2 pi - D log scale``."""
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    return (
        log_w
        + log_det
        - 0.5 * quad_means
        - 0.5 * n_features * LOG_2PI
        - n_features * frame.log_scale
    )
