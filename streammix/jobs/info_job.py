"""What a saved model is: the ``info`` job.

Layer: edges.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..core.variational import EFFECTIVE_WEIGHT, effective_components
from ..estimators import load
from ..io.location import Location, StorageOptions, as_location
from ..io.modelfile import model_bytes, read_model_dir, resolve_model


def model_summary(
    path: str | os.PathLike[str] | Location, storage_options: StorageOptions | None = None
) -> dict[str, Any]:
    """What ``info`` shows about a model directory (or the version a pointer names)."""
    loc = as_location(path, storage_options)
    src = resolve_model(loc)
    meta, _ = read_model_dir(src)
    model = load(src)
    fit = meta.get("fit") or {}
    summary: dict[str, Any] = {
        "model": str(loc),
        "kind": meta.get("kind"),
        "schema_version": meta.get("schema_version"),
        "covariance_type": meta.get("covariance_type"),
        "n_components": meta.get("n_components"),
        "n_features": meta.get("n_features"),
        "weights": [round(float(w), 6) for w in np.asarray(model.weights_)],
        "n_iter": fit.get("n_iter"),
        "converged": fit.get("converged"),
        "lower_bound": fit.get("lower_bound"),
        "n_parameters": model.params_.n_parameters(),
        "bytes": model_bytes(src),
    }
    if hasattr(model, "weight_concentration_"):
        # a variational fit: how many of its components the data kept
        summary["effective_components"] = effective_components(model.weights_)
        summary["effective_weight_threshold"] = EFFECTIVE_WEIGHT
    if src != loc:
        summary["version"] = str(src)
    if getattr(model, "threshold_", None) is not None:
        summary["threshold"] = model.threshold_
        summary["threshold_info"] = getattr(model, "threshold_info_", {})
    online = meta.get("online")
    if online:
        summary["n_updates"] = online.get("n_updates")
        summary["n_rows_seen"] = online.get("n_rows")
    return summary
