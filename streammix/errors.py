"""The exceptions and warnings streammix raises.

Layer: shared by every layer; imports nothing from streammix.

Every error a user can cause derives from :class:`StreammixError` and from the
built-in class a scikit-learn user would expect (``ValueError`` for bad values,
``TypeError`` for bad types), so ``except ValueError`` keeps working. Messages
name the offending input first and the fix second.
"""

from __future__ import annotations


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
