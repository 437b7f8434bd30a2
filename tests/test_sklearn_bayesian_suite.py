"""scikit-learn's own variational mixture tests, run against
``streammix.BayesianGaussianMixture``.

The installed scikit-learn ships ``sklearn/mixture/tests/test_bayesian_mixture.py``
and ``test_mixture.py``. Each is loaded here as a module with its
``BayesianGaussianMixture`` import swapped for streammix's (``test_mixture.py``
keeps scikit-learn's ``GaussianMixture``: its cases for that estimator test
scikit-learn alone and are skipped; ``tests/test_sklearn_suite.py`` runs them
against streammix's), and its test functions are placed in this module's
namespace so that pytest collects them with the fixtures scikit-learn's
conftest would give them.

A test expected to fail is in :data:`EXPECTED_FAILURES` with its reason and is
marked ``xfail(strict=True)``, so one that starts passing fails the run and the
entry has to go. Only two kinds of reason belong there: the test calls
scikit-learn's private functions or private estimator methods, or it asserts
scikit-learn's own exception classes. Tests of scikit-learn's private helper
functions that never touch the estimator are in :data:`SKIPPED`: they would
pass, but test scikit-learn only.

``test_bayesian_mixture_predict_predict_proba`` names scikit-learn's
``NotFittedError``; it runs a second time from a copy of the file that imports
streammix's class under that name, as ``<test>_streammix_exceptions``, which
must pass.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from .sklearn_suites import load_swapped

SUITE_FILES = ("test_bayesian_mixture.py", "test_mixture.py")

# The one line per file that names scikit-learn's estimator, and what replaces it.
IMPORT_SWAPS = {
    "from sklearn.mixture import BayesianGaussianMixture\n": (
        "from streammix import BayesianGaussianMixture\n"
    ),
    "from sklearn.mixture import BayesianGaussianMixture, GaussianMixture\n": (
        "from sklearn.mixture import GaussianMixture\n"
        "from streammix import BayesianGaussianMixture\n"
    ),
}

EXCEPTIONS_IMPORT = "from sklearn.exceptions import NotFittedError\n"
STREAMMIX_EXCEPTIONS = "from streammix import NotFittedError\n"

EXPECTED_FAILURES: dict[str, str] = {
    # scikit-learn's private estimator methods
    "test_compare_covar_type": "calls scikit-learn's private estimator methods "
    "_check_parameters and _initialize_parameters (tests/test_bayesian.py compares "
    "the families after one variational M-step through public fits)",
    # scikit-learn's exception classes; everything else it checks passes in the copy
    "test_bayesian_mixture_predict_predict_proba": "asserts scikit-learn's own "
    "NotFittedError class (streammix raises its own, as scikit-learn is not a runtime "
    "dependency); passes as test_bayesian_mixture_predict_predict_proba_streammix_exceptions",
}

SKIPPED: dict[str, str] = {
    "test_log_dirichlet_norm": "tests scikit-learn's private _log_dirichlet_norm only "
    "(no estimator); streammix's lower bound is compared with scikit-learn's in "
    "tests/test_bayesian.py",
    "test_log_wishart_norm": "tests scikit-learn's private _log_wishart_norm only "
    "(no estimator); streammix's lower bound is compared with scikit-learn's in "
    "tests/test_bayesian.py",
}

WITH_STREAMMIX_EXCEPTIONS = ("test_bayesian_mixture_predict_predict_proba",)

# scikit-learn's suite filters its own ConvergenceWarning where a test expects it;
# this project turns streammix's into an error, so it is ignored here as there.
pytestmark = pytest.mark.filterwarnings("ignore::streammix.errors.ConvergenceWarning")


def _load(filename: str, streammix_exceptions: bool = False) -> types.ModuleType:
    """The scikit-learn test module ``filename`` with streammix's BayesianGaussianMixture
    (and, with ``streammix_exceptions``, streammix's NotFittedError)."""
    exceptions = (EXCEPTIONS_IMPORT, STREAMMIX_EXCEPTIONS) if streammix_exceptions else None
    return load_swapped(
        filename, "BayesianGaussianMixture", IMPORT_SWAPS, exceptions, "sklearn_bayesian_suite"
    )


@pytest.fixture(autouse=True)
def _only_streammix(request: Any) -> None:
    """test_mixture.py runs each test on scikit-learn's GaussianMixture too, which this
    module does not replace: those cases test scikit-learn alone."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and isinstance(
        callspec.params.get("estimator"), SklearnGaussianMixture
    ):
        pytest.skip("scikit-learn's GaussianMixture: tested in tests/test_sklearn_suite.py")


def _collect() -> dict[str, Any]:
    tests: dict[str, Any] = {}
    for filename in SUITE_FILES:
        module = _load(filename)
        for name, obj in vars(module).items():
            if name.startswith("test_") and callable(obj):
                assert name not in tests, f"{name} is defined in two suite files"
                if name in EXPECTED_FAILURES:
                    obj = pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[name])(obj)
                elif name in SKIPPED:
                    obj = pytest.mark.skip(reason=SKIPPED[name])(obj)
                tests[name] = obj
    unknown = (set(EXPECTED_FAILURES) | set(SKIPPED)) - set(tests)
    assert not unknown, f"expected failures or skips name no test: {sorted(unknown)}"
    copy = _load(SUITE_FILES[0], streammix_exceptions=True)
    for name in WITH_STREAMMIX_EXCEPTIONS:
        tests[f"{name}_streammix_exceptions"] = getattr(copy, name)
    return tests


globals().update(_collect())
