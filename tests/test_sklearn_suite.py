"""scikit-learn's own mixture tests, run against ``streammix.GaussianMixture``.

The installed scikit-learn ships ``sklearn/mixture/tests/test_gaussian_mixture.py``
and ``test_mixture.py``. Each is loaded here as a module with its
``GaussianMixture`` import swapped for streammix's, and its test functions are
placed in this module's namespace so that pytest collects them with the
fixtures scikit-learn's conftest would give them (``global_random_seed``,
``global_dtype``).

A test expected to fail is in :data:`EXPECTED_FAILURES` with its reason and is
marked ``xfail(strict=True)``, so one that starts passing fails the run and the
entry has to go. Only two kinds of reason belong there: the test calls
scikit-learn's private functions (or its private estimator methods), or it
asserts scikit-learn's own exception classes or exact message wording.

Tests that fail only because they name ``sklearn.exceptions.NotFittedError`` or
``ConvergenceWarning`` (streammix raises its own classes: scikit-learn is not a
runtime dependency) run a second time from a copy of the file that imports
streammix's classes under those names, as ``<test>_streammix_exceptions``;
those copies must pass, so everything else the tests check still counts.

Array-API tests run with numpy (``SCIPY_ARRAY_API=1`` is set in
``tests/conftest.py``); those for array_api_strict, CuPy, PyTorch or dpnp are
skipped by scikit-learn's own helper when the library is not installed.
"""

from __future__ import annotations

import os
import types
from typing import Any

import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture

from .sklearn_suites import load_swapped

SUITE_FILES = ("test_gaussian_mixture.py", "test_mixture.py")

# The one line per file that names scikit-learn's estimator, and what replaces it.
IMPORT_SWAPS = {
    "from sklearn.mixture import GaussianMixture\n": "from streammix import GaussianMixture\n",
    "from sklearn.mixture import BayesianGaussianMixture, GaussianMixture\n": (
        "from sklearn.mixture import BayesianGaussianMixture\n"
        "from streammix import GaussianMixture\n"
    ),
}

# The exception classes the suite imports, and streammix's under the same names.
EXCEPTIONS_IMPORT = "from sklearn.exceptions import ConvergenceWarning, NotFittedError\n"
STREAMMIX_EXCEPTIONS = "from streammix import ConvergenceWarning, NotFittedError\n"

_PRIVATE = "calls scikit-learn's private "
_WORDING = "asserts scikit-learn's exact message wording: "
_CLASSES = (
    "asserts scikit-learn's own {} class (streammix raises its own, as scikit-learn is "
    "not a runtime dependency); passes as {}_streammix_exceptions"
)

EXPECTED_FAILURES: dict[str, str] = {
    # scikit-learn's private functions and private estimator methods
    "test_gaussian_mixture_n_parameters": _PRIVATE + "estimator method _n_parameters "
    "(streammix: params_.n_parameters())",
    "test_gaussian_mixture_aic_bic": _PRIVATE + "estimator method _n_parameters "
    "(streammix: params_.n_parameters()); aic/bic are compared with scikit-learn's in "
    "tests/test_mixture_sklearn.py",
    "test_gaussian_mixture_precisions_init": _PRIVATE + "estimator methods _set_parameters "
    "and _initialize",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": _PRIVATE
    + "_estimate_gaussian_parameters through a mock and counts its calls",
    # scikit-learn's message wording
    "test_check_weights": _WORDING + "the range message with its max and min values "
    "swapped ('max value {min}, min value {max}')",
    "test_check_precisions": _WORDING + "\"The parameter 'full precision' should have the "
    'shape of" (streammix names the covariance_type and the expected shape)',
    "test_regularisation": _WORDING + '"some components have ill-defined empirical '
    "covariance\" (streammix names the components and on_degenerate='reseed')",
    "test_gaussian_mixture_raises_where_array_api_not_implemented": _WORDING
    + "the NotImplementedError scikit-learn raises for init_params its array-API code "
    "lacks; streammix does not dispatch and fits numpy input with every init_params "
    "(the test runs on numpy whatever its namespace parameter)",
    # scikit-learn's exception classes; everything else they check passes in the copies
    "test_gaussian_mixture_predict_predict_proba": _CLASSES.format(
        "NotFittedError", "test_gaussian_mixture_predict_predict_proba"
    ),
    "test_score": _CLASSES.format("NotFittedError", "test_score"),
    "test_score_samples": _CLASSES.format("NotFittedError", "test_score_samples"),
    "test_sample": _CLASSES.format("NotFittedError", "test_sample"),
    "test_gaussian_mixture_fit_convergence_warning": _CLASSES.format(
        "ConvergenceWarning", "test_gaussian_mixture_fit_convergence_warning"
    ),
}

