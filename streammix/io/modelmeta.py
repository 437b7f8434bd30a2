"""What a model's metadata may hold: every field of ``model.json`` checked on load.

Layer: edges (no I/O). :mod:`streammix.io.modelfile` guards a model's bytes
(every array and the metadata have a checksum); this module guards their
meaning, so that a model written by an older streammix (whose manifest has no
metadata checksum) or edited by hand and re-checksummed cannot load with a
threshold of ``NaN``, a history that is not one, or arrays of another shape
than the metadata announce. Each field has a type, a range where it has one,
and finiteness; arrays have the shapes ``n_components`` and ``n_features``
give them, a floating-point dtype and finite values.

A field this module does not know is refused (a newer streammix that adds one
writes a new schema version). Two places are open on purpose: hyperparameters
that the class no longer takes are ignored on load, as they always were, and
the counters of an online model's running state (owned by the engine) need
only be finite numbers, booleans or ``null``. The estimators' own parameter
rules run after this check (``from_parameters``), so ``tol = -1`` is refused
there, with the estimator's message.

Problems raise :class:`~streammix.errors.InvalidInputError`, which
:func:`streammix.load` reports as a :class:`~streammix.errors.ModelFileError`
naming the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..core.families import COVARIANCE_TYPES, CovarianceFamily, get_family
from ..core.kde_math import BANDWIDTH_RULES
from ..errors import InvalidInputError

MIXTURE_KINDS = (
    "GaussianMixture",
    "OnlineGaussianMixture",
    "OutlierDetector",
    "BayesianGaussianMixture",
)
KDE_KIND = "KernelDensity"
KINDS = (*MIXTURE_KINDS, KDE_KIND)
"""Every kind of model a model directory can hold."""

# Fields every manifest has (written by :func:`streammix.io.modelfile.write_model_dir`).
FILE_FIELDS = ("schema_version", "arrays", "metadata_sha256")

Check = Callable[[str, Any], None]


class _Bad(InvalidInputError):
    def __init__(self, field: str, requirement: str, value: Any) -> None:
        super().__init__(f"model.json: {field!r} must be {requirement}; got {_shown(value)}.")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------ field checks
def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def integer(low: int) -> Check:
    def check(field: str, value: Any) -> None:
        if not _is_int(value) or value < low:
            raise _Bad(field, f"an integer >= {low}", value)

    return check


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Check:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    where = (
        ""
        if low is None and high is None
        else f" in {'(' if low_open else '['}{low if low is not None else '-inf'}, "
        f"{high if high is not None else 'inf'}{']' if high is not None else ')'}"
    )

    def check(field: str, value: Any) -> None:
        ok = _is_number(value) and math.isfinite(float(value))
        if ok and low is not None:
            ok = float(value) > low if low_open else float(value) >= low
        if ok and high is not None:
            ok = float(value) <= high
        if not ok:
            raise _Bad(field, f"a finite number{where}", value)

    return check


def boolean(field: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        raise _Bad(field, "true or false", value)


def text(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise _Bad(field, "a non-empty string", value)


def bound(field: str, value: Any) -> None:
    """A lower bound of the log-likelihood: a number, or ``null`` where there was none
    (a model made from parameters; non-finite values are written as ``null``)."""
    if value is None or (isinstance(value, float | np.floating) and not math.isfinite(value)):
        return
    number()(field, value)


def optional(check: Check) -> Check:
    def inner(field: str, value: Any) -> None:
        if value is not None:
            check(field, value)

    return inner


def list_of(check: Check) -> Check:
    def inner(field: str, value: Any) -> None:
        if not isinstance(value, list | tuple):
            raise _Bad(field, "a list", value)
        for i, item in enumerate(value):
            check(f"{field}[{i}]", item)

    return inner


def one_of(*choices: str) -> Check:
    def check(field: str, value: Any) -> None:
        if value not in choices:
            raise _Bad(field, "one of " + ", ".join(choices), value)

    return check


def scalar(field: str, value: Any) -> None:
    """A plain JSON value: ``null``, a boolean, a finite number or a string."""
    if value is None or isinstance(value, bool | np.bool_ | str):
        return
    if not (_is_number(value) and math.isfinite(float(value))):
        raise _Bad(field, "null, true, false, a finite number or a string", value)


def bandwidth(field: str, value: Any) -> None:
    if isinstance(value, str):
        one_of(*BANDWIDTH_RULES)(field, value)
    else:
        number(0.0, low_open=True)(field, value)


def float_dtype(field: str, value: Any) -> None:
    try:
        ok = isinstance(value, str) and np.dtype(value).kind == "f"
    except TypeError:
        ok = False
    if not ok:
        raise _Bad(field, "a floating-point dtype such as '<f8'", value)


def table(
    fields: Mapping[str, Check], required: tuple[str, ...] = (), *, open_values: Check | None = None
) -> Check:
    """An object holding ``fields`` (``required`` ones at least). A field not in
    ``fields`` is refused, or checked with ``open_values`` when given."""

    def check(field: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise _Bad(field, "an object", value)
        where = f"model.json: {field!r}" if field else "model.json"
        for name in required:
            if name not in value:
                raise InvalidInputError(f"{where} has no field {name!r}.")
        for name, item in value.items():
            inner = fields.get(name, open_values)
            if inner is None:
                raise InvalidInputError(f"{where} has an unknown field {name!r}.")
            inner(f"{field}.{name}" if field else str(name), item)

    return check


FIT = table(
    {
        "converged": boolean,
        "n_iter": integer(0),
        "lower_bound": bound,
        "lower_bounds": list_of(bound),
    }
)
CALIBRATION = table(
    {
        "threshold": number(),
        "contamination": number(0.0, 0.5, low_open=True),
        "source": text,
    },
    required=("threshold",),
)
ONLINE = table(
    {
        "n_updates": integer(0),
        "n_rows": integer(0),
        "warm": boolean,
        "n_averaged": integer(0),
        "n_reseeded": integer(0),
        "stats_n": number(0.0),
        "stats_loglik": number(),
        "n_s2": integer(0),
        "frame_scale": number(0.0, low_open=True),
        "averaged": boolean,
        "loglik_sum": number(),
    },
    open_values=scalar,
)
CONSUMED = table(
    {
        "input": text,
        "rows": integer(0),
        "fingerprint": text,
        "parts": list_of(list_of(scalar)),
    },
    required=("input", "rows", "fingerprint"),
)
STREAM_HISTORY = table(
    {
        "batch": list_of(integer(0)),
        "rows": list_of(integer(0)),
        "log_likelihood": list_of(optional(number())),
        "flagged_share": list_of(optional(number(0.0, 1.0))),
    },
    required=("batch", "rows", "log_likelihood", "flagged_share"),
)
HYPERPARAMETERS = table({}, open_values=scalar)
# An outlier detector's score: ``joint * log p(x) + features * log q(x) + constant``,
# ``q`` the per-feature mixtures of ``feature_components`` components (saved as the
# arrays ``feature_weights``, ``feature_means`` and ``feature_variances``).
DETECTOR_SCORE = table(
    {
        "joint": number(0.0, low_open=True),
        "features": number(0.0),
        "constant": number(),
        "feature_components": integer(1),
    },
    required=("joint", "features", "constant", "feature_components"),
)
# A variational mixture's resolved scalar priors, and whether the array priors (saved
# as the arrays ``mean_prior`` and ``covariance_prior``) were given or taken from data.
VARIATIONAL = table(
    {
        "weight_concentration_prior": number(0.0, low_open=True),
        "mean_precision_prior": number(0.0, low_open=True),
        "degrees_of_freedom_prior": number(0.0, low_open=True),
        "mean_prior_given": boolean,
        "covariance_prior_given": boolean,
    },
    required=(
        "weight_concentration_prior",
        "mean_precision_prior",
        "degrees_of_freedom_prior",
        "mean_prior_given",
        "covariance_prior_given",
    ),
)
KDE_REFERENCE = table(
    {
        "stored": boolean,
        "path": optional(text),
        "array": text,
        "dtype": float_dtype,
        "weighted": boolean,
    },
    required=("stored", "path", "array"),
)

MIXTURE_FIELDS: dict[str, Check] = {
    "kind": one_of(*KINDS),
    "covariance_type": one_of(*COVARIANCE_TYPES),
    "n_components": integer(1),
    "n_features": integer(1),
    "hyperparameters": HYPERPARAMETERS,
    "fit": FIT,
    "calibration": optional(CALIBRATION),
}
KDE_FIELDS: dict[str, Check] = {
    "kind": one_of(*KINDS),
    "n_features": integer(1),
    "n_samples": integer(1),
    "hyperparameters": table({"bandwidth": bandwidth}, ("bandwidth",), open_values=scalar),
    "factor": number(0.0, low_open=True),
    "reference": KDE_REFERENCE,
}


# ----------------------------------------------------------------- models
def check_model_files(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Refuse metadata and arrays that do not describe a model of the kind they name.

    Parameters
    ----------
    meta : mapping
        ``model.json`` as read (or a model's ``to_files`` metadata).
    arrays : mapping of str to ndarray
        The model's arrays by name.

    Raises
    ------
    InvalidInputError
        A field of the wrong type, out of range or not finite, a field this
        version does not know, a missing field, or an array missing, unknown,
        of another shape than the metadata give it, not floating-point, or
        holding NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> meta = {"kind": "GaussianMixture", "covariance_type": "spherical",
    ...         "n_components": 1, "n_features": 2, "calibration": {"threshold": "-10"}}
    >>> arrays = {"weights": np.ones(1), "means": np.zeros((1, 2)),
    ...           "covariances": np.ones(1), "precisions_cholesky": np.ones(1)}
    >>> check_model_files(meta, arrays)
    Traceback (most recent call last):
    ...
    streammix.errors.InvalidInputError: model.json: 'calibration.threshold' must be a \
finite number; got '-10'.
    """
    if not isinstance(meta, Mapping):
        raise InvalidInputError("model.json: the metadata must be an object.")
    kind = meta.get("kind")
    one_of(*KINDS)("kind", kind)
    if kind == KDE_KIND:
        _check_fields(meta, KDE_FIELDS, ("n_features", "n_samples", "hyperparameters"))
        _check_kde_arrays(meta, arrays)
        return
    fields = dict(MIXTURE_FIELDS)
    required = ["covariance_type", "n_components", "n_features"]
    if kind == "OnlineGaussianMixture":
        fields.update(online=ONLINE, consumed=optional(CONSUMED), stream_history=STREAM_HISTORY)
        required.append("online")
    if kind == "OutlierDetector":
        fields["calibration"] = CALIBRATION
        fields["score"] = optional(DETECTOR_SCORE)
        required.append("calibration")
    if kind == "BayesianGaussianMixture":
        fields["variational"] = VARIATIONAL
        required.append("variational")
    _check_fields(meta, fields, tuple(required))
    _check_mixture_arrays(meta, arrays)


