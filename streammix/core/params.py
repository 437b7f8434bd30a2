"""The parameters of a fitted Gaussian mixture, as one immutable value.

Layer: math (numpy/scipy only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .families import CovarianceFamily, Prepared
from .families.interface import frame_means
from .frame import Frame


@dataclass(frozen=True, slots=True, eq=False)
class MixtureParams:
    """Weights, means and covariances of a mixture, in original units.

    Parameters
    ----------
    family : CovarianceFamily
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        In the family's layout (scikit-learn's ``covariances_``).
    precisions_cholesky : ndarray
        Upper factors ``L`` with ``precision = L L^T``, same layout.
    """

    family: CovarianceFamily
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @classmethod
    def from_covariances(
        cls,
        family: CovarianceFamily,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
    ) -> MixtureParams:
        """Parameters with their precision factors computed; raises ``CholeskyFailure``."""
        covariances = np.asarray(covariances, dtype=np.float64)
        return cls(
            family,
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            covariances,
            family.precision_cholesky(covariances),
        )

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    @property
    def precisions(self) -> np.ndarray:
        return self.family.precisions(self.precisions_cholesky)

    def dense_covariances(self) -> np.ndarray:
        """Covariances as ``(n_components, n_features, n_features)``."""
        return self.family.dense(self.covariances, self.n_components, self.n_features)

    def to_full(self) -> MixtureParams:
        """The same mixture with dense ("full") covariances."""
        dense = self.family.dense_family()
        if dense is self.family:
            return self
        return MixtureParams.from_covariances(
            dense, self.weights, self.means, self.dense_covariances()
        )

    def n_parameters(self) -> int:
        """Free parameters: covariances, means and ``n_components - 1`` weights."""
        k, d = self.means.shape
        return self.family.n_covariance_parameters(k, d) + k * d + k - 1

    def prepare(self, frame: Frame, dtype: np.dtype | type) -> Prepared:
        """Kernel constants for rows of ``dtype`` in ``frame``, for the block kernel the
        family chooses for this number of features."""
        dt = np.dtype(dtype)
        frame = frame.for_dtype(dt)
        prep = self.family.kernel(self.n_features).prepare(
            self.weights, self.means, self.precisions_cholesky, frame, dt
        )
        # Each component's statistics are taken about its mean rounded to the data
        # dtype, so that a row minus it is exact in that dtype.
        refs = frame_means(self.means, frame).astype(dt).astype(np.float64)
        return replace(prep, refs=refs, source=self)

    def prepare_about(self, prep: Prepared, ref: np.ndarray) -> Prepared:
        """``prep`` for rows moved to ``y - ref`` (frame units): the same kernel
        constants in the frame whose origin is ``ref``, exactly (the frame's scale
        is a power of two and ``ref`` a value of the data dtype)."""
        frame = Frame(prep.frame.shift + prep.frame.scale * ref, prep.frame.scale)
        return self.family.kernel(self.n_features).prepare(
            self.weights, self.means, self.precisions_cholesky, frame, prep.dtype
        )

    def spread(self) -> float:
        """A length of the order of the components' spread (for choosing a frame)."""
        dense = self.dense_covariances()
        return float(np.sqrt(np.mean(np.trace(dense, axis1=1, axis2=2)) / self.n_features))

    def allclose(self, other: MixtureParams, rtol: float = 1e-9, atol: float = 0.0) -> bool:
        return (
            self.family is other.family
            and self.means.shape == other.means.shape
            and all(
                np.allclose(a, b, rtol=rtol, atol=atol)
                for a, b in (
                    (self.weights, other.weights),
                    (self.means, other.means),
                    (self.covariances, other.covariances),
                )
            )
        )
