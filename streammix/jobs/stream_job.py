"""The update and stream jobs: an online model that follows a growing input.

Layer: edges.

What a model has learned from is part of the model: an online model's
``consumed_`` record names the input, how many of its rows (from the start)
the model has learned, and a SHA-256 of the last of those rows, so that a later
run learns exactly the rows appended since, and refuses (exit 3) an input that
shrank or whose consumed rows changed (replaced).

``update`` learns the appended rows in the input's own chunks (one update per
chunk) and writes the model once: a model directory is rewritten array files
first and manifest last (readers see the old model or the new one); a
published pointer gets a new version and is switched with one write.

``stream`` follows an input as it grows. Batches are fixed runs of
``batch_rows`` rows (default: the input's chunk), counted from where the model
stands, and a batch is processed only once all its rows are there (for Zarr,
once every chunk it covers is stored), never by arrival time: a follower that
ran all along and one that started late over the final input cut the same
batches. For each batch, in order:

1. score its rows with the current model and flag those below the threshold
   (a new anomaly is flagged before it is learned);
2. write the log-likelihoods and flags to OUTPUT (the output contract of
   :mod:`streammix.io.outputs`: whole chunks, then progress marks; one output
   chunk per batch);
3. learn the batch (one online-EM update; rows that cannot be scored are not
   learned);
4. write the new model, with its ``consumed_`` record and the batch's line of
   ``stream_history_``, as a new version under ``OUTPUT/_stream/models``, and
   publish it when due (``publish`` every ``publish_every`` batches);
5. commit: switch the pointer ``OUTPUT/_stream/current`` to that version, in
   one write.

A follower killed at any moment restarts from the last commit; the batches
after it are redone with the same model and give the same bytes, so every row
is scored exactly once and the model equals an uninterrupted run's. The flag
threshold is fixed for the life of OUTPUT: ``threshold``, else the model's
calibrated one, else the ``contamination`` quantile of the first batch's
log-likelihoods under the starting model; it is stored in OUTPUT's job record
and read back on restart.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..core.kernel import score_rows_masked
from ..engine.data import ChunkedData
from ..engine.quantile import quantile
from ..engine.scoring import prepare_for
from ..errors import (
    InvalidInputError,
    InvalidParameterError,
    OutputConflictError,
    StreammixError,
)
from ..estimators import OnlineGaussianMixture, load
from ..estimators.density import MixtureDensity
from ..io.inputs import as_chunked, input_id, open_zarr_array
from ..io.location import Location, StorageOptions, Where, as_location, is_location
from ..io.modelfile import (
    META_FILE,
    copy_model_dir,
    list_versions,
    model_checksum,
    remove_model_dir,
    resolve_model,
    write_model_dir,
    write_pointer,
)
from ..io.outputs import (
    UNSCORABLE,
    ArraySpec,
    RowOutput,
    check_destination,
    holding_output,
    member,
    open_output,
)

logger = logging.getLogger("streammix")

HISTORY_BATCHES = 10_000
"""Batches of ``stream_history_`` a model keeps."""
KEPT_STATES = 2
"""Committed model versions kept under ``OUTPUT/_stream/models``."""


# ------------------------------------------------------------ what was consumed
def _rows(ds: ChunkedData, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the input, read now."""
    part = ds.array[start:stop, : ds.n_features]
    if ds.is_lazy:
        part = part.compute(scheduler="sync")
    return np.ascontiguousarray(np.asarray(part))


def _fingerprint(rows: np.ndarray) -> str:
    digest = hashlib.sha256(f"{rows.dtype.str}{rows.shape}".encode())
    digest.update(np.ascontiguousarray(rows).view(np.uint8).data)
    return digest.hexdigest()


def _tail(ds: ChunkedData, rows: int) -> np.ndarray:
    """The last rows consumed (at most one chunk's worth) that the fingerprint covers."""
    return _rows(ds, max(0, rows - min(rows, ds.row_chunks[0])), rows)


