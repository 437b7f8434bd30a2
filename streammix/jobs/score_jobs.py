"""Scoring and outlier-flagging jobs: a model, an input, a row-aligned output.

Layer: edges. One task per input chunk reads the chunk, scores it and writes
its rows of the output (see :mod:`streammix.io.outputs` for the contract
that makes the jobs safe to kill, re-run and extend).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.families import Prepared
from ..core.feature_mixtures import RowScorer
from ..core.kernel import score_rows_masked
from ..engine import quantile as quantiles
from ..engine.compute import map_indices
from ..engine.data import ChunkedData
from ..engine.scoring import prepare_for
from ..errors import (
    InvalidInputError,
    InvalidParameterError,
    NonFiniteInput,
    NonFiniteRow,
    UnscorableRow,
)
from ..estimators import load
from ..io.inputs import as_chunked, input_id, open_zarr_array
from ..io.location import StorageOptions, Where, as_location, locate
from ..io.modelfile import model_checksum
from ..io.outputs import (
    UNSCORABLE,
    ArraySpec,
    OutputArrays,
    RowOutput,
    check_destination,
    member,
    regular_chunk_rows,
    writing,
)

logger = logging.getLogger("streammix")

ON_INVALID = ("error", "skip", "flag")
Progress = Callable[[int, int], None]


def _check_on_invalid(on_invalid: str) -> None:
    if on_invalid not in ON_INVALID:
        raise InvalidParameterError(
            f"on_invalid must be one of {', '.join(ON_INVALID)}; got {on_invalid!r}."
        )


def _score_task(
    X: np.ndarray,
    offset: int,
    chunk: int,
    scorer: RowScorer,
    out: OutputArrays,
    on_invalid: str,
    with_component: bool,
) -> tuple[int, int]:
    ll, label = scorer(X)
    bad = np.isnan(ll)
    if bad.any() and on_invalid == "error":
        row = int(np.flatnonzero(bad)[0])
        if np.all(np.isfinite(X[row])):
            raise UnscorableRow(row)
        raise NonFiniteRow(row)
    out.write("log_likelihood", chunk, offset, ll)
    if with_component:
        out.write("component", chunk, offset, label.astype(np.int32))
    return X.shape[0], int(bad.sum())


def _flag_task(
    chunk: int, starts: np.ndarray, out: OutputArrays, threshold: float, on_invalid: str
) -> int:
    start, stop = int(starts[chunk]), int(starts[chunk + 1])
    ll = out.read("log_likelihood", start, stop)
    flag = (ll < threshold).astype(np.int8)
    bad = np.isnan(ll)
    flag[bad] = 1 if on_invalid == "flag" else UNSCORABLE
    out.write("flag", chunk, start, flag)
    return int(np.count_nonzero(flag == 1))


def preflight(
    data: Any,
    model: Where,
    array: str = "X",
    contamination: float | None = None,
    threshold: float | None = None,
    flagging: bool = False,
    *,
    output: Where | None = None,
    columns: Sequence[str] | None = None,
    storage_options: StorageOptions | None = None,
) -> None:
    """Refuse, before any cluster starts, a job that cannot run: an output location
    that cannot hold the output (checked first), unreadable data or model, feature
    counts that differ, irregular chunks, no threshold source."""
    if output is not None:
        check_destination(as_location(output, storage_options))
    _, est, _ = _prepare_job(
        locate(data, storage_options), locate(model, storage_options), array, columns
    )
    if flagging:
        check_threshold_source(est, contamination, threshold)


def _prepare_job(
    data_path: Any, model_path: Where, array: str, columns: Sequence[str] | None = None
) -> tuple[ChunkedData, Any, int]:
    model = load(model_path)
    data = as_chunked(data_path, array=array, columns=columns)
    model.check_n_features(data.n_features)
    return data, model, regular_chunk_rows(data.row_chunks)


def _score_pass(
    data: ChunkedData,
    model: Any,
    output: RowOutput,
    on_invalid: str,
    with_component: bool,
    progress: Progress | None,
) -> int:
    """Write ``log_likelihood`` (and ``component``) for the chunks still missing."""
    todo = output.todo("log_likelihood")
    if with_component:
        todo = sorted(set(todo) | set(output.todo("component")))
    if not todo:
        return 0
    output.mark_incomplete()
    try:
        results = data.map_chunks(
            _score_task,
            model.row_scorer(data),
            output.arrays(),
            on_invalid,
            with_component,
            chunks=todo,
            progress=progress,
            label="score",
        )
    except NonFiniteInput:
        raise NonFiniteInput(data.first_nonfinite_row()) from None
    return int(sum(r[1] for r in results))


def score(
    data: Any,
    model: Where,
    output: Where,
    *,
    array: str = "X",
    columns: Sequence[str] | None = None,
    incremental: bool = False,
    overwrite: bool = False,
    on_invalid: str = "error",
    storage_options: StorageOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write every row's log-likelihood and most likely component to ``output``.

    Parameters
    ----------
    data : location of a Zarr array or group (member ``array``) or of a Parquet file
        or dataset (``columns``), or any streammix input
    model : location of a saved model directory (or of a published pointer)
    output : location of the output Zarr group (``log_likelihood`` float64,
        ``component`` int32)
    incremental : score only rows appended since the output was written
    storage_options : fsspec options for locations given as text
    overwrite : replace an output written by another job
    on_invalid : {"error", "skip", "flag"}
        Rows with NaN or infinity: fail naming the first one, or write NaN and
        ``-1`` (``"flag"`` behaves as ``"skip"`` here).

    Returns
    -------
    dict
        A summary: rows, rows scored in this run, invalid rows, output path.
    """
    _check_on_invalid(on_invalid)
    data, model = locate(data, storage_options), locate(model, storage_options)
    output = as_location(output, storage_options)
    check_destination(output)
    ds, est, chunk_rows = _prepare_job(data, model, array, columns)
    job = {
        "kind": "score",
        "model_sha256": model_checksum(model),
        "input": input_id(data, array, columns),
        "n_features": ds.n_features,
        "on_invalid": on_invalid,
    }
    specs = [ArraySpec("log_likelihood", "float64"), ArraySpec("component", "int32")]
    with writing(
        output,
        specs,
        job,
        ds.n_rows,
        chunk_rows,
        incremental=incremental,
        overwrite=overwrite,
        parts=ds.parts,
    ) as (out, _):
        before = len(out.todo("log_likelihood"))
        invalid = _score_pass(ds, est, out, on_invalid, True, progress)
    return {
        "job": "score",
        "output": str(output),
        "rows": ds.n_rows,
        "chunks_written": before,
        "invalid_rows_in_run": invalid,
        "complete": True,
    }


