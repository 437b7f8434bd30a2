"""The estimators users import, and loading any of them from its files.

Layer: edges. Each estimator writes its model as JSON metadata plus arrays
(``to_files``) and rebuilds itself from them (``from_files``); :func:`load`
reads a model directory (or the version a published pointer names) and picks
the class by the ``kind`` recorded in it.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ModelFileError
from ..io.location import Location, as_location
from ..io.modelfile import read_model_dir
from .bayesian_mixture import BayesianGaussianMixture
from .density import MixtureDensity
from .gaussian_mixture import GaussianMixture
from .kernel_density import KernelDensity
from .online_mixture import OnlineGaussianMixture
from .outlier_detector import OutlierDetector
from .selection import Selection, select

# The kind written in a model's metadata -> the class that reads it.
KINDS: dict[str, Any] = {
    cls.__name__: cls
    for cls in (
        GaussianMixture,
        OnlineGaussianMixture,
        OutlierDetector,
        KernelDensity,
        BayesianGaussianMixture,
    )
}


def load(path: str | os.PathLike[str] | Location) -> Any:
    """Load any streammix model saved with ``save`` (or the version a pointer names).

    Examples
    --------
    >>> import numpy as np, streammix, tempfile, os
    >>> gm = streammix.GaussianMixture.from_parameters([1.0], [[0.0, 0.0]], [np.eye(2)])
    >>> d = os.path.join(tempfile.mkdtemp(), "model")
    >>> _ = gm.save(d)
    >>> float(streammix.load(d).score_samples(np.zeros((1, 2)))[0])  # doctest: +ELLIPSIS
    -1.83787...
    """
    meta, arrays = read_model_dir(path)
    kind = meta.get("kind")
    cls = KINDS.get(str(kind))
    if cls is None:
        raise ModelFileError(f"The model at '{as_location(path)}' is of unknown kind {kind!r}.")
    try:
        return cls.from_files(meta, arrays)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"The model at '{as_location(path)}' is invalid: {err}") from None


__all__ = [
    "KINDS",
    "BayesianGaussianMixture",
    "GaussianMixture",
    "KernelDensity",
    "MixtureDensity",
    "OnlineGaussianMixture",
    "OutlierDetector",
    "Selection",
    "load",
    "select",
]