def consumed_record(
    ds: ChunkedData, identity: str, rows: int, last: np.ndarray | None = None
) -> dict[str, Any]:
    """The ``consumed_`` record of a model that has learned the first ``rows`` rows
    (``last``: the rows that end there, when at hand, to spare reading them again)."""
    span = min(rows, ds.row_chunks[0])
    tail = last[-span:] if last is not None and last.shape[0] >= span else _tail(ds, rows)
    record: dict[str, Any] = {
        "input": identity,
        "rows": int(rows),
        "fingerprint": _fingerprint(tail),
    }
    if ds.parts:
        taken, parts = 0, []
        for name, n in ds.parts:
            if taken >= rows:
                break
            parts.append([name, int(n)])
            taken += n
        record["parts"] = parts
    return record


def resume_row(model: Any, ds: ChunkedData, identity: str) -> int:
    """Where learning continues: the rows the model consumed from this input (0 when
    its record is of another input, or it has none).

    Raises
    ------
    InvalidInputError
        The input shrank below the consumed rows, or they changed (replaced).
    """
    record = getattr(model, "consumed_", None)
    if not record or record.get("input") != identity:
        return 0
    rows = int(record["rows"])
    if ds.n_rows < rows:
        raise InvalidInputError(
            f"{ds.source} has {ds.n_rows} rows but the model has already learned {rows} of "
            "them: the input shrank or was replaced since the model last read it."
        )
    parts = [tuple(p) for p in record.get("parts") or []]
    seen = [tuple(p) for p in ds.parts[: len(parts)]]
    if parts and [p[0] for p in parts] != [p[0] for p in seen]:
        raise InvalidInputError(
            f"The files of {ds.source} changed since the model last read them: only "
            "appended files can be followed."
        )
    if _fingerprint(_tail(ds, rows)) != record["fingerprint"]:
        raise InvalidInputError(
            f"The rows of {ds.source} that the model has learned changed since it last read "
            "them: the input was replaced or rewritten."
        )
    return rows


def _online(model: MixtureDensity, forget: float | None) -> OnlineGaussianMixture:
    """The model as an online one (a batch fit continues as stepwise EM)."""
    if isinstance(model, OnlineGaussianMixture):
        online = model
    elif hasattr(model, "params_") and type(model).__name__ == "GaussianMixture":
        online = OnlineGaussianMixture.from_model(model)
    else:
        raise InvalidInputError(
            f"The model is a {type(model).__name__}; update and stream continue a "
            "Gaussian mixture (fit --method online or batch)."
        )
    if forget is not None:
        online.set_params(forget=forget)
    return online


def forget_rate(forget: float | None, half_life: float | None) -> float | None:
    """A constant step from ``forget`` or from a half-life in updates (old data weigh
    half after ``half_life`` updates: ``1 - 2 ** (-1 / half_life)``)."""
    if forget is not None and half_life is not None:
        raise InvalidParameterError("Pass either --forget or --half-life, not both.")
    if half_life is not None:
        return float(1.0 - 2.0 ** (-1.0 / half_life))
    return forget


def _save(model: OnlineGaussianMixture, where: Location) -> str:
    """Write the model at ``where``: in place for a directory; for a published pointer,
    as a new version beside the current one, then the pointer switched."""
    if where.exists() and where.isfile():
        current = resolve_model(where)
        name = f"rows-{int(model.consumed_['rows']):014d}" if model.consumed_ else "updated"
        version = current.parent.child(name)
        write_model_dir(version, *model.to_files())
        write_pointer(where, version)
        return str(version)
    return model.save(where)


