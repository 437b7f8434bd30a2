"""The registry of covariance families.

Layer: math. A new family is one module here plus one line in ``_REGISTRY`` (or
in ``_PARAMETRISED`` for a family with a structural parameter, such as a rank).
:func:`get_family` looks a family up by name (and structural parameter);
:func:`family_for` also reads a structural parameter that is not given off
covariances in the family's layout. Everything else about a family is asked of
the family itself (:class:`CovarianceFamily`), never decided by its name.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import ArrayLike

from ...errors import CholeskyFailure
from .diag import DiagCovariance
from .full import FullCovariance
from .interface import BlockKernel, CovarianceFamily, Prepared
from .lowrank import LowRankCovariance
from .spherical import SphericalCovariance
from .tied import TiedCovariance

_REGISTRY: dict[str, CovarianceFamily] = {
    f.name: f for f in (FullCovariance(), TiedCovariance(), DiagCovariance(), SphericalCovariance())
}
_PARAMETRISED: dict[str, type[LowRankCovariance]] = {"lowrank": LowRankCovariance}

FAMILY_NAMES: tuple[str, ...] = tuple(_REGISTRY)
COVARIANCE_TYPES: tuple[str, ...] = FAMILY_NAMES + tuple(_PARAMETRISED)


@cache
def _parametrised(name: str, rank: int) -> CovarianceFamily:
    return _PARAMETRISED[name](rank)


def get_family(name: str, rank: int | None = None) -> CovarianceFamily:
    """The family registered under ``name`` (with its ``rank`` for ``"lowrank"``)."""
    if name in _PARAMETRISED:
        if rank is None or int(rank) < 1:
            raise ValueError(f"covariance_type={name!r} needs a rank of at least 1 (rank=...).")
        return _parametrised(name, int(rank))
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown covariance_type {name!r}; expected one of {', '.join(COVARIANCE_TYPES)}."
        ) from None


def family_for(
    name: str, covariances: ArrayLike | None = None, rank: int | None = None
) -> CovarianceFamily:
    """The family registered under ``name``, reading a structural parameter that is
    not given off ``covariances``.

    Parameters
    ----------
    name : str
        One of :data:`COVARIANCE_TYPES`.
    covariances : array-like, optional
        Covariances in the family's layout; a ``"lowrank"`` array of shape
        ``(n_components, n_features, rank + 1)`` gives the rank.
    rank : int, optional
        The rank of a ``"lowrank"`` family; wins over ``covariances``.

    Raises
    ------
    ValueError
        As :func:`get_family`, for an unknown name or a rank that is neither
        given nor readable.

    Examples
    --------
    >>> import numpy as np
    >>> family_for("lowrank", np.ones((2, 5, 3)))
    <covariance family 'lowrank' (rank 2)>
    >>> family_for("diag", np.ones((2, 5)))
    <covariance family 'diag'>
    """
    if rank is None and covariances is not None and name in _PARAMETRISED:
        rank = _PARAMETRISED[name].rank_from_covariances(np.asarray(covariances))
    return get_family(name, rank)


__all__ = [
    "COVARIANCE_TYPES",
    "FAMILY_NAMES",
    "BlockKernel",
    "CholeskyFailure",
    "CovarianceFamily",
    "Prepared",
    "family_for",
    "get_family",
]