# Tests that pass once the exception classes are streammix's (see the module docstring).
WITH_STREAMMIX_EXCEPTIONS = tuple(
    name for name, reason in EXPECTED_FAILURES.items() if "_streammix_exceptions" in reason
)

# scikit-learn's suite filters its own ConvergenceWarning where a test expects it and
# otherwise lets it pass; this project turns streammix's into an error, so here it is
# ignored as scikit-learn's is there.
pytestmark = pytest.mark.filterwarnings("ignore::streammix.errors.ConvergenceWarning")


def _load(filename: str, streammix_exceptions: bool = False) -> types.ModuleType:
    """The scikit-learn test module ``filename`` with streammix's GaussianMixture (and,
    with ``streammix_exceptions``, streammix's NotFittedError and ConvergenceWarning)."""
    exceptions = (EXCEPTIONS_IMPORT, STREAMMIX_EXCEPTIONS) if streammix_exceptions else None
    return load_swapped(filename, "GaussianMixture", IMPORT_SWAPS, exceptions, "sklearn_suite")


def _random_seeds() -> list[int]:
    """scikit-learn's seeds: 42, or ``SKLEARN_TESTS_GLOBAL_RANDOM_SEED`` (one seed,
    ``"a-b"`` or ``"all"``), read as its conftest reads it."""
    value = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED")
    if value is None:
        return [42]
    if value == "all":
        return list(range(100))
    if "-" in value:
        start, stop = value.split("-")
        seeds = list(range(int(start), int(stop) + 1))
    else:
        seeds = [int(value)]
    if min(seeds) < 0 or max(seeds) > 99:
        raise ValueError(
            "SKLEARN_TESTS_GLOBAL_RANDOM_SEED must be in the range [0, 99] (or 'all'), "
            f"got: {value}"
        )
    return seeds


@pytest.fixture(params=_random_seeds())
def global_random_seed(request: Any) -> int:
    return int(request.param)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def global_dtype(request: Any) -> Any:
    return request.param


@pytest.fixture(autouse=True)
def _only_streammix(request: Any) -> None:
    """test_mixture.py runs each test on scikit-learn's BayesianGaussianMixture too; here
    those cases would test scikit-learn's class (streammix's runs them in
    tests/test_sklearn_bayesian_suite.py)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and isinstance(
        callspec.params.get("estimator"), BayesianGaussianMixture
    ):
        pytest.skip(
            "scikit-learn's BayesianGaussianMixture: streammix's is tested in "
            "tests/test_sklearn_bayesian_suite.py"
        )


def _collect() -> dict[str, Any]:
    tests: dict[str, Any] = {}
    for filename in SUITE_FILES:
        module = _load(filename)
        for name, obj in vars(module).items():
            if name.startswith("test_") and callable(obj):
                assert name not in tests, f"{name} is defined in two suite files"
                if name in EXPECTED_FAILURES:
                    obj = pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[name])(obj)
                tests[name] = obj
    unknown = set(EXPECTED_FAILURES) - set(tests)
    assert not unknown, f"expected failures name no test: {sorted(unknown)}"
    copy = _load(SUITE_FILES[0], streammix_exceptions=True)
    for name in WITH_STREAMMIX_EXCEPTIONS:
        tests[f"{name}_streammix_exceptions"] = getattr(copy, name)
    return tests


globals().update(_collect())
