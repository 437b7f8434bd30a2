"""Loading scikit-learn's own mixture test modules with streammix's estimators swapped in
(shared by tests/test_sklearn_suite.py and tests/test_sklearn_bayesian_suite.py)."""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path

import sklearn

SUITE_DIR = Path(sklearn.__file__).parent / "mixture" / "tests"


def load_swapped(
    filename: str,
    estimator: str,
    swaps: Mapping[str, str],
    exceptions: tuple[str, str] | None,
    prefix: str,
) -> types.ModuleType:
    """The scikit-learn test module ``filename`` with its one import of ``estimator``
    replaced by ``swaps`` (and, with ``exceptions = (old, new)``, its exceptions import
    replaced too), executed as a fresh module named after ``prefix``."""
    source = (SUITE_DIR / filename).read_text()
    swapped = 0
    for old, new in swaps.items():
        swapped += source.count(old)
        source = source.replace(old, new)
    # Exactly one swap per file: a file that changed its imports must not silently
    # test scikit-learn against itself.
    assert swapped == 1, f"{filename}: expected one {estimator} import, found {swapped}"
    assert f"sklearn.mixture import {estimator}" not in source
    suffix = ""
    if exceptions is not None:
        old, new = exceptions
        assert source.count(old) == 1, f"{filename}: exceptions import moved"
        source = source.replace(old, new)
        suffix = "_streammix_exceptions"
    module = types.ModuleType(f"{prefix}_{filename[:-3]}{suffix}")
    module.__file__ = str(SUITE_DIR / filename)
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
