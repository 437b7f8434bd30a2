"""What a saved model is: the ``info`` job.

Layer: edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io.modelfile import load, read_model_dir


def model_summary(path: str) -> dict[str, Any]:
    """What ``info`` shows about a model directory."""
    meta, _ = read_model_dir(path)
    model = load(path)
    fit = meta.get("fit") or {}
    size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
    summary: dict[str, Any] = {
        "model": str(path),
        "kind": meta.get("kind"),
        "schema_version": meta.get("schema_version"),
        "covariance_type": meta.get("covariance_type"),
        "n_components": meta.get("n_components"),
        "n_features": meta.get("n_features"),
        "weights": [round(float(w), 6) for w in np.asarray(model.weights_)],
        "n_iter": fit.get("n_iter"),
        "converged": fit.get("converged"),
        "lower_bound": fit.get("lower_bound"),
        "n_parameters": model._params().n_parameters(),
        "bytes": size,
    }
    if getattr(model, "threshold_", None) is not None:
        summary["threshold"] = model.threshold_
        summary["threshold_info"] = getattr(model, "threshold_info_", {})
    online = meta.get("online")
    if online:
        summary["n_updates"] = online.get("n_updates")
        summary["n_rows_seen"] = online.get("n_rows")
    return summary
