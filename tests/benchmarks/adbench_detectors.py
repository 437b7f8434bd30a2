"""Detectors in the form ``adbench_eval.py`` calls: ``f(X_train, X_test, seed)`` returning
one score per test row, higher meaning more anomalous."""

from __future__ import annotations

import numpy as np

import streammix as sm


def streammix_detector(X_train: np.ndarray, X_test: np.ndarray, seed: int) -> np.ndarray:
    """streammix's OutlierDetector with its defaults."""
    return -sm.OutlierDetector(random_state=seed).fit(X_train).score_samples(X_test)
