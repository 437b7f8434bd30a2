"""Row-wise results of a fitted mixture over chunks: log-likelihoods, labels, probabilities.

Layer: engine (dask + numpy). Numpy input gives numpy output; dask or Zarr
input gives lazy dask arrays with the input's row chunks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.families import Prepared
from ..core.kernel import score_rows
from ..core.params import MixtureParams
from .data import ChunkedData
from .init import params_frame

_DTYPES = {"log_likelihood": np.float64, "label": np.int64, "proba": np.float64}


def _score_chunk(X: np.ndarray, offset: int, prep: Prepared, what: str) -> np.ndarray:
    return score_rows(X, prep, what)


def prepare_for(params: MixtureParams, data: ChunkedData) -> Prepared:
    return params.prepare(params_frame(params, data.dtype), data.dtype)


def score(data: ChunkedData, params: MixtureParams, what: str = "log_likelihood") -> Any:
    """``what`` per row: ``"log_likelihood"``, ``"label"`` or ``"proba"``."""
    tail = (params.n_components,) if what == "proba" else ()
    return data.map_rows(
        _score_chunk, prepare_for(params, data), what, dtype=_DTYPES[what], tail=tail
    )
