"""Parameter rules declared as data, checked once at the boundary.

Layer: shared by every layer; imports only :mod:`streammix.errors`.

A rule set maps a parameter name to the constraints it may satisfy; a value is
accepted when it satisfies any of them. Every violation produces one message
format::

    The 'n_components' parameter of GaussianMixture must be an int in [1, inf).
    Got 0 instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import InvalidParameterError


class Constraint(Protocol):
    def accepts(self, value: Any) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Interval:
    """A number in an interval; ``kind`` is ``"int"`` or ``"real"``."""

    kind: str
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool | np.bool_):
            return False
        if self.kind == "int":
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real):
            return False
        v = float(value)
        if math.isnan(v):
            return False
        open_low = self.closed in ("right", "neither")
        open_high = self.closed in ("left", "neither")
        below = self.low is not None and (v < self.low or (v == self.low and open_low))
        above = self.high is not None and (v > self.high or (v == self.high and open_high))
        return not (below or above)

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else _num(self.low)
        high = "inf" if self.high is None else _num(self.high)
        noun = "an int" if self.kind == "int" else "a float"
        return f"{noun} in {left}{low}, {high}{right}"


@dataclass(frozen=True, slots=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def describe(self) -> str:
        return "a str among {" + ", ".join(repr(v) for v in self.values) + "}"


@dataclass(frozen=True, slots=True)
class IsNone:
    def accepts(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "None"


@dataclass(frozen=True, slots=True)
class IsBool:
    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool | np.bool_)

    def describe(self) -> str:
        return "a bool"


@dataclass(frozen=True, slots=True)
class IsArrayLike:
    def accepts(self, value: Any) -> bool:
        return hasattr(value, "__array__") or isinstance(value, list | tuple)

    def describe(self) -> str:
        return "an array-like"


@dataclass(frozen=True, slots=True)
class IsRandomState:
    def accepts(self, value: Any) -> bool:
        return value is None or (
            isinstance(value, numbers.Integral | np.random.Generator | np.random.RandomState)
            and not isinstance(value, bool)
        )

    def describe(self) -> str:
        return "an int, a numpy Generator or RandomState, or None"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _describe_all(constraints: Sequence[Constraint]) -> str:
    parts = [c.describe() for c in constraints]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def check_param(owner: str, name: str, value: Any, constraints: Sequence[Constraint]) -> None:
    """Raise :class:`InvalidParameterError` unless ``value`` meets one constraint."""
    if any(c.accepts(value) for c in constraints):
        return
    raise InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {_describe_all(constraints)}. "
        f"Got {value!r} instead."
    )


def check_params(
    owner: str, rules: Mapping[str, Sequence[Constraint]], values: Mapping[str, Any]
) -> None:
    """Check every parameter named in ``rules`` against its constraints."""
    for name, constraints in rules.items():
        check_param(owner, name, values[name], constraints)
