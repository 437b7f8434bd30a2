"""The fit job: fit a mixture, optionally calibrate an outlier threshold, save it.

Layer: edges. With a checkpoint directory, the state of the fit is written
after every EM iteration (every epoch for online EM): for batch EM the frame
and every run's parameters and lower bounds, for online EM the model with its
running statistics. ``resume=True`` continues from the checkpoint and ends with
the parameters an uninterrupted fit would have reached, because every pass is
deterministic given the data and the seed.
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

from ..core.families import get_family
from ..core.frame import Frame
from ..core.params import MixtureParams
from ..engine.batch_em import IterationReport, RunState
from ..errors import InvalidInputError, InvalidParameterError, ModelFileError
from ..estimators.density import BaseMixture
from ..estimators.gaussian_mixture import GaussianMixture
from ..estimators.online_mixture import OnlineGaussianMixture
from ..estimators.outlier_detector import OutlierDetector
from ..io.inputs import as_chunked
from ..io.location import Location, StorageOptions, as_location, is_location
from ..io.modelfile import read_model_dir, write_model_dir

logger = logging.getLogger("streammix")

EM_CHECKPOINT = "EMCheckpoint"
ONLINE_CHECKPOINT = "OnlineCheckpoint"


def _fingerprint(
    estimator: BaseMixture, data: Any, array: str, columns: Sequence[str] | None = None
) -> str:
    """What a checkpoint must match to be resumed: estimator settings and input."""
    params = {
        k: v
        for k, v in estimator.get_params().items()
        if not k.endswith("_init") and k not in ("verbose", "verbose_interval")
    }
    source = str(as_location(data)) if is_location(data) else repr(type(data))
    doc = {"estimator": type(estimator).__name__, "params": params, "input": source}
    doc["array"] = ",".join(columns) if columns else array
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _save_em_checkpoint(path: Location, report: IterationReport, fingerprint: str) -> None:
    arrays = {"frame_shift": report.frame.shift}
    runs = []
    for i, s in enumerate(report.states):
        p = s.params
        arrays.update(
            {
                f"run{i}_weights": p.weights,
                f"run{i}_means": p.means,
                f"run{i}_covariances": p.covariances,
                f"run{i}_precisions_cholesky": p.precisions_cholesky,
            }
        )
        runs.append({"lower_bounds": list(s.lower_bounds), "converged": s.converged})
    meta = {
        "kind": EM_CHECKPOINT,
        "fingerprint": fingerprint,
        "iteration": report.iteration,
        "frame_scale": report.frame.scale,
        "covariance_type": report.states[0].params.family.name,
        "runs": runs,
    }
    write_model_dir(path, meta, arrays)


def _load_em_checkpoint(path: Location, fingerprint: str) -> tuple[Frame, list[RunState], int]:
    meta, arrays = read_model_dir(path)
    _check_checkpoint(meta, EM_CHECKPOINT, fingerprint, path)
    family = get_family(str(meta["covariance_type"]))
    states = []
    for i, run in enumerate(meta["runs"]):
        params = MixtureParams(
            family,
            arrays[f"run{i}_weights"],
            arrays[f"run{i}_means"],
            arrays[f"run{i}_covariances"],
            arrays[f"run{i}_precisions_cholesky"],
        )
        states.append(
            RunState(params, tuple(float(b) for b in run["lower_bounds"]), bool(run["converged"]))
        )
    frame = Frame(arrays["frame_shift"], float(meta["frame_scale"]))
    return frame, states, int(meta["iteration"])


def _check_checkpoint(meta: dict[str, Any], kind: str, fingerprint: str, path: Location) -> None:
    if meta.get("kind") != kind:
        raise ModelFileError(f"'{path}' is not a checkpoint of this kind of fit.")
    if meta.get("fingerprint") != fingerprint:
        raise ModelFileError(
            f"The checkpoint in '{path}' belongs to a fit with other settings or another "
            "input; remove it or resume with the same options."
        )


def preflight(
    data: Any,
    array: str,
    n_components: int,
    *,
    columns: Sequence[str] | None = None,
    destinations: Sequence[Any] = (),
    storage_options: StorageOptions | None = None,
) -> None:
    """Refuse, before any cluster starts, a fit that cannot run: destinations
    (model, checkpoint) that cannot be written, input a fit cannot use (shape,
    dtype, chunking, fewer rows than components)."""
    for where in destinations:
        if where is not None:
            as_location(where, storage_options).check_writable()
    if is_location(data):
        data = as_location(data, storage_options)
    ds = as_chunked(data, array=array, columns=columns)
    if ds.n_rows < n_components:
        raise InvalidInputError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {ds.n_rows}"
        )


def make_estimator(
    method: str = "batch",
    *,
    n_components: int,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    init_params: str = "kmeans",
    seed: int | None = 0,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    max_epochs: int = 1,
    batch_size: int | None = None,
    contamination: float | None = None,
) -> BaseMixture:
    """The estimator a fit job runs: batch EM, online (stepwise) EM, or the robust
    outlier detector (whose defaults apply to what is not given)."""
    if method == "batch":
        return GaussianMixture(
            n_components,
            covariance_type=covariance_type,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            random_state=seed,
        )
    if method == "online":
        return OnlineGaussianMixture(
            n_components,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            init_params=init_params,
            max_epochs=max_epochs,
            batch_size=batch_size,
            random_state=seed,
        )
    if method == "detector":
        return OutlierDetector(
            0.1 if contamination is None else contamination,
            n_components=n_components,
            covariance_type=covariance_type,
            random_state=seed,
        )
    raise InvalidParameterError(f"method must be 'batch', 'online' or 'detector'; got {method!r}.")


def fit(
    data: Any,
    model_dir: str | os.PathLike[str] | Location,
    estimator: BaseMixture,
    *,
    array: str = "X",
    columns: Sequence[str] | None = None,
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
            dest.check_writable()
    ds = as_chunked(data, array=array, columns=columns)
    fingerprint = _fingerprint(estimator, data, array, columns)
    if isinstance(estimator, OutlierDetector):
        estimator.fit(ds)
        contamination = None  # the detector calibrated itself at its contamination
    elif isinstance(estimator, OnlineGaussianMixture):
        _fit_online(estimator, ds, ckpt, resume, fingerprint, on_iteration)
    elif isinstance(estimator, GaussianMixture):
        _fit_batch(estimator, ds, ckpt, resume, fingerprint, on_iteration)
    else:
        raise TypeError(f"cannot fit {type(estimator).__name__} as a job")
    if contamination is not None:
        estimator.calibrate(ds, contamination)
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
        "covariance_type": estimator.covariance_type,
        "n_iter": int(estimator.n_iter_),
        "converged": bool(estimator.converged_),
        "lower_bound": float(estimator.lower_bound_),
    }
    if getattr(estimator, "threshold_", None) is not None:
        summary["threshold"] = estimator.threshold_
    return summary


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
        start = _load_em_checkpoint(ckpt, fingerprint)
        logger.info("resuming from iteration %d", start[2])

    def hook(report: IterationReport) -> None:
        if ckpt is not None:
            _save_em_checkpoint(ckpt, report, fingerprint)
        if on_iteration is not None:
            best = report.best
            bounds = best.lower_bounds
            change = bounds[-1] - bounds[-2] if len(bounds) > 1 else float("nan")
            on_iteration(report.iteration, bounds[-1], change, report.seconds)

    est._fit(ds, on_iteration=hook, resume=start)


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
        meta, arrays = read_model_dir(ckpt)
        _check_checkpoint(meta.get("checkpoint") or {}, ONLINE_CHECKPOINT, fingerprint, ckpt)
        saved = OnlineGaussianMixture._from_model(meta, arrays)
        start = (saved._state(), list(saved.lower_bounds_))
        logger.info("resuming after epoch %d", len(saved.lower_bounds_))
    last = {"bound": np.nan, "time": time.perf_counter()}

    def hook(epoch: int, model: OnlineGaussianMixture) -> None:
        if ckpt is not None:
            meta = model._model_meta()
            meta["checkpoint"] = {"kind": ONLINE_CHECKPOINT, "fingerprint": fingerprint}
            write_model_dir(ckpt, meta, model._model_arrays())
        now = time.perf_counter()
        if on_iteration is not None:
            bound = model.lower_bounds_[-1]
            on_iteration(epoch, bound, bound - last["bound"], now - last["time"])
            last["bound"] = bound
        last["time"] = now

    est._fit(ds, on_epoch=hook, resume=start)
