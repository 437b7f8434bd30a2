"""The fit job: fit a mixture, optionally calibrate an outlier threshold, save it.

Layer: edges. With a checkpoint location, the fit's resumable state (the
engine's :class:`~streammix.engine.batch_em.EMCheckpoint` or
:class:`~streammix.engine.online_em.OnlineCheckpoint`) is written after every
EM iteration (every epoch for online EM) through :mod:`streammix.io.checkpoints`.
``resume=True`` continues from the checkpoint and ends with the parameters an
uninterrupted fit would have reached, because every pass is deterministic given
the data and the seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..engine.batch_em import EMCheckpoint, IterationReport
from ..engine.online_em import OnlineCheckpoint
from ..errors import InvalidInputError, InvalidParameterError
from ..estimators import (
    BayesianGaussianMixture,
    GaussianMixture,
    OnlineGaussianMixture,
    OutlierDetector,
    load,
)
from ..estimators.density import MixtureDensity
from ..io.checkpoints import read_checkpoint, write_checkpoint
from ..io.inputs import as_chunked, input_id
from ..io.location import Location, StorageOptions, as_location, is_location
from ..io.modelfile import check_destination
from ..io.outputs import check_destination as check_output
from ..io.weights import as_weighted
from .stream_job import consumed_record

logger = logging.getLogger("streammix")


def _fingerprint(
    estimator: MixtureDensity,
    data: Any,
    array: str,
    columns: Sequence[str] | None = None,
    sample_weight: Any = None,
) -> str:
    """What a checkpoint must match to be resumed: estimator settings and input (its
    location, or the content of in-memory data: see :func:`~streammix.io.inputs.input_id`)."""
    params = {
        k: v
        for k, v in estimator.get_params().items()
        if not k.endswith("_init") and k not in ("verbose", "verbose_interval")
    }
    # A location as before content fingerprints existed (its checkpoints still resume).
    source = str(as_location(data)) if is_location(data) else input_id(data)
    doc = {"estimator": type(estimator).__name__, "params": params, "input": source}
    doc["array"] = ",".join(columns) if columns else array
    if sample_weight is not None:
        doc["sample_weight"] = (
            str(sample_weight) if is_location(sample_weight) else input_id(sample_weight)
        )
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def preflight(
    data: Any,
    array: str,
    n_components: int,
    *,
    columns: Sequence[str] | None = None,
    destinations: Sequence[Any] = (),
    outputs: Sequence[Any] = (),
    storage_options: StorageOptions | None = None,
) -> None:
    """Refuse, before any cluster starts, a fit that cannot run: model directories
    (``destinations``: model, checkpoint) and row outputs (``outputs``) that cannot
    be written, checked before the input is opened; input a fit cannot use (shape,
    dtype, chunking, fewer rows than components)."""
    for where in destinations:
        if where is not None:
            check_destination(as_location(where, storage_options))
    for where in outputs:
        check_output(as_location(where, storage_options))
    if is_location(data):
        data = as_location(data, storage_options)
    ds = as_chunked(data, array=array, columns=columns)
    if ds.n_rows < n_components:
        raise InvalidInputError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {ds.n_rows}"
        )


ESTIMATORS: dict[str, type[MixtureDensity]] = {
    "batch": GaussianMixture,
    "online": OnlineGaussianMixture,
    "detector": OutlierDetector,
    "bayesian": BayesianGaussianMixture,
}


def make_estimator(method: str = "batch", **params: Any) -> MixtureDensity:
    """The estimator a fit job runs: batch EM (``GaussianMixture``), online (stepwise)
    EM (``OnlineGaussianMixture``), the robust ``OutlierDetector`` or variational
    Bayesian EM (``BayesianGaussianMixture``), from its
    constructor parameters. Jobs are reproducible: ``random_state`` defaults to 0.

    Raises
    ------
    InvalidParameterError
        An unknown method, or a parameter the method's estimator does not take.
    """
    cls = ESTIMATORS.get(method)
    if cls is None:
        raise InvalidParameterError(
            f"method must be one of {', '.join(ESTIMATORS)}; got {method!r}."
        )
    accepted = set(cls.param_names())
    foreign = sorted(set(params) - accepted)
    if foreign:
        raise InvalidParameterError(
            f"{', '.join(foreign)} do(es) not apply to method {method!r} ({cls.__name__} "
            f"takes {', '.join(sorted(accepted))})."
        )
    params.setdefault("random_state", 0)
    if method == "detector" and params.get("contamination") is None:
        params.pop("contamination", None)
    estimator = cls(**params)
    return estimator.check_params()


def fit(
    data: Any,
    model_dir: str | os.PathLike[str] | Location,
    estimator: MixtureDensity,
    *,
    array: str = "X",
    columns: Sequence[str] | None = None,
    sample_weight: Any = None,
    checkpoint: str | os.PathLike[str] | Location | None = None,
    resume: bool = False,
    contamination: float | None = None,
    storage_options: StorageOptions | None = None,
    on_iteration: Callable[[int, float, float, float], None] | None = None,
) -> dict[str, Any]:
    """Fit ``estimator`` on ``data`` and save it to ``model_dir``.

    Parameters
    ----------
    data : a location (Zarr or Parquet) or any streammix input
    model_dir : location of the model directory to write
    estimator : GaussianMixture or OnlineGaussianMixture (unfitted settings)
    columns : the columns of a Parquet input (default: every numeric column)
    sample_weight : row weights: a Zarr location or array, an in-memory array, or the
        name of a column of Parquet ``data`` (see :mod:`streammix.io.weights`)
    checkpoint : location for the fit's state after every iteration (epoch)
    resume : continue from ``checkpoint`` when it holds a state of this fit
    contamination : also calibrate ``threshold_`` at this quantile of the
        training rows' log-likelihoods
    storage_options : fsspec options for locations given as text
    on_iteration : called with ``(iteration, mean log-likelihood, change, seconds)``

    Returns
    -------
    dict
        A summary of the fit.
    """
    if is_location(data):
        data = as_location(data, storage_options)
    model_loc = as_location(model_dir, storage_options)
    ckpt = as_location(checkpoint, storage_options) if checkpoint is not None else None
    for dest in (model_loc, ckpt):
        if dest is not None:
            check_destination(dest)
    ds = as_weighted(
        data, sample_weight, array=array, columns=columns, storage_options=storage_options
    )
    fingerprint = _fingerprint(estimator, data, array, columns, sample_weight)
    if getattr(estimator, "warm_start", False) and not estimator.__sklearn_is_fitted__():
        _warm_from(estimator, model_loc)
    if isinstance(estimator, OutlierDetector):
        estimator.fit(ds)
        contamination = None  # the detector calibrated itself at its contamination
    elif isinstance(estimator, OnlineGaussianMixture):
        _fit_online(estimator, ds, ckpt, resume, fingerprint, on_iteration)
    elif isinstance(estimator, BayesianGaussianMixture):
        if ckpt is not None:
            raise InvalidParameterError(
                "--checkpoint is not available for --method bayesian; fit without it."
            )
        estimator.fit(ds)
    elif isinstance(estimator, GaussianMixture):
        _fit_batch(estimator, ds, ckpt, resume, fingerprint, on_iteration)
    else:
        raise TypeError(f"cannot fit {type(estimator).__name__} as a job")
    if contamination is not None:
        estimator.calibrate(ds, contamination)
    if isinstance(estimator, OnlineGaussianMixture):
        # what update and stream continue from
        estimator.consumed_ = consumed_record(ds, input_id(data, array, columns), ds.n_rows)
    estimator.save(model_loc)
    if ckpt is not None and ckpt.exists():
        ckpt.remove()
    summary = {
        "job": "fit",
        "model": str(model_loc),
        "kind": type(estimator).__name__,
        "rows": ds.n_rows,
        "n_features": ds.n_features,
        "n_components": int(estimator.weights_.shape[0]),
        "covariance_type": getattr(estimator, "covariance_type_", estimator.covariance_type),
        "n_iter": int(estimator.n_iter_),
        "converged": bool(estimator.converged_),
        "lower_bound": float(estimator.lower_bound_),
    }
    if getattr(estimator, "threshold_", None) is not None:
        summary["threshold"] = estimator.threshold_
    return summary


def _warm_from(estimator: MixtureDensity, model: Location) -> None:
    """``warm_start`` from a shell: continue from the model already at ``model``."""
    if not model.exists():
        logger.info("no model at %s yet: warm start from a fresh initialisation", model)
        return
    saved = load(model)
    settings = estimator.get_params()
    k = saved.params_.n_components
    if settings.pop("n_components") != k:
        raise InvalidParameterError(
            f"warm_start continues the model at '{model}', which has {k} components; "
            "ask for as many (or fit without warm_start)."
        )
    settings.pop("warm_start")
    cls = OnlineGaussianMixture if isinstance(estimator, OnlineGaussianMixture) else GaussianMixture
    warm: MixtureDensity = cls.from_model(saved, **settings)
    vars(estimator).update(vars(warm))
    logger.info("warm start from the model at %s", model)


def _fit_batch(
    est: GaussianMixture,
    ds: Any,
    ckpt: Location | None,
    resume: bool,
    fingerprint: str,
    on_iteration: Callable[[int, float, float, float], None] | None,
) -> None:
    start = None
    if resume and ckpt is not None and ckpt.exists():
        start = read_checkpoint(ckpt, EMCheckpoint, fingerprint)
        logger.info("resuming from iteration %d", start.iteration)

    def hook(report: IterationReport) -> None:
        if ckpt is not None:
            write_checkpoint(ckpt, report.checkpoint(), fingerprint)
        if on_iteration is not None:
            best = report.best
            bounds = best.lower_bounds
            change = bounds[-1] - bounds[-2] if len(bounds) > 1 else float("nan")
            on_iteration(report.iteration, bounds[-1], change, report.seconds)

    est.fit(ds, on_iteration=hook, resume=start)


def _fit_online(
    est: OnlineGaussianMixture,
    ds: Any,
    ckpt: Location | None,
    resume: bool,
    fingerprint: str,
    on_iteration: Callable[[int, float, float, float], None] | None,
) -> None:
    start = None
    if resume and ckpt is not None and ckpt.exists():
        start = read_checkpoint(ckpt, OnlineCheckpoint, fingerprint)
        logger.info("resuming after epoch %d", len(start.lower_bounds))
    last = {"bound": np.nan, "time": time.perf_counter()}

    def hook(epoch: int, model: OnlineGaussianMixture) -> None:
        if ckpt is not None:
            write_checkpoint(ckpt, model.checkpoint(), fingerprint)
        now = time.perf_counter()
        if on_iteration is not None:
            bound = model.lower_bounds_[-1]
            on_iteration(epoch, bound, bound - last["bound"], now - last["time"])
            last["bound"] = bound
        last["time"] = now

    est.fit(ds, on_epoch=hook, resume=start)
