"""Row-wise results of a fitted mixture over chunks: log-likelihoods, labels, probabilities.

Layer: engine (dask + numpy). Numpy input gives numpy output; dask or Zarr
input gives lazy dask arrays with the input's row chunks. Log-likelihoods and
probabilities are computed in float64 from the kernel's float64 log-norms and
handed back in the dtype the caller asks for (float32 for a float32 model
scoring float32 rows, as scikit-learn does).
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


def _score_chunk(
    X: np.ndarray, offset: int, prep: Prepared, what: str, dtype: np.dtype
) -> np.ndarray:
    return score_rows(X, prep, what).astype(dtype, copy=False)


def prepare_for(params: MixtureParams, data: ChunkedData) -> Prepared:
    return params.prepare(params_frame(params, data.dtype), data.dtype)


def score(
    data: ChunkedData,
    params: MixtureParams,
    what: str = "log_likelihood",
    dtype: np.dtype | type | None = None,
) -> Any:
    """``what`` per row: ``"log_likelihood"``, ``"label"`` or ``"proba"``.

    ``dtype`` is the floating dtype of log-likelihoods and probabilities
    (float64 when not given); labels are always int64.
    """
    tail = (params.n_components,) if what == "proba" else ()
    out = np.dtype(_DTYPES[what] if what == "label" or dtype is None else dtype)
    return data.map_rows(_score_chunk, prepare_for(params, data), what, out, dtype=out, tail=tail)
