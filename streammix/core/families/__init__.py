"""The registry of covariance families.

Layer: math. A new family is one module here plus one line in ``_REGISTRY`` (or
in ``_PARAMETRISED`` for a family with a structural parameter, such as a rank).
"""

from __future__ import annotations

from functools import cache

from ...errors import CholeskyFailure
from .diag import DiagCovariance
from .full import FullCovariance
from .interface import CovarianceFamily, Prepared
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


__all__ = [
    "COVARIANCE_TYPES",
    "FAMILY_NAMES",
    "CholeskyFailure",
    "CovarianceFamily",
    "Prepared",
    "get_family",
]