def check_threshold_source(
    model: Any, contamination: float | None, threshold: float | None
) -> None:
    """Refuse, before any work, flag settings that cannot give a threshold."""
    if threshold is not None and contamination is not None:
        raise InvalidParameterError("Pass either --contamination or --threshold, not both.")
    if contamination is not None and not 0.0 < contamination <= 0.5:
        raise InvalidParameterError(f"contamination must be in (0, 0.5]; got {contamination}.")
    if threshold is not None and not np.isfinite(threshold):
        raise InvalidParameterError(f"threshold must be a finite number; got {threshold}.")
    if threshold is None and contamination is None and getattr(model, "threshold_", None) is None:
        raise InvalidParameterError(
            "No threshold: pass --contamination or --threshold, or use a model calibrated "
            "at fit time (fit --contamination)."
        )


def choose_threshold(
    out: RowOutput, model: Any, contamination: float | None, threshold: float | None
) -> tuple[float, dict[str, Any]]:
    """The log-likelihood below which a row is an outlier, and how it was chosen."""
    check_threshold_source(model, contamination, threshold)
    if threshold is not None:
        return float(threshold), {"method": "given", "threshold": float(threshold)}
    if contamination is not None:
        ll = member(out.group("r"), "log_likelihood")
        try:
            value = quantiles.quantile(ll, contamination)
        except ValueError:  # no finite log-likelihood at all
            raise InvalidInputError(
                "No row of the input could be scored (every row holds NaN or infinity), so "
                "--contamination has no log-likelihoods to take a quantile of; check the "
                "input, or pass --threshold."
            ) from None
        return value, {
            "method": "contamination",
            "contamination": float(contamination),
            "threshold": value,
            "quantile_of": "log_likelihood of this input",
        }
    calibrated = model.threshold_
    return float(calibrated), {
        "method": "model",
        "threshold": float(calibrated),
        **dict(getattr(model, "threshold_info_", {}) or {}),
    }


