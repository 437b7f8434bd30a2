"""scikit-learn's estimator checks on numpy input (GaussianMixture, OutlierDetector;
KernelDensity's are in test_kde.py).

Expected failure, with its reason:

* ``check_estimators_unfitted``: the check demands scikit-learn's own
  ``NotFittedError`` class. scikit-learn is not a runtime dependency of
  streammix, so an unfitted estimator raises ``streammix.NotFittedError``,
  which, like scikit-learn's, is both a ``ValueError`` and an
  ``AttributeError`` (asserted below).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import streammix as sm

EXPECTED_FAILURES = {
    "check_estimators_unfitted": (
        "requires sklearn.exceptions.NotFittedError; streammix raises its own NotFittedError "
        "(a ValueError and AttributeError) because scikit-learn is not a runtime dependency"
    ),
}

with warnings.catch_warnings():
    # The checks warn that the class does not inherit sklearn.base.BaseEstimator.
    warnings.simplefilter("ignore", UserWarning)
    _decorator = parametrize_with_checks(
        [sm.GaussianMixture(), sm.OutlierDetector()],
        expected_failed_checks=lambda est: EXPECTED_FAILURES,
    )


@_decorator
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::streammix.errors.ConvergenceWarning")
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    ("cls", "method"),
    [
        *((sm.GaussianMixture, m) for m in ("predict", "predict_proba", "score_samples", "score")),
        # an outlier detector assigns rows to inliers and outliers, not to components
        *((sm.OutlierDetector, m) for m in ("predict", "decision_function", "score_samples")),
    ],
)
def test_unfitted_estimator_raises_not_fitted(cls, method):
    with pytest.raises(sm.NotFittedError, match="not fitted yet") as err:
        getattr(cls(), method)(np.zeros((3, 2)))
    assert isinstance(err.value, ValueError) and isinstance(err.value, AttributeError)