def _check_fields(
    meta: Mapping[str, Any], fields: Mapping[str, Check], required: tuple[str, ...]
) -> None:
    table({**fields, **dict.fromkeys(FILE_FIELDS, _file_field)}, required)("", meta)


def _file_field(field: str, value: Any) -> None:
    """Fields of the file format itself, checked by :mod:`streammix.io.modelfile`."""


def _family(meta: Mapping[str, Any]) -> CovarianceFamily:
    hyper = meta.get("hyperparameters") or {}
    name = str(meta["covariance_type"])
    declared = hyper.get("covariance_type", name)
    if declared != name:
        raise InvalidInputError(
            f"model.json: 'hyperparameters.covariance_type' is {declared!r} but "
            f"'covariance_type' is {name!r}."
        )
    rank = hyper.get("rank")
    if rank is not None:
        integer(1)("hyperparameters.rank", rank)
    try:
        return get_family(name, rank)
    except ValueError as err:
        raise InvalidInputError(f"model.json: {err}") from None


def _check_mixture_arrays(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    k, d = int(meta["n_components"]), int(meta["n_features"])
    hyper = meta.get("hyperparameters") or {}
    if hyper.get("n_components", k) != k:
        raise InvalidInputError(
            f"model.json: 'hyperparameters.n_components' is {hyper['n_components']!r} but "
            f"'n_components' is {k}."
        )
    family = _family(meta)
    cov = family.covariance_shape(k, d)
    shapes = {"weights": (k,), "means": (k, d), "covariances": cov, "precisions_cholesky": cov}
    # An online model's running state: averaged parameters have the parameters' shapes;
    # the statistics' shapes are checked where the engine reads them.
    state = {f"state_{name}": shape for name, shape in shapes.items()}
    state["state_frame_shift"] = (d,)
    if meta.get("kind") == "BayesianGaussianMixture":
        shapes.update(_variational_shapes(meta, family, k, d))
    combined = meta.get("score") if meta.get("kind") == "OutlierDetector" else None
    if combined is not None:
        m = int(combined["feature_components"])
        for name in ("feature_weights", "feature_means", "feature_variances"):
            shapes[name] = (d, m)
    for name in arrays:
        if name not in shapes and not (
            meta.get("kind") == "OnlineGaussianMixture" and name.startswith("state_")
        ):
            raise InvalidInputError(f"model.json: unknown array {name!r}.")
    _check_arrays(arrays, shapes, required=True)
    _check_arrays(arrays, state, required=False)
    for name, arr in arrays.items():
        _check_values(name, arr)


def _variational_shapes(
    meta: Mapping[str, Any], family: CovarianceFamily, k: int, d: int
) -> dict[str, tuple[int, ...]]:
    """Shapes of a variational mixture's posterior and prior arrays."""
    hyper = meta.get("hyperparameters") or {}
    process = hyper.get("weight_concentration_prior_type", "dirichlet_process")
    one_of("dirichlet_process", "dirichlet_distribution")(
        "hyperparameters.weight_concentration_prior_type", process
    )
    return {
        "weight_concentration": (2, k) if process == "dirichlet_process" else (k,),
        "mean_precision": (k,),
        "degrees_of_freedom": (1,) if family.shared_covariance else (k,),
        "mean_prior": (d,),
        # the prior covariance in the layout of one component's covariances
        "covariance_prior": family.covariance_shape(1, d),
    }


def _check_kde_arrays(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    n, d = int(meta["n_samples"]), int(meta["n_features"])
    shapes = {"mean": (d,), "covariance": (d, d), "cholesky": (d, d)}
    reference = meta.get("reference") or {}
    if reference.get("stored"):
        shapes["reference"] = (n, d)
    elif not reference.get("path"):
        raise InvalidInputError(
            "model.json: 'reference.path' must name the training data when they are not stored."
        )
    if reference.get("weighted"):
        shapes["sample_weight"] = (n,)
    for name in arrays:
        if name not in shapes:
            raise InvalidInputError(f"model.json: unknown array {name!r}.")
    _check_arrays(arrays, shapes, required=True)
    for name, arr in arrays.items():
        _check_values(name, arr)
    weights = arrays.get("sample_weight")
    if weights is not None and (np.any(weights < 0) or not np.any(weights > 0)):
        raise InvalidInputError(
            "model.json: 'sample_weight' must be >= 0 with at least one weight > 0."
        )


def _check_arrays(
    arrays: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]], required: bool
) -> None:
    for name, shape in shapes.items():
        if name not in arrays:
            if required:
                raise InvalidInputError(f"model.json: the array {name!r} is missing.")
            continue
        got = tuple(np.shape(arrays[name]))
        if got != tuple(shape):
            raise InvalidInputError(
                f"model.json: the array {name!r} has shape {got}; n_components and n_features "
                f"give {tuple(shape)}."
            )


def _check_values(name: str, arr: np.ndarray) -> None:
    a = np.asarray(arr)
    if a.dtype.kind != "f":
        raise InvalidInputError(
            f"model.json: the array {name!r} has dtype {a.dtype}; model arrays are floating-point."
        )
    if not np.all(np.isfinite(a)):
        raise InvalidInputError(f"model.json: the array {name!r} holds NaN or infinity.")
