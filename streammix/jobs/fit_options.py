"""The fit job's estimator options and the estimator they build.

Layer: edges. Every constructor parameter of the estimators a fit runs
(:data:`streammix.jobs.fit_job.ESTIMATORS`, chosen by ``method``) that can be
written on a command line is an option here, under the parameter's own name.
Their defaults are ``None``: an option is passed to the estimator only when
given, so the estimator's own default applies (help shows it, read from the
estimator's signature), and an option of another method is an error only when
it is set.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ..core.families import COVARIANCE_TYPES
from ..core.missing import MISSING_POLICIES
from ..core.mstep import DEGENERATE_POLICIES
from ..engine.data import CACHE_MODES
from ..engine.init import INIT_METHODS
from ..estimators import OnlineGaussianMixture
from . import fit_job
from .declaration import MissingOption, Option, OptionError
from .kinds import BOOLEAN, INTEGER, NUMBER, SWITCH_OR_COUNT, TEXT, Bounds, Kind, at_least

METHODS: tuple[str, ...] = tuple(fit_job.ESTIMATORS)

CONTAMINATION_BOUNDS = Bounds(0, 0.5, low_open=True)
"""A share of outliers: more than half would make the inliers the outliers."""


REQUIRED_BY_METHOD: dict[str, tuple[str, ...]] = {"n_components": ("batch", "online", "bayesian")}
"""Options a method needs although its estimator has a default: a mixture's size
is the user's choice, while the detector's default (one robust component) is
its recipe."""


def _param(name: str, kind: Kind, help: str, group: str, **kw: Any) -> Option:
    return Option(name, kind, help, default=None, group=group, estimator=name, **kw)


ESTIMATOR_OPTIONS: tuple[Option, ...] = (
    Option(
        "method",
        TEXT,
        "Batch EM, one-pass stepwise (online) EM, the robust outlier detector, or "
        "variational Bayesian EM (components found by the data).",
        default="batch",
        choices=METHODS,
        group="Model",
    ),
    _param(
        "n_components",
        INTEGER,
        "Components (required, except for --method detector).",
        "Model",
        bounds=at_least(1),
    ),
    _param(
        "covariance_type",
        TEXT,
        "Covariance family; lowrank is L L^T + diag(psi) with L of rank --rank, "
        "never a D x D matrix.",
        "Model",
        choices=COVARIANCE_TYPES,
    ),
    _param("rank", INTEGER, "Rank of L for --covariance-type lowrank.", "Model"),
    _param("reg_covar", NUMBER, "Added to the diagonal of every covariance.", "Model"),
    _param(
        "init_params",
        TEXT,
        "How EM starts: k-means over all chunks, k-means++ seeds, or random.",
        "Model",
        choices=INIT_METHODS,
        aliases=("init",),
    ),
    Option(
        "random_state",
        INTEGER,
        "Seed of every random choice: the same seed gives the same model.",
        default=0,
        bounds=at_least(0),
        estimator="random_state",
        aliases=("seed",),
        group="Model",
    ),
    _param(
        "warm_start",
        BOOLEAN,
        "Continue from the model already at --model instead of starting afresh.",
        "Model",
    ),
    _param(
        "on_degenerate",
        TEXT,
        "A component that collapses or empties: fail, or re-seed it from the heaviest.",
        "Model",
        choices=DEGENERATE_POLICIES,
    ),
    _param(
        "verbose",
        INTEGER,
        "The estimator's own log: 1 restarts and progress, 2 also bounds and timings.",
        "Model",
    ),
    _param("tol", NUMBER, "Stop when the mean log-likelihood changes less than this.", "EM"),
    _param("max_iter", INTEGER, "EM iterations at most.", "EM"),
    _param(
        "n_init", INTEGER, "Restarts, all advancing in the same passes; the best is kept.", "EM"
    ),
    _param("verbose_interval", INTEGER, "Iterations between --verbose logs.", "EM"),
    _param(
        "persist",
        BOOLEAN,
        "Hold the input in cluster memory for the fit instead of reading it every "
        "iteration (only for data that fit there).",
        "EM",
    ),
    _param(
        "cache",
        TEXT,
        "Keep the decoded chunks in worker memory between iterations when they fit "
        "(otherwise read them every iteration).",
        "EM",
        choices=CACHE_MODES,
    ),
    _param(
        "missing",
        TEXT,
        "NaN in DATA: fail naming the first row, or handle missing entries exactly in EM.",
        "EM",
        choices=MISSING_POLICIES,
    ),
    _param(
        "learning_decay",
        NUMBER,
        "kappa of the step sizes (t + offset)^-kappa, in (0.5, 1].",
        "Online EM",
    ),
    _param("learning_offset", NUMBER, "t0 of the step sizes.", "Online EM"),
    _param("max_epochs", INTEGER, "Passes over the data.", "Online EM"),
    _param("batch_size", INTEGER, "Rows per update (default: one chunk).", "Online EM"),
    _param("shuffle", BOOLEAN, "Visit the chunks in a new seeded order every epoch.", "Online EM"),
    _param(
        "averaging",
        SWITCH_OR_COUNT,
        "Average the parameters (Polyak-Ruppert): true from half the first epoch, or "
        "from this many updates.",
        "Online EM",
    ),
    _param(
        "forget",
        NUMBER,
        "A constant step: forget old data at this rate per update (drifting streams).",
        "Online EM",
    ),
    _param(
        "contamination",
        NUMBER,
        "Also calibrate an outlier threshold at this share of the training rows "
        "(--method detector: the detector's contamination).",
        "Outputs",
        bounds=CONTAMINATION_BOUNDS,
    ),
    _param(
        "weight_concentration_prior_type",
        TEXT,
        "Prior on the weights: a Dirichlet process (stick-breaking) or distribution.",
        "Bayesian",
        choices=("dirichlet_process", "dirichlet_distribution"),
    ),
    _param(
        "weight_concentration_prior",
        NUMBER,
        "Concentration of the weights' prior (default 1 / n_components); small values "
        "leave components empty.",
        "Bayesian",
    ),
    _param(
        "mean_precision_prior",
        NUMBER,
        "Precision of the means' prior (default 1).",
        "Bayesian",
    ),
    _param(
        "degrees_of_freedom_prior",
        NUMBER,
        "Degrees of freedom of the precisions' Wishart prior (default n_features).",
        "Bayesian",
    ),
    _param("trim", NUMBER, "Share of least likely rows ignored while fitting.", "Outlier detector"),
    _param("max_trim_steps", INTEGER, "Trimming steps at most.", "Outlier detector"),
    _param(
        "standardize",
        BOOLEAN,
        "Standardise every feature before fitting.",
        "Outlier detector",
    ),
    _param(
        "feature_weight",
        NUMBER,
        "Weight of the per-feature mixtures' standardised log-likelihood in the score "
        "(0: the joint mixture's log-likelihood alone).",
        "Outlier detector",
    ),
    _param(
        "feature_components",
        INTEGER,
        "Components of each feature's own one-dimensional mixture.",
        "Outlier detector",
    ),
)


def accepted_parameters(method: str) -> list[str]:
    """The constructor parameters of ``method``'s estimator."""
    return list(inspect.signature(fit_job.ESTIMATORS[method]).parameters)


