"""streammix: Gaussian mixture models for data larger than memory.

Fit, score, sample and flag outliers with Gaussian mixtures over chunked
Zarr, Parquet or dask arrays, on a laptop or a Dask cluster; data and models
may live on local disks or object stores (``s3://``, ``gs://``, ``az://``).
Importing streammix starts nothing: no client, no cluster, no threads.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    ConvergenceWarning,
    DegenerateComponentError,
    InvalidInputError,
    InvalidParameterError,
    ModelFileError,
    NotFittedError,
    StorageError,
    StreammixError,
)
from .estimators import (
    BayesianGaussianMixture,
    GaussianMixture,
    KernelDensity,
    OnlineGaussianMixture,
    OutlierDetector,
    Selection,
    load,
    select,
)
from .io.location import Location, location
from .io.modelfile import publish

try:
    __version__ = version("streammix")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "BayesianGaussianMixture",
    "ConvergenceWarning",
    "DegenerateComponentError",
    "GaussianMixture",
    "InvalidInputError",
    "InvalidParameterError",
    "KernelDensity",
    "Location",
    "ModelFileError",
    "NotFittedError",
    "OnlineGaussianMixture",
    "OutlierDetector",
    "Selection",
    "StorageError",
    "StreammixError",
    "__version__",
    "load",
    "location",
    "publish",
    "select",
]
