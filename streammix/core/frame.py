"""The working coordinates of a fit: ``y = (x - shift) / scale``.

Layer: math (numpy only).

EM in raw coordinates suffers twice: second moments of data far from the origin
cancel catastrophically (``E[xx^T] - mu mu^T`` with ``|mu| >> sigma``), and
squares of huge values overflow. Every kernel therefore works on rows moved to a
frame centred near the data with a spread near one. ``scale`` is a power of two,
so dividing by it is exact and only the subtraction of ``shift`` rounds.
Parameters stay in original units; :class:`Frame` converts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

# Covariances are stored in original units; beyond this spread their entries
# (scale ** 2) would overflow float64.
_MAX_SCALE_EXPONENT = 500


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """A reference point and a power-of-two scale.

    Parameters
    ----------
    shift : ndarray of shape (n_features,)
    scale : float
        A power of two.
    """

    shift: np.ndarray
    scale: float

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return self.scale == other.scale and (
            self.shift is other.shift or np.array_equal(self.shift, other.shift)
        )

    def __hash__(self) -> int:
        return hash((self.scale, self.shift.tobytes()))

    @property
    def n_features(self) -> int:
        return int(self.shift.shape[0])

    def to_frame(self, X: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Rows moved into the frame, transposed to ``(n_features, n_rows)``, in ``dtype``."""
        y = np.subtract(X, self.shift.astype(dtype, copy=False), dtype=dtype)
        if self.scale != 1.0:
            y *= dtype.type(1.0 / self.scale)
        return np.ascontiguousarray(y.T)

    @property
    def log_scale(self) -> float:
        return math.log(self.scale)

    def for_dtype(self, dtype: np.dtype | type) -> Frame:
        """This frame with its shift rounded to ``dtype``, so kernels in that dtype agree."""
        if np.dtype(dtype) != np.float32:
            return self
        rounded = self.shift.astype(np.float32).astype(np.float64)
        if np.array_equal(rounded, self.shift):
            return self
        return Frame(shift=rounded, scale=self.scale)


def make_frame(sample: np.ndarray, dtype: np.dtype | type = np.float64) -> Frame:
    """A frame centred on the sample mean with a power-of-two scale near its spread.

    For float32 data the shift is rounded to float32, so that the kernels'
    float32 subtraction and the float64 conversions agree on the same point.

    Parameters
    ----------
    sample : ndarray of shape (n_rows, n_features)
        Finite rows representative of the data (all of it, or a sample).
    """
    sample = np.asarray(sample, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        shift = sample.mean(axis=0)
        if not np.all(np.isfinite(shift)):
            # The sum of huge values can overflow; the median of a column cannot.
            shift = np.median(sample, axis=0)
        # A second pass removes the rounding of the first (exact for identical rows).
        shift = shift + (sample - shift).mean(axis=0)
        spread = float(np.sqrt(np.mean((sample - shift) ** 2)))
    if not math.isfinite(spread):
        spread = float(np.max(np.abs(sample - shift)))
    exponent = 0 if spread == 0.0 else round(math.log2(spread))
    if exponent > _MAX_SCALE_EXPONENT:
        raise InvalidInputError(
            f"The data spread (about 2**{exponent}) is too large: covariances in these units "
            "would overflow float64. Rescale the data, e.g. divide it by its largest value."
        )
    frame = Frame(shift=shift, scale=math.ldexp(1.0, max(exponent, -_MAX_SCALE_EXPONENT)))
    return frame.for_dtype(dtype)


def frame_of_parameters(weights: np.ndarray, means: np.ndarray, spread: float) -> Frame:
    """A frame for known parameters: centred on the mixture mean, scaled by ``spread``."""
    shift = np.asarray(weights, dtype=np.float64) @ np.asarray(means, dtype=np.float64)
    if not np.all(np.isfinite(shift)):
        shift = np.median(np.asarray(means, dtype=np.float64), axis=0)
    exponent = 0 if not (spread > 0.0 and math.isfinite(spread)) else round(math.log2(spread))
    exponent = int(np.clip(exponent, -_MAX_SCALE_EXPONENT, _MAX_SCALE_EXPONENT))
    return Frame(shift=shift, scale=math.ldexp(1.0, exponent))
