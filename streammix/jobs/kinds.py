"""Kinds of option values: how each is written in TOML and as text, and its bounds.

Layer: edges. A value reaches a job typed, from a TOML file (a pipeline step or a
``--config`` table), or as text, from a command line or an environment variable.
A :class:`Kind` accepts both and refuses anything else with a :class:`BadValue`,
which each front end words in its own vocabulary (``--n-components`` or
``n_components``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class BadValue(ValueError):
    """A value that is not what its option takes.

    Parameters
    ----------
    value : the value as given
    requirement : what it must be, e.g. ``"an integer"`` or ``"in [1, inf)"``
    secret : never repeat the value (it may hold credentials)
    """

    def __init__(self, value: Any, requirement: str, *, secret: bool = False) -> None:
        self.value = value
        self.requirement = requirement
        self.secret = secret
        super().__init__(self.sentence())

    def sentence(self) -> str:
        """``'4x' is not an integer.``: for a message that names the option first."""
        shown = "the value" if self.secret else repr(self.value)
        return f"{shown} is not {self.requirement}."

    def predicate(self) -> str:
        """``must be an integer; got '4x'``: to follow the option's name."""
        got = "" if self.secret else f"; got {self.value!r}"
        return f"must be {self.requirement}{got}"


class Kind:
    """Text: a string in TOML, the text itself on a command line."""

    metavar = "TEXT"
    noun = "a string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)

    def from_toml(self, value: Any) -> Any:
        """A typed value (TOML, a default): checked, never converted from text."""
        if not self.accepts(value):
            raise BadValue(value, self.noun)
        return value

    def from_text(self, text: str) -> Any:
        """A value written as text (a command line, an environment variable)."""
        return self.from_toml(text)

    def show(self, value: Any) -> str:
        """A value as a user would write it (for help texts)."""
        return str(value)


class LocationKind(Kind):
    """A local path or a URL; a pipeline resolves it relative to its own file."""

    metavar = "PATH"
    noun = "a path or URL string"


INT64 = 2**63
"""Integers stay within int64: counts and seeds go to numpy, where a larger one
overflows."""


class IntegerKind(Kind):
    metavar = "INTEGER"
    noun = "an integer of at most 19 digits"

    def accepts(self, value: Any) -> bool:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok and -INT64 <= value < INT64

    def from_text(self, text: str) -> Any:
        try:
            value = int(text.strip())
        except ValueError:
            raise BadValue(text, self.noun) from None
        return self.from_toml(value)


class NumberKind(Kind):
    """A finite number: no option means anything by NaN or infinity (a threshold of
    ``inf`` flags every row, a ``reg_covar`` of ``inf`` fails deep in a fit)."""

    metavar = "FLOAT"
    noun = "a finite number"

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        try:
            return math.isfinite(value)
        except OverflowError:  # an integer beyond any float
            return False

    def from_toml(self, value: Any) -> Any:
        return float(super().from_toml(value))

    def from_text(self, text: str) -> Any:
        try:
            return self.from_toml(float(text))
        except (ValueError, BadValue):
            raise BadValue(text, self.noun) from None

    def show(self, value: Any) -> str:
        return f"{value:g}"


class BooleanKind(Kind):
    metavar = "BOOLEAN"
    noun = "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def from_text(self, text: str) -> Any:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise BadValue(text, self.noun)

    def show(self, value: Any) -> str:
        return "true" if value else "false"


class SwitchOrCountKind(Kind):
    """``true``, ``false`` or a count (online EM's ``averaging``)."""

    metavar = "BOOL|INT"
    noun = "true, false or an integer"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool | int)

    def from_text(self, text: str) -> Any:
        try:
            return BOOLEAN.from_text(text)
        except BadValue:
            pass
        try:
            return INTEGER.from_text(text)
        except BadValue:
            raise BadValue(text, self.noun) from None

    def show(self, value: Any) -> str:
        return BOOLEAN.show(value) if isinstance(value, bool) else str(value)


class WordOrNumberKind(Kind):
    """A named rule or a number (a KDE bandwidth); the option's parser tells which."""

    metavar = "TEXT|FLOAT"
    noun = "a string or a number"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) or NUMBER.accepts(value)


class NamesKind(Kind):
    """Names: ``"a,b,c"`` as text, a string or an array of strings in TOML."""

    metavar = "A,B,..."
    noun = "a comma-separated list of names"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, list | tuple):
            return all(isinstance(v, str) for v in value)
        return isinstance(value, str)

    def from_toml(self, value: Any) -> Any:
        super().from_toml(value)
        parts = value.split(",") if isinstance(value, str) else value
        names = tuple(p.strip() for p in parts if p.strip())
        if not names:
            raise BadValue(value, "a list of at least one name")
        return names

    def show(self, value: Any) -> str:
        return ",".join(value) if isinstance(value, list | tuple) else str(value)


class JsonObjectKind(Kind):
    """A JSON object as text, a table in TOML. Never repeated in messages: it may
    hold credentials."""

    metavar = "JSON"
    noun = "a JSON object"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Mapping)

    def from_toml(self, value: Any) -> Any:
        if not self.accepts(value):
            raise BadValue(value, self.noun, secret=True)
        return dict(value)

    def from_text(self, text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise BadValue(
                text, f"{self.noun} ({err.msg} at character {err.pos})", secret=True
            ) from None
        return self.from_toml(value)


TEXT = Kind()
LOCATION = LocationKind()
INTEGER = IntegerKind()
NUMBER = NumberKind()
BOOLEAN = BooleanKind()
SWITCH_OR_COUNT = SwitchOrCountKind()
WORD_OR_NUMBER = WordOrNumberKind()
NAMES = NamesKind()
JSON_OBJECT = JsonObjectKind()


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


@dataclass(frozen=True, slots=True)
class Bounds:
    """An interval of numbers; ``None`` is unbounded.

    Examples
    --------
    >>> str(Bounds(0, 0.5, low_open=True))
    '(0, 0.5]'
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )

    def __str__(self) -> str:
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else _num(self.low)
        high = "inf" if self.high is None else _num(self.high)
        return f"{left}{low}, {high}{right}"


def at_least(low: float) -> Bounds:
    """``[low, inf)``."""
    return Bounds(low)