def flag(
    data: Any,
    model: Where,
    output: Where,
    *,
    contamination: float | None = None,
    threshold: float | None = None,
    array: str = "X",
    columns: Sequence[str] | None = None,
    incremental: bool = False,
    overwrite: bool = False,
    on_invalid: str = "error",
    truth: Where | None = None,
    explain: bool = False,
    storage_options: StorageOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write every row's log-likelihood and an outlier flag to ``output``.

    ``flag`` is int8: 1 outlier (log-likelihood below the threshold), 0 inlier,
    -1 a row that could not be scored (NaN or infinity, with
    ``on_invalid="skip"``; ``"flag"`` marks such rows as outliers). The
    threshold is ``threshold``, or the ``contamination`` quantile of this
    input's log-likelihoods, or the one the model was calibrated with at fit
    time; it and its origin are recorded in the output's attributes.
    ``truth`` (a Zarr array of 0/1 labels) adds precision and recall to the
    summary. ``explain`` adds, for flagged rows, ``component`` (int32, the most
    likely component; -1 for rows that could not be scored) and ``zscores``
    (rows x features: each feature's conditional z-score under that component,
    NaN for rows not flagged); see :meth:`BaseMixture.explain`.
    """
    _check_on_invalid(on_invalid)
    data, model = locate(data, storage_options), locate(model, storage_options)
    output = as_location(output, storage_options)
    check_destination(output)
    ds, est, chunk_rows = _prepare_job(data, model, array, columns)
    check_threshold_source(est, contamination, threshold)
    job = {
        "kind": "flag",
        "model_sha256": model_checksum(model),
        "input": input_id(data, array, columns),
        "n_features": ds.n_features,
        "on_invalid": on_invalid,
        "contamination": contamination,
        "threshold": threshold,
        "explain": explain,
    }
    specs = [ArraySpec("log_likelihood", "float64"), ArraySpec("flag", "int8")]
    if explain:
        specs += [
            ArraySpec("component", "int32"),
            ArraySpec("zscores", "float64", (ds.n_features,)),
        ]
    with writing(
        output,
        specs,
        job,
        ds.n_rows,
        chunk_rows,
        incremental=incremental,
        overwrite=overwrite,
        parts=ds.parts,
    ) as (out, _):
        _score_pass(ds, est, out, on_invalid, False, progress)
        value, how = choose_threshold(out, est, contamination, threshold)
        group = out.group("r")
        if group.attrs.get("threshold") != how:
            for name in ("flag", "component", "zscores") if explain else ("flag",):
                out.reset(name)
            out.set_attrs(threshold=how)
        starts = np.concatenate([[0], np.cumsum(out.expected_rows())])
        map_indices(
            _flag_task,
            out.todo("flag"),
            starts,
            out.arrays(),
            value,
            on_invalid,
            progress=progress,
            label="flag",
        )
        if explain:
            _explain_pass(ds, est, out, progress)
    flags = np.asarray(member(out.group("r"), "flag")[:])
    summary: dict[str, Any] = {
        "job": "flag",
        "output": str(output),
        "rows": ds.n_rows,
        "flagged": int(np.count_nonzero(flags == 1)),
        "unscorable": int(np.count_nonzero(flags == UNSCORABLE)),
        "threshold": how,
        "complete": True,
    }
    if truth is not None:
        summary.update(evaluate(flags, as_location(truth, storage_options)))
    return summary


def _explain_task(
    X: np.ndarray, offset: int, chunk: int, prep: Prepared, params: Any, out: OutputArrays
) -> int:
    from ..core.explain import conditional_zscores

    flags = out.read("flag", offset, offset + len(X))
    ll, component = score_rows_masked(X, prep)
    scorable = ~np.isnan(ll)
    z = np.full(X.shape, np.nan)
    z[scorable] = conditional_zscores(params, X[scorable], component[scorable])
    z[flags != 1] = np.nan
    out.write("component", chunk, offset, component.astype(np.int32))
    out.write("zscores", chunk, offset, z)
    return int(np.count_nonzero(flags == 1))


def _explain_pass(ds: ChunkedData, model: Any, out: RowOutput, progress: Progress | None) -> None:
    todo = sorted(set(out.todo("component")) | set(out.todo("zscores")))
    if not todo:
        return
    params = model.params_
    ds.map_chunks(
        _explain_task,
        prepare_for(params, ds),
        params,
        out.arrays(),
        chunks=todo,
        progress=progress,
        label="explain",
    )


def evaluate(flags: np.ndarray, truth: Where) -> dict[str, Any]:
    """Precision and recall of ``flags == 1`` against a 0/1 Zarr array."""
    labels = np.asarray(open_zarr_array(truth)[:]).astype(bool)
    if labels.shape != flags.shape:
        raise InvalidInputError(
            f"The truth array has {labels.shape[0]} rows, the flags {flags.shape[0]}."
        )
    flagged = flags == 1
    tp = int(np.count_nonzero(flagged & labels))
    return {
        "precision": tp / max(int(flagged.sum()), 1),
        "recall": tp / max(int(labels.sum()), 1),
        "true_outliers": int(labels.sum()),
    }