# ------------------------------------------------------------------- update
def update(
    data: Any,
    model: Where,
    *,
    array: str = "X",
    columns: Sequence[str] | None = None,
    forget: float | None = None,
    half_life: float | None = None,
    storage_options: StorageOptions | None = None,
) -> dict[str, Any]:
    """Continue an online model with the rows appended to ``data`` since it last read it.

    Parameters
    ----------
    data : location of a Zarr array or group, or of a Parquet file or dataset
    model : location of a model directory or a published pointer; an online model
        (a batch-fitted one continues as online EM)
    forget, half_life : a constant step for a drifting input (stored in the model)
    storage_options : fsspec options for locations given as text

    Returns
    -------
    dict
        Rows learned in this run (0: nothing changed), the rows consumed in all,
        and where the model was written.
    """
    rate = forget_rate(forget, half_life)
    loc = as_location(data, storage_options) if is_location(data) else data
    model_loc = as_location(model, storage_options)
    est = _online(load(model_loc), rate)
    ds = as_chunked(loc, array=array, columns=columns)
    est.check_n_features(ds.n_features)
    identity = input_id(loc, array, columns)
    start = resume_row(est, ds, identity)
    summary: dict[str, Any] = {"job": "update", "model": str(model_loc), "rows": ds.n_rows}
    if start == ds.n_rows:
        return {**summary, "rows_learned": 0, "rows_consumed": start, "updated": False}
    new = ds.array[start:]
    est.partial_fit(ChunkedData.from_dask(new) if ds.is_lazy else np.asarray(new))
    est.consumed_ = consumed_record(ds, identity, ds.n_rows)
    written = _save(est, model_loc)
    return {
        **summary,
        "rows_learned": ds.n_rows - start,
        "rows_consumed": ds.n_rows,
        "updated": True,
        "written": written,
    }


