"""The exceptions and warnings streammix raises.

Layer: shared by every layer; imports nothing from streammix.

Every error a user can cause derives from :class:`StreammixError` and from the
built-in class a scikit-learn user would expect (``ValueError`` for bad values,
``TypeError`` for bad types), so ``except ValueError`` keeps working. Messages
name the offending input first and the fix second.
"""

from __future__ import annotations

from typing import Any


class StreammixError(Exception):
    """Base class of every error streammix raises on purpose."""


class InvalidParameterError(StreammixError, ValueError):
    """A constructor or function argument is out of its documented range."""


class InvalidInputError(StreammixError, ValueError):
    """Input data cannot be used: wrong shape, dtype, chunking, or values."""


class InvalidInputTypeError(StreammixError, TypeError):
    """Input data has a type streammix does not accept (sparse, object, ...)."""


class NotFittedError(StreammixError, ValueError, AttributeError):
    """A method that needs fitted parameters was called before ``fit``."""


class DegenerateComponentError(StreammixError, ValueError):
    """A component collapsed or emptied and ``on_degenerate="error"`` was set."""


class ModelFileError(StreammixError, ValueError):
    """A model directory is missing, damaged, or of an unknown schema version."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the lower bound changed by less than ``tol``."""


class ClusterError(StreammixError, RuntimeError):
    """The cluster could not be started or reached."""


class NonFiniteInput(InvalidInputError):
    """Input rows hold NaN or infinity; ``row`` is the first such row when ``first``."""

    def __init__(self, row: int, first: bool = True) -> None:
        where = f"row {row} is the first such row" if first else f"row {row} is one"
        super().__init__(
            f"Input contains NaN or infinity: {where}. "
            "Remove or impute those rows before fitting or scoring."
        )
        self.row = row
        self.first = first

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.row, self.first))


class UnscorableInput(InvalidInputError):
    """A finite row has zero density under every component."""

    def __init__(self, row: int) -> None:
        super().__init__(
            f"Row {row} has zero density under every component (it lies too far from "
            "the model for the data's floating-point type); check the row's scale "
            "against the model's data."
        )
        self.row = row

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.row,))


class OutputConflictError(StreammixError, RuntimeError):
    """The output exists and belongs to another job (or a shrunken input)."""


class StorageError(StreammixError, RuntimeError):
    """A store could not be reached or refused access (endpoint, network, credentials)."""


class PipelineError(InvalidParameterError):
    """A pipeline file is missing, malformed or invalid."""


# Signals of the math layer, caught and turned into the errors above by the layers
# that know the rows' global indices or the user's options.


class InfiniteEntry(ValueError):
    """A row holds an infinite value (NaN is allowed: it marks a missing entry)."""

    def __init__(self, row: int) -> None:
        super().__init__(row)
        self.row = row


class SingularCovariance(ValueError):
    """The data covariance is not positive definite (data on a lower-dimensional subspace)."""


class CholeskyFailure(Exception):
    """Some components' covariances are not positive definite."""

    def __init__(self, components: tuple[int, ...]) -> None:
        super().__init__(components)
        self.components = components


class NonFiniteRow(ValueError):
    """A row holds NaN or infinity; ``row`` is its index within the chunk."""

    def __init__(self, row: int) -> None:
        super().__init__(row)
        self.row = row


class UnscorableRow(ValueError):
    """A finite row has zero density under every component (it underflows)."""

    def __init__(self, row: int) -> None:
        super().__init__(row)
        self.row = row
