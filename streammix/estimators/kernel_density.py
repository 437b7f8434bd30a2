"""``KernelDensity``: a Gaussian kernel density estimate over data of any size.

Layer: edges. Validates arguments, turns input into chunks, and hands the work
to :mod:`streammix.engine.kde_passes`; the math lives in :mod:`streammix.core.kde_math`.
A KDE is the mixture with one component per training row, so the fitted model
keeps its training data (in memory, or as the lazy array it was read from) and
model files either hold those rows or point to the Zarr array they came from.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from .._random import as_generator
from .._validation import Constraint, Interval, IsRandomState, Options, check_params
from ..core.kde_math import BANDWIDTH_RULES, KernelPrep, kernel_cholesky
from ..engine import kde_passes as engine_kde
from ..engine.data import ChunkedData
from ..errors import InvalidInputError, ModelFileError, SingularCovariance
from ..io.inputs import DEFAULT_ARRAY, as_chunked
from ..io.location import Location, as_location, is_location
from ..io.modelfile import write_model_dir
from ..io.modelmeta import check_model_files
from ..io.weights import as_weighted, join
from .estimator import Estimator

# A model directory holds the reference rows up to this many values (80 MB in float64);
# beyond it, it can only point to the Zarr array the model was fitted from.
MAX_SAVED_VALUES = 10_000_000


class KernelDensity(Estimator):
    """Gaussian kernel density estimate, scored blockwise over chunked data.

    ``X`` may be a numpy array, a dask array, a ``zarr.Array`` or a path to a
    Zarr array (a group path uses its array ``X``). Scoring never forms the
    query x reference matrix: every pair of (query chunk, training chunk) is
    reduced to one log-sum-exp per query row, and those are combined by a tree
    reduction, so lazy training data are read chunk by chunk.

    Parameters
    ----------
    bandwidth : {"scott", "silverman"} or float, default="scott"
        A rule gives the kernel covariance of ``scipy.stats.gaussian_kde``: the
        unbiased data covariance times ``factor**2``, with
        ``factor = n ** (-1 / (d + 4))`` ("scott") or
        ``(n * (d + 2) / 4) ** (-1 / (d + 4))`` ("silverman"). A float ``h`` is
        the standard deviation of an isotropic kernel (covariance ``h**2 I``), as
        in scikit-learn's ``KernelDensity(bandwidth=h)``. Note that
        scikit-learn's *string* bandwidths are isotropic (``h = factor``) and
        ignore the data covariance; here they follow scipy.

    Attributes
    ----------
    n_features_in_ : int
    n_samples_fit_ : int
        Training (reference) rows.
    mean_ : ndarray of shape (n_features,)
        Mean of the training rows; scoring works in coordinates centred on it.
    factor_ : float
        The rule's factor, or ``h`` for a float bandwidth.
    covariance_ : ndarray of shape (n_features, n_features)
        Kernel covariance.
    cholesky_ : ndarray of shape (n_features, n_features)
        Its lower Cholesky factor ``L`` (``covariance_ = L L^T``).
    reference_ : ndarray or dask.array.Array of shape (n_samples_fit_, n_features)
        The training rows (lazy for dask or Zarr input; not copied into memory).
    reference_path_ : str or None
        Absolute path (or URL) of the training Zarr when ``fit`` was given a location.

    Examples
    --------
    >>> import numpy as np
    >>> from streammix.kde import KernelDensity
    >>> X = np.random.default_rng(0).normal(size=(1000, 2))
    >>> kde = KernelDensity(bandwidth="scott").fit(X)
    >>> kde.score_samples(np.zeros((1, 2))).round(2)
    array([-1.96])
    >>> kde.sample(5, random_state=0).shape
    (5, 2)
    """

    _estimator_type = "density_estimator"
    _rules: ClassVar[dict[str, list[Constraint]]] = {
        "bandwidth": [Options(BANDWIDTH_RULES), Interval("real", 0.0, math.inf, "neither")],
    }
    _sample_rules: ClassVar[dict[str, list[Constraint]]] = {
        "n_samples": [Interval("int", 1, None, "left")],
        "random_state": [IsRandomState()],
    }

    def __init__(self, bandwidth: str | float = "scott") -> None:
        self.bandwidth = bandwidth

    # -------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KernelDensity:
        """Summarise the training rows and set the kernel covariance.

        One pass over the data (count, mean, covariance); the rows themselves
        are kept by reference for scoring and sampling.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, zarr.Array or path
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights of the training rows (numpy, dask, Zarr, or a Parquet
            column; see :mod:`streammix.io.weights`): each row's kernel counts its
            weight and the density is normalised by their sum. The bandwidth rules
            take the weighted covariance and the sum of the weights as ``n``, so
            integer weights give the KDE of the rows repeated.

        Returns
        -------
        self
        """
        self.check_params()
        data = as_weighted(X, sample_weight)
        given = X.array if isinstance(X, ChunkedData) else X
        if (
            not data.is_lazy
            and not data.weighted
            and not isinstance(given, list | tuple)
            and np.may_share_memory(data.array, given)
        ):
            # The model keeps the rows: later changes to the caller's array must not move it.
            data = replace(data, array=data.array.copy())
        stats = engine_kde.moment_stats(data)
        bandwidth = self.bandwidth
        if isinstance(bandwidth, str) and data.n_rows < 2:
            raise InvalidInputError(
                f"KernelDensity(bandwidth={bandwidth!r}) needs at least 2 samples to estimate "
                f"the data covariance, got n_samples = {data.n_rows}. Pass more rows or a "
                "float bandwidth."
            )
        try:
            cov, chol, factor = kernel_cholesky(
                bandwidth if isinstance(bandwidth, str) else float(bandwidth), stats
            )
        except SingularCovariance:
            raise InvalidInputError(
                f"The data covariance is singular (the rows lie in a lower-dimensional "
                f"subspace, e.g. a constant or duplicated feature), so bandwidth={bandwidth!r} "
                "cannot be scaled from it. Drop the dependent features or pass a float "
                "bandwidth."
            ) from None
        path = str(as_location(X)) if is_location(X) else None
        self._adopt(data, stats.location(), cov, chol, factor, path, stats.n)
        return self

    def _adopt(
        self,
        data: ChunkedData,
        mean: np.ndarray,
        covariance: np.ndarray,
        cholesky: np.ndarray,
        factor: float,
        path: str | None,
        weight_total: float,
    ) -> None:
        self._reference = data
        self.reference_ = data.features().array
        self.reference_path_ = path
        self.n_samples_fit_ = data.n_rows
        # the density's normaliser: the rows, or the sum of their weights
        self._weight_total = float(weight_total)
        self.mean_ = mean
        self.factor_ = float(factor)
        self.covariance_ = covariance
        self.cholesky_ = cholesky
        self.n_features_in_ = data.n_features

    # ---------------------------------------------------------------- scoring
    def _prep(self) -> KernelPrep:
        return KernelPrep.build(self.mean_, self.cholesky_, self._weight_total)

    def _query(self, X: Any) -> ChunkedData:
        self.check_fitted()
        data = as_chunked(X)
        self.check_n_features(data.n_features)
        return data

    def score_samples(self, X: Any) -> Any:
        """Log-density of every row, ``log p(x)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, zarr.Array or path

        Returns
        -------
        ndarray of shape (n_samples,) for numpy input; a lazy dask array chunked
        like the input's rows for dask or Zarr input.
        """
        data = self._query(X)
        return engine_kde.score(data, self._reference, self._prep())

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-density of the rows (computed, also for lazy input)."""
        data = self._query(X)
        return engine_kde.mean_score(data, self._reference, self._prep())

    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """Draw rows: a training row chosen uniformly plus Gaussian kernel noise.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, Generator, RandomState or None

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
        """
        self.check_fitted()
        owner = f"{type(self).__name__}.sample"
        check_params(
            owner, self._sample_rules, {"n_samples": n_samples, "random_state": random_state}
        )
        rng = as_generator(random_state)
        return engine_kde.sample(self._reference, self.cholesky_, int(n_samples), rng)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str] | Location) -> str:
        """Write the fitted model to the directory ``path`` (no pickle); see
        :meth:`to_files`. Returns the path; load it with :func:`streammix.load`."""
        meta, arrays = self.to_files()
        return write_model_dir(path, meta, arrays)

    def to_files(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The model as its files' contents: JSON metadata and named arrays.

        The training rows are stored in the directory when they hold at most
        ``MAX_SAVED_VALUES`` values. Larger training data are not copied: the
        model records the path of the Zarr array it was fitted from and re-opens
        it (read-only) on load; a model fitted from larger in-memory or dask data
        cannot be saved.

        Raises
        ------
        ModelFileError
            When the training data are too large to store and have no Zarr path.
        """
        self.check_fitted()
        ref = self._reference
        n_values = ref.n_rows * ref.n_features
        arrays: dict[str, np.ndarray] = {
            "mean": self.mean_,
            "covariance": self.covariance_,
            "cholesky": self.cholesky_,
        }
        stored = n_values <= MAX_SAVED_VALUES
        if stored:
            arrays["reference"], weights = ref.to_numpy_weighted()
        else:
            weights = ref.weight_column()
        if weights is not None:
            arrays["sample_weight"] = weights
        if not stored and self.reference_path_ is None:
            raise ModelFileError(
                f"Cannot save this KernelDensity: its training data ({ref.n_rows} x "
                f"{ref.n_features} = {n_values} values) exceed the {MAX_SAVED_VALUES} values a "
                "model directory holds, and they were not read from a Zarr path the model "
                "could point to. Write the training data to a Zarr array and fit from its "
                "path, e.g. KernelDensity().fit('train.zarr'), then save."
            )
        meta = {
            "kind": type(self).__name__,
            "n_features": int(self.n_features_in_),
            "n_samples": int(self.n_samples_fit_),
            "hyperparameters": {"bandwidth": self.bandwidth},
            "factor": self.factor_,
            "reference": {
                "stored": stored,
                "path": self.reference_path_,
                "array": DEFAULT_ARRAY,
                "dtype": ref.dtype.str,
                "weighted": ref.weighted,
            },
        }
        return meta, arrays

    @classmethod
    def from_files(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> KernelDensity:
        """Rebuild a fitted estimator from its files' contents (see :meth:`to_files`)."""
        check_model_files(meta, arrays)
        hyper = dict(meta.get("hyperparameters") or {})
        est = cls(bandwidth=hyper["bandwidth"]).check_params()
        n, d = int(meta["n_samples"]), int(meta["n_features"])
        expected = {"mean": (d,), "covariance": (d, d), "cholesky": (d, d)}
        for name, shape in expected.items():
            arr = arrays[name]
            if arr.shape != shape or not np.all(np.isfinite(arr)):
                raise ModelFileError(
                    f"{name} has shape {arr.shape} (expected {shape}) or holds NaN/infinity"
                )
        chol = arrays["cholesky"]
        if (
            np.any(np.triu(chol, 1) != 0.0)
            or np.any(np.diag(chol) <= 0.0)
            or not np.allclose(chol @ chol.T, arrays["covariance"], rtol=1e-10, atol=0.0)
        ):
            raise ModelFileError("cholesky is not the lower Cholesky factor of covariance")
        info = meta["reference"]
        path = info.get("path")
        if info.get("stored"):
            rows = arrays["reference"]
            if rows.shape != (n, d) or not np.all(np.isfinite(rows)):
                raise ModelFileError(
                    f"reference has shape {rows.shape} (expected {(n, d)}) or holds NaN/infinity"
                )
            data = ChunkedData.from_numpy(rows, weights=arrays.get("sample_weight"))
        else:
            data = _reopen(str(path), str(info.get("array", DEFAULT_ARRAY)), (n, d))
            if "sample_weight" in arrays:
                data = join(data, arrays["sample_weight"])
        weights = arrays.get("sample_weight")
        total = float(n) if weights is None else float(np.sum(weights, dtype=np.float64))
        est._adopt(
            data, arrays["mean"], arrays["covariance"], chol, float(meta["factor"]), path, total
        )
        return est


def _reopen(path: str, array: str, shape: tuple[int, int]) -> ChunkedData:
    """The training Zarr of a model that points to it, read-only, with its shape checked."""
    try:
        data = as_chunked(path, array=array)
    except InvalidInputError as err:
        raise ModelFileError(
            f"The model's training data at '{path}' cannot be opened: {err} A KernelDensity "
            "saved without its rows needs that Zarr array, unchanged."
        ) from None
    if (data.n_rows, data.n_features) != shape:
        raise ModelFileError(
            f"The model's training data at '{path}' have shape {(data.n_rows, data.n_features)}, "
            f"but the model was fitted on shape {shape}; the Zarr array changed since fitting. "
            "Refit the model."
        )
    return data
