"""Detectors in the form ``adbench_eval.py`` calls: ``f(X_train, X_test, seed)`` returning
one score per test row, higher meaning more anomalous.

``streammix_detector`` is ``OutlierDetector`` with its defaults. The candidates of
the leave-one-dataset-out selection (``bench_outliers.py``) are the attributes
named in ``CANDIDATES`` with a ``feature_weight`` from ``FEATURE_WEIGHTS``:
``adbench_detectors:cand_k3w20_f0.5`` is ``OutlierDetector`` with the settings
``CANDIDATES["k3w20"]`` and ``feature_weight=0.5``.

The candidates of one joint setting differ only in ``feature_weight``, which
fixes the score's coefficient of the per-feature log-likelihood and nothing of
the fit: one detector is fitted per joint setting (with ``feature_weight=1``)
and each weight's scores are formed from its two log-likelihoods, with the
coefficients a fit with that weight sets.
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

#: ``before`` is the recipe as it was, without the per-feature mixtures.
CANDIDATES: dict[str, dict[str, Any]] = {
    **NARROW,
    **WIDE,
    "before": {**BEFORE, "feature_weight": 0.0},
}

#: Weights of the per-feature mixtures' standardised log-likelihood (0: none).
FEATURE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)

_FITTED: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, float]] = {}


def _parts(name: str, X_train: np.ndarray, X_test: np.ndarray, seed: int) -> Any:
    """The test rows' joint and per-feature log-likelihoods, each divided by its
    standard deviation over the training rows (cached per setting and split)."""
    from streammix.core.feature_mixtures import feature_log_density

    key = (name, seed, X_train.shape, float(X_train.sum()), float(X_test.sum()))
    if key not in _FITTED:
        params = dict(CANDIDATES[name])
        extra = {k: params.pop(k) for k in ("min_weight", "tol") if k in params}
        det = sm.OutlierDetector(random_state=seed, feature_weight=1.0, **params)
        for attr, value in extra.items():  # class attributes, set on the instance
            setattr(det, attr, value)
        det.fit(X_train)
        joint, features, constant = det.score_coefficients_
        per_feature = feature_log_density(X_test, det.feature_mixtures_)
        combined = det.score_samples(X_test)
        # combined = joint * log p + features * log q + constant, features = 1 / std(log q)
        joint_part = combined - features * per_feature - constant
        _FITTED[key] = (joint_part, features * per_feature, joint)
    return _FITTED[key]


def combined_candidate(name: str, weight: float) -> Callable[..., np.ndarray]:
    def detect(X_train: np.ndarray, X_test: np.ndarray, seed: int) -> np.ndarray:
        joint_part, feature_part, _ = _parts(name, X_train, X_test, seed)
        return -(joint_part + weight * feature_part)

    return detect


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
    if name.startswith("cand_") and "_f" in name:
        setting, _, weight = name[5:].rpartition("_f")
        if setting in CANDIDATES:
            return combined_candidate(setting, float(weight))
    raise AttributeError(name)