def method_defaults(parameter: str) -> dict[str, Any]:
    """The default of ``parameter`` for each method whose estimator takes it."""
    out = {}
    for method, cls in fit_job.ESTIMATORS.items():
        p = inspect.signature(cls).parameters.get(parameter)
        if p is not None:
            out[method] = p.default
    return out


def _job_arguments() -> set[str]:
    return set(inspect.signature(fit_job.fit).parameters)


def method_note(option: Option) -> str:
    """Where an estimator option applies and, unless the option has a default of
    its own, the estimators' defaults (from their signatures), e.g. ``"batch
    only; default: 0.001"``."""
    if option.estimator is None:
        return ""
    defaults = method_defaults(option.estimator)
    applies = METHODS if option.target in _job_arguments() else tuple(defaults)
    parts = []
    if len(applies) < len(METHODS):
        parts.append(", ".join(applies) + " only")
    needed = REQUIRED_BY_METHOD.get(option.name, ())
    if option.default is not None:
        defaults = {}
    shown = {m: v for m, v in defaults.items() if v is not None and m not in needed}
    texts = {m: option.kind.show(v) for m, v in shown.items()}
    if texts and len(set(texts.values())) == 1 and tuple(texts) == applies:
        parts.append(f"default: {next(iter(texts.values()))}")
    elif texts:
        by_value: dict[str, list[str]] = {}
        for m, text in texts.items():
            by_value.setdefault(text, []).append(m)
        parts.append(
            "default: " + ", ".join(f"{t} ({', '.join(ms)})" for t, ms in by_value.items())
        )
    return "; ".join(parts)


def fit_estimator(options: Mapping[str, Any]) -> Any:
    """The estimator the fit job's ``options`` describe (also its cross-option check).

    Raises
    ------
    OptionError
        ``resume`` without ``checkpoint``, a required option missing, or an
        option set that ``method``'s estimator does not take.
    InvalidParameterError
        A value the estimator refuses.
    """
    method = options["method"]
    if options.get("resume") and options.get("checkpoint") is None:
        raise OptionError("{0} needs {1}.", "resume", "checkpoint")
    for name, methods in REQUIRED_BY_METHOD.items():
        if options.get(name) is None and method in methods:
            raise MissingOption(name)
    accepted = set(accepted_parameters(method))
    job_arguments = _job_arguments()
    params = {}
    for opt in ESTIMATOR_OPTIONS:
        value = options.get(opt.name)
        if opt.estimator is None or value is None:
            continue
        if opt.estimator in accepted:
            params[opt.estimator] = value
        elif opt.target not in job_arguments:
            raise OptionError("{0} does not apply to {1}.", opt.name, ("method", method))
    return fit_job.make_estimator(method, **params)


def iteration_unit(estimator: Any) -> tuple[str, int | None]:
    """What one logged step of a fit is, and how many there are at most."""
    params = estimator.get_params()
    if isinstance(estimator, OnlineGaussianMixture):
        return "epoch", params.get("max_epochs")
    return "iteration", params.get("max_iter")