# ------------------------------------------------------------------- stream
class Metrics:
    """The follower's counters, served in Prometheus' text format on loopback."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.lock = threading.Lock()

    def set(self, **values: float) -> None:
        with self.lock:
            self.values.update(values)

    def text(self) -> str:
        with self.lock:
            items = sorted(self.values.items())
        lines = []
        for name, value in items:
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [
                f"# TYPE streammix_stream_{name} {kind}",
                f"streammix_stream_{name} {value!r}",
            ]
        return "\n".join(lines) + "\n"

    @contextmanager
    def serving(self, port: int | None) -> Iterator[int | None]:
        """Serve ``/metrics`` on 127.0.0.1:``port`` (0: any free port) while inside."""
        if port is None:
            yield None
            return
        metrics = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = metrics.text().encode()
                self.send_response(200 if self.path in ("/", "/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield int(server.server_address[1])
        finally:
            server.shutdown()
            server.server_close()


class StopSignal:
    """SIGTERM and SIGINT ask the follower to stop after the current batch."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.name: str | None = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.name = signal.Signals(signum).name
        self.event.set()

    @contextmanager
    def installed(self) -> Iterator[StopSignal]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _stored(data: Any, ds: ChunkedData, array: str, start: int, stop: int) -> bool:
    """Whether every Zarr chunk holding rows ``start:stop`` is stored (a writer resizes
    the array before it writes the new chunks); other inputs are whole when seen."""
    if not is_location(data) or ds.parts:
        return True
    from zarr.core.sync import sync

    arr = open_zarr_array(data, array)
    rows = int(arr.chunks[0])
    prefix = f"{arr.path}/" if arr.path else ""
    for c in range(start // rows, -(-stop // rows)):
        key = prefix + arr.metadata.encode_chunk_key((c, 0))
        if not sync(arr.store.exists(key)):
            return False
    return True


class _Follower:
    """The state of one follower run: its output, its committed model, its batches."""

    def __init__(
        self,
        data: Any,
        output: Location,
        *,
        array: str,
        columns: Sequence[str] | None,
        batch_rows: int | None,
        publish: Location | None,
        publish_every: int,
    ) -> None:
        self.data, self.output = data, output
        self.array, self.columns = array, columns
        self.batch_rows_option = batch_rows
        self.publish, self.publish_every = publish, publish_every
        self.state = output.child("_stream")
        self.pointer = self.state.child("current")
        self.identity = input_id(data, array, columns)

    def open_input(self) -> ChunkedData:
        return as_chunked(self.data, array=self.array, columns=self.columns)

    # ---------------------------------------------------------- the start
    def start(
        self,
        model: Location,
        rate: float | None,
        threshold: float | None,
        contamination: float | None,
        ds: ChunkedData,
    ) -> tuple[OnlineGaussianMixture, RowOutput, float, int, int]:
        """The committed state (after a restart) or a new one; returns the model, the
        output, the threshold, the first row the output holds and the next row."""
        if self.pointer.exists():
            est = load(self.pointer)
            if not isinstance(est, OnlineGaussianMixture) or not est.consumed_:
                raise StreammixError(f"'{self.pointer}' does not hold a follower's model.")
            attrs: dict[str, Any] = open_output(self.output, "r").attrs.asdict()
            job: dict[str, Any] = attrs["job"]
            if job.get("input") != self.identity:
                raise InvalidInputError(
                    f"'{self.output}' follows {job.get('input')!r}, not {self.identity!r}."
                )
            if rate is not None and rate != est.forget:
                est.set_params(forget=rate)
            row = resume_row(est, ds, self.identity)
            out = self._output(job)
            return est, out, float(job["threshold"]["threshold"]), int(job["first_row"]), row
        est = _online(load(model), rate)
        est.check_n_features(ds.n_features)
        first = resume_row(est, ds, self.identity)
        batch = self.batch_rows_option or int(ds.row_chunks[0])
        how = self._threshold(est, ds, first, batch, threshold, contamination)
        job = {
            "kind": "stream",
            "input": self.identity,
            "n_features": ds.n_features,
            "model_sha256": model_checksum(model),
            "first_row": first,
            "batch_rows": batch,
            "threshold": how,
        }
        return est, self._output(job), float(how["threshold"]), first, first

    def _output(self, job: dict[str, Any]) -> RowOutput:
        """The output of this follower: opened when it exists (its job must be this
        one), else created empty; it grows one chunk per batch."""
        if check_destination(self.output):
            group = open_output(self.output, "r")
            if group.attrs.get("job") != job:
                raise OutputConflictError(
                    f"'{self.output}' was written by another job or follower (another "
                    "input, starting model or threshold); choose another output."
                )
            attrs: dict[str, Any] = group.attrs.asdict()
            return RowOutput(self.output, _specs(), int(attrs["n_rows"]), job["batch_rows"])
        out, _ = RowOutput.prepare(self.output, _specs(), job, 0, job["batch_rows"])
        return out

    def _threshold(
        self,
        est: OnlineGaussianMixture,
        ds: ChunkedData,
        first: int,
        batch: int,
        threshold: float | None,
        contamination: float | None,
    ) -> dict[str, Any]:
        if threshold is not None and contamination is not None:
            raise InvalidParameterError("Pass either --contamination or --threshold, not both.")
        if threshold is not None:
            if not math.isfinite(threshold):
                raise InvalidParameterError(f"threshold must be a finite number; got {threshold}.")
            return {"method": "given", "threshold": float(threshold)}
        if contamination is None and getattr(est, "threshold_", None) is not None:
            return {"method": "model", "threshold": float(est.threshold_)}
        if contamination is None:
            raise InvalidParameterError(
                "No threshold: pass --threshold or --contamination, or follow with a model "
                "calibrated at fit time (fit --contamination)."
            )
        if ds.n_rows < first + batch:
            raise InvalidInputError(
                f"--contamination takes its quantile of the first batch, but {ds.source} holds "
                f"{ds.n_rows - first} of its {batch} rows so far; wait, or pass --threshold."
            )
        ll, _ = score_rows_masked(_rows(ds, first, first + batch), prepare_for(est.params_, ds))
        value = quantile(ll[np.isfinite(ll)], contamination)
        return {
            "method": "contamination of the first batch",
            "contamination": float(contamination),
            "threshold": float(value),
        }

    # ---------------------------------------------------------- a batch
    def process(
        self,
        est: OnlineGaussianMixture,
        out: RowOutput,
        X: np.ndarray,
        batch: int,
        row: int,
        threshold: float,
        ds: ChunkedData,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        step = est.step_size()
        ll = est.score_and_learn(X)  # scored with the model before it learns them
        scorable = np.isfinite(ll)
        flags = (ll < threshold).astype(np.int8)
        flags[~scorable] = UNSCORABLE
        self._write(out, batch, ll, flags)
        n_flagged = int(np.count_nonzero(flags == 1))
        mean_ll = float(ll[scorable].mean()) if scorable.any() else None
        share = n_flagged / X.shape[0]
        est.consumed_ = consumed_record(ds, self.identity, row + X.shape[0], X)
        history = est.stream_history_ = dict(getattr(est, "stream_history_", {}) or {})
        for key, value in (
            ("batch", batch),
            ("rows", X.shape[0]),
            ("log_likelihood", mean_ll),
            ("flagged_share", share),
        ):
            history[key] = [*history.get(key, []), value][-HISTORY_BATCHES:]
        self._commit(est, batch)
        return {
            "batch": batch,
            "first_row": row,
            "rows": int(X.shape[0]),
            "mean_log_likelihood": mean_ll,
            "flagged": n_flagged,
            "flagged_share": share,
            "unscorable": int(np.count_nonzero(~scorable)),
            "step_size": step,
            "seconds": round(time.perf_counter() - t0, 6),
        }

    def _write(self, out: RowOutput, batch: int, ll: np.ndarray, flags: np.ndarray) -> None:
        rows = (batch + 1) * out.chunk_rows
        group = out.group()
        attrs: dict[str, Any] = group.attrs.asdict()
        if int(attrs["n_rows"]) < rows:
            for name in ("log_likelihood", "flag"):
                member(group, name).resize((rows,))
                member(group, f"_done/{name}").resize((batch + 1,))
            group.attrs["n_rows"] = rows
            out.n_rows = rows
        arrays = out.arrays()
        start = batch * out.chunk_rows
        arrays.write("log_likelihood", batch, start, ll)
        arrays.write("flag", batch, start, flags)

    def _commit(self, est: OnlineGaussianMixture, batch: int) -> None:
        """Write the new model, publish it when due, then switch the pointer."""
        version = self.state.child("models", f"{batch + 1:012d}")
        _clear_partial(version)
        write_model_dir(version, *est.to_files())
        if self.publish is not None and (batch + 1) % self.publish_every == 0:
            target = self.publish.sibling("versions").child(f"batch-{batch + 1:012d}")
            _clear_partial(target)
            copy_model_dir(version, target)
            write_pointer(self.publish, target)
        write_pointer(self.pointer, version)
        models = self.state.child("models")
        for name in list_versions(models)[:-KEPT_STATES]:
            remove_model_dir(models.child(name))


def _clear_partial(version: Location) -> None:
    """Remove what a killed run left of a model version it was writing (files without
    a manifest: never loadable, never pointed at)."""
    if version.exists() and not version.child(META_FILE).exists():
        version.remove()


def _specs() -> list[ArraySpec]:
    return [ArraySpec("log_likelihood", "float64"), ArraySpec("flag", "int8")]


def stream(
    data: Any,
    model: Where,
    output: Where,
    *,
    array: str = "X",
    columns: Sequence[str] | None = None,
    batch_rows: int | None = None,
    interval: float = 5.0,
    threshold: float | None = None,
    contamination: float | None = None,
    forget: float | None = None,
    half_life: float | None = None,
    publish: Where | None = None,
    publish_every: int = 1,
    max_batches: int | None = None,
    once: bool = False,
    metrics_port: int | None = None,
    storage_options: StorageOptions | None = None,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Follow a growing input: score, flag, then learn each new batch (see the module).

    Parameters
    ----------
    data : location of a Zarr array or group or of a Parquet dataset (a path or URL)
    model : the model to start from (used when OUTPUT holds no follower state yet)
    output : location of the output Zarr group; the follower's state lives in it
    batch_rows : rows per batch (default: the input's chunk rows)
    interval : seconds between looks at the input when no whole batch is waiting
    threshold, contamination : the fixed flag threshold (see the module)
    forget, half_life : a constant step, for inputs that drift
    publish, publish_every : also publish the model at this pointer every n batches
    max_batches : stop after this many batches in this run
    once : stop when no whole batch is waiting instead of polling
    metrics_port : serve Prometheus metrics on 127.0.0.1 at this port (0: any)
    on_batch : called with each batch's record (what the JSON log line holds)

    Returns
    -------
    dict
        Batches and rows processed in this run, rows consumed in all, and why it stopped.
    """
    rate = forget_rate(forget, half_life)
    if interval < 0 or not math.isfinite(interval):
        raise InvalidParameterError(f"interval must be a finite number >= 0; got {interval}.")
    if publish_every < 1:
        raise InvalidParameterError(f"publish_every must be >= 1; got {publish_every}.")
    loc = as_location(data, storage_options)
    out_loc = as_location(output, storage_options)
    out_loc.check_writable()
    pub = as_location(publish, storage_options) if publish is not None else None
    follower = _Follower(
        loc,
        out_loc,
        array=array,
        columns=columns,
        batch_rows=batch_rows,
        publish=pub,
        publish_every=publish_every,
    )
    metrics, stop = Metrics(), StopSignal()
    done = rows_done = 0
    reason = "no whole batch waiting" if once else "max_batches"
    with holding_output(out_loc), stop.installed(), metrics.serving(metrics_port) as port:
        if port is not None:
            logger.info("metrics on http://127.0.0.1:%d/metrics", port)
        ds = follower.open_input()
        est, out, thr, first, row = follower.start(
            as_location(model, storage_options), rate, threshold, contamination, ds
        )
        batch = (row - first) // out.chunk_rows
        size = out.chunk_rows
        flagged_total = 0
        while not stop.event.is_set():
            if max_batches is not None and done >= max_batches:
                break
            if ds.n_rows < row:
                raise InvalidInputError(
                    f"{ds.source} has {ds.n_rows} rows but the follower has consumed {row}: "
                    "the input shrank or was replaced."
                )
            if ds.n_rows >= row + size and _stored(loc, ds, array, row, row + size):
                record = follower.process(est, out, _rows(ds, row, row + size), batch, row, thr, ds)
                logger.debug("%s", json.dumps(record, allow_nan=False))
                if on_batch is not None:
                    on_batch(record)
                done, rows_done = done + 1, rows_done + size
                flagged_total += record["flagged"]
                row, batch = row + size, batch + 1
                metrics.set(
                    batches_total=done,
                    rows_total=rows_done,
                    flagged_total=flagged_total,
                    rows_consumed=row,
                    lag_rows=max(0, ds.n_rows - row),
                    last_batch_log_likelihood=record["mean_log_likelihood"] or float("nan"),
                    last_batch_flagged_share=record["flagged_share"],
                    step_size=record["step_size"],
                    last_batch_seconds=record["seconds"],
                    threshold=thr,
                )
                continue
            if once:
                break
            if stop.event.wait(interval):
                break
            ds = follower.open_input()
        if stop.event.is_set():
            reason = f"stopped by {stop.name}"
    return {
        "job": "stream",
        "output": str(out_loc),
        "batches": done,
        "rows_processed": rows_done,
        "rows_consumed": row,
        "threshold": thr,
        "stopped": reason,
    }
