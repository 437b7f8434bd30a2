"""Detectors in the form ``adbench_eval.py`` calls: ``f(X_train, X_test, seed)`` returning
one score per test row, higher meaning more anomalous.

``streammix_detector`` is ``OutlierDetector`` with its defaults. The candidates of
the leave-one-dataset-out selection (``bench_outliers.py``) are the attributes
named in ``CANDIDATES``: ``adbench_detectors:cand_k3w20`` is ``OutlierDetector``
with the settings ``CANDIDATES["k3w20"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import streammix as sm

#: Today's recipe before the leave-one-dataset-out selection: one full Gaussian,
#: trimmed until the kept rows stop changing.
BEFORE: dict[str, Any] = {
    "n_components": 1,
    "covariance_type": "full",
    "min_weight": 0.0,
    "tol": 0.0,
}

#: Candidates for data with many rows per feature (the classical sets).
NARROW: dict[str, dict[str, Any]] = {
    "k1": BEFORE,
    "k1t45": {**BEFORE, "trim": 0.45},
    "k1r1": {**BEFORE, "reg_covar": 1.0},
    "k1diag": {**BEFORE, "covariance_type": "diag"},
    "k2w20": {"n_components": 2, "covariance_type": "full", "min_weight": 0.2},
    "k3w20": {"n_components": 3, "covariance_type": "full", "min_weight": 0.2},
}

#: Candidates for wide data (fewer rows than five per feature: the embeddings).
WIDE: dict[str, dict[str, Any]] = {
    "full": BEFORE,
    "diag": {"n_components": 1, "covariance_type": "diag"},
    "lr4": {"n_components": 1, "covariance_type": "lowrank", "rank": 4},
    "lr16": {"n_components": 1, "covariance_type": "lowrank", "rank": 16},
    "lr48": {"n_components": 1, "covariance_type": "lowrank", "rank": 48},
}

CANDIDATES: dict[str, dict[str, Any]] = {**NARROW, **WIDE, "before": BEFORE}


def streammix_detector(X_train: np.ndarray, X_test: np.ndarray, seed: int) -> np.ndarray:
    """streammix's OutlierDetector with its defaults."""
    return -sm.OutlierDetector(random_state=seed).fit(X_train).score_samples(X_test)


def candidate(settings: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
    """The detector function of one candidate's settings."""

    def detect(X_train: np.ndarray, X_test: np.ndarray, seed: int) -> np.ndarray:
        params = dict(settings)
        extra = {k: params.pop(k) for k in ("min_weight", "tol") if k in params}
        det = sm.OutlierDetector(random_state=seed, **params)
        for name, value in extra.items():  # class attributes, set on the instance
            setattr(det, name, value)
        return -det.fit(X_train).score_samples(X_test)

    return detect


def __getattr__(name: str) -> Any:
    if name.startswith("cand_") and name[5:] in CANDIDATES:
        return candidate(CANDIDATES[name[5:]])
    raise AttributeError(name)
