"""The registry of covariance families.

Layer: math. A new family is one module here plus one line in ``_REGISTRY``.
"""

from __future__ import annotations

from .base import CholeskyFailure, CovarianceFamily, Prepared
from .diag import DiagCovariance
from .full import FullCovariance
from .spherical import SphericalCovariance
from .tied import TiedCovariance

_REGISTRY: dict[str, CovarianceFamily] = {
    f.name: f for f in (FullCovariance(), TiedCovariance(), DiagCovariance(), SphericalCovariance())
}

FAMILY_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_family(name: str) -> CovarianceFamily:
    """The family registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown covariance_type {name!r}; expected one of {', '.join(FAMILY_NAMES)}."
        ) from None


__all__ = ["FAMILY_NAMES", "CholeskyFailure", "CovarianceFamily", "Prepared", "get_family"]
