"""Every job's declaration: its options and the one library function it calls.

Layer: edges. The command line (:mod:`streammix.cli`), pipeline files
(:mod:`streammix.pipeline`), ``--config`` tables and ``STREAMMIX_*`` environment
variables are all derived from :data:`JOBS`, :data:`CLUSTER_OPTIONS` and
:data:`STORAGE_OPTIONS`; see :mod:`streammix.jobs.declaration` for what an
option declares. The fit job's estimator options are in
:mod:`streammix.jobs.fit_options`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .. import datasets
from ..cluster import ClusterOptions
from ..core.families import COVARIANCE_TYPES
from ..core.kde_math import BANDWIDTH_RULES
from ..errors import InvalidInputError, InvalidParameterError
from ..estimators import load
from ..estimators.selection import CRITERIA, parse_component_counts
from ..io.location import StorageOptions, as_location
from ..io.modelfile import check_destination as check_model_destination
from ..io.modelfile import publish
from ..io.outputs import check_destination as check_output
from ..plotting import plot_model
from . import (
    fit_job,
    impute_job,
    info_job,
    kde_job,
    sample_job,
    score_jobs,
    select_job,
    stream_job,
)
from .declaration import Job, Option, OptionError, Runtime, inherit_defaults, invoke
from .fit_options import CONTAMINATION_BOUNDS, ESTIMATOR_OPTIONS, fit_estimator, iteration_unit
from .kinds import (
    BOOLEAN,
    INTEGER,
    JSON_OBJECT,
    LOCATION,
    NAMES,
    NUMBER,
    TEXT,
    WORD_OR_NUMBER,
    BadValue,
    Bounds,
    at_least,
)

logger = logging.getLogger("streammix")

# ------------------------------------------------------------ shared options
DATA = Option(
    "data",
    LOCATION,
    "A Zarr array or group (see --array), or a Parquet file or dataset (see --columns); "
    "a path or URL.",
    positional=True,
    required=True,
    group="Data",
)
ARRAY = Option("array", TEXT, "Array to use when DATA is a Zarr group.", group="Data")
COLUMNS = Option(
    "columns",
    NAMES,
    "Columns to use when DATA is Parquet (default: every numeric column).",
    group="Data",
)
SAMPLE_WEIGHT = Option(
    "sample_weight",
    TEXT,
    "Row weights: a Zarr array (path or URL) with one weight >= 0 per row of DATA, or, "
    "for Parquet DATA, the name of a column (then not a feature).",
    group="Data",
)
ON_INVALID = Option(
    "on_invalid",
    TEXT,
    "Rows with NaN or infinity: fail naming the first, skip them (-1), or flag them.",
    choices=score_jobs.ON_INVALID,
    group="Data",
)
MODEL = Option(
    "model",
    LOCATION,
    "Model (from fit or publish; a path or URL).",
    required=True,
    aliases=("model_dir",),
    group="Model",
)
OUTPUT = Option(
    "output", LOCATION, "Output Zarr group (a path or URL).", required=True, group="Outputs"
)
OVERWRITE = Option(
    "overwrite", BOOLEAN, "Replace an output written by another job.", group="Outputs"
)
INCREMENTAL = Option(
    "incremental",
    BOOLEAN,
    "Score only rows appended to DATA since OUTPUT was written.",
    group="Outputs",
)
SEED = Option("seed", INTEGER, "Seed of the random draws.", bounds=at_least(0), group="Outputs")

LOCAL_CLUSTER_SIZE = Bounds(1, 1024)
"""Worker processes, or threads per worker, of the embedded cluster: beyond this it is a
cluster to start on its own (see deploy/) and reach with --scheduler-address."""


def _memory_limit(text: str) -> str:
    """A memory limit as distributed reads it: ``auto``, a share of the RAM in (0, 1],
    a number of bytes (with a unit: ``4GiB``), or 0 for none."""
    from dask.utils import parse_bytes

    if text == "auto":
        return text
    try:
        number: float | None = float(text)
    except ValueError:
        number = None
    try:
        ok = math.isfinite(number) and number >= 0 if number is not None else parse_bytes(text) > 0
    except ValueError:
        ok = False
    if not ok:
        raise BadValue(text, "auto, a share of the RAM in (0, 1], a size such as 4GiB, or 0")
    return text


STORAGE_OPTIONS = Option(
    "storage_options",
    JSON_OBJECT,
    "fsspec options for URLs (s3://, gs://, az://, ...) as a JSON object, e.g. "
    """'{"endpoint_url": "http://127.0.0.1:9000"}', or by protocol '{"s3": {...}}'. """
    "Without it each store's standard environment applies.",
    default=None,
    envvars=("STREAMMIX_STORAGE_OPTIONS",),
    group="Storage",
)
"""Every job's; a pipeline's ``[storage]`` table, a ``--config`` file's too."""

CLUSTER_OPTIONS: tuple[Option, ...] = inherit_defaults(
    (
        Option(
            "scheduler_address",
            TEXT,
            "Run on this existing Dask scheduler (tcp:// or tls://).",
            metavar="ADDR",
            envvars=("STREAMMIX_SCHEDULER_ADDRESS", "DASK_SCHEDULER_ADDRESS"),
            group="Cluster",
        ),
        Option(
            "scheduler_file",
            LOCATION,
            "Run on the cluster described by this scheduler file.",
            group="Cluster",
        ),
        Option(
            "n_workers",
            INTEGER,
            "Local cluster: worker processes (default: one per core).",
            bounds=LOCAL_CLUSTER_SIZE,
            group="Cluster",
        ),
        Option(
            "threads_per_worker",
            INTEGER,
            "Local cluster: threads per worker (default: 1).",
            bounds=LOCAL_CLUSTER_SIZE,
            group="Cluster",
        ),
        Option(
            "memory_limit",
            TEXT,
            "Local cluster: memory per worker, e.g. 4GiB, or a share of the RAM such as "
            "0.25; 0 for no limit (default: RAM / workers).",
            metavar="BYTES",
            parse=_memory_limit,
            group="Cluster",
        ),
        Option(
            "dashboard",
            BOOLEAN,
            "Local cluster: serve the dashboard on 127.0.0.1.",
            negatable=True,
            group="Cluster",
        ),
        Option(
            "tls_ca_file", LOCATION, "TLS: certificate authority of the scheduler.", group="Cluster"
        ),
        Option("tls_cert", LOCATION, "TLS: client certificate.", group="Cluster"),
        Option("tls_key", LOCATION, "TLS: client key.", group="Cluster"),
    ),
    ClusterOptions,
)
"""Where a job runs; a pipeline's and a ``--config`` file's ``[cluster]`` table."""


# ----------------------------------------------------------- value parsers
def _bandwidth(value: str | float) -> str | float:
    if isinstance(value, str) and value in BANDWIDTH_RULES:
        return value
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (number > 0 and math.isfinite(number)):
        raise BadValue(value, f"{', '.join(BANDWIDTH_RULES)} or a positive finite number")
    return number


def _component_counts(text: str) -> list[int]:
    try:
        return parse_component_counts(text)
    except InvalidParameterError:
        raise BadValue(text, "component counts like 1-8 or 2,4,8") from None


# --------------------------------------------- destinations, before any work
def _output_destination(output: str, storage_options: StorageOptions | None = None) -> None:
    """Preflight of a job writing a row-aligned output: refuse a location that cannot
    hold it before the cluster starts or any data is read."""
    check_output(as_location(output, storage_options))


def _model_destination(model_dir: str, storage_options: StorageOptions | None = None) -> None:
    """Preflight of a job writing a model directory."""
    check_model_destination(as_location(model_dir, storage_options))


def _dataset_destination(path: str, storage_options: StorageOptions | None = None) -> None:
    """Preflight of ``generate``: a writable location that is not a file."""
    loc = as_location(path, storage_options)
    loc.check_writable()
    if loc.exists() and loc.isfile():
        raise InvalidInputError(f"'{loc}' is a file; name a Zarr group to write.")


# ----------------------------------------------------------------- runners
def _run_fit(job: Job, o: Mapping[str, Any], rt: Runtime) -> dict[str, Any]:
    estimator = fit_estimator(o)
    invoke(
        fit_job.preflight,
        job,
        o,
        n_components=estimator.n_components,
        destinations=(o["model"], o["checkpoint"]),
    )
    unit, total = iteration_unit(estimator)
    with rt.on_cluster(), rt.iteration_log(unit, total) as log:
        result: dict[str, Any] = invoke(fit_job.fit, job, o, estimator=estimator, on_iteration=log)
    return result


def _check_flag(o: Mapping[str, Any]) -> None:
    if o["model"] is None and o["contamination"] is not None and o["threshold"] is not None:
        raise OptionError("Pass either {0} or {1}, not both.", "contamination", "threshold")


def _run_flag(job: Job, o: Mapping[str, Any], rt: Runtime) -> dict[str, Any]:
    """Flag with --model; without it, first fit an OutlierDetector on DATA, saved
    beside OUTPUT (its threshold is its contamination quantile of DATA)."""
    model, contamination, detector = o["model"], o["contamination"], None
    if model is None:
        out = as_location(o["output"], o["storage_options"])
        model = str(out.sibling(f"{out.name}.detector"))
        invoke(fit_job.preflight, job, o, n_components=1, destinations=(model,), outputs=(out,))
        detector = fit_job.make_estimator(
            "detector", random_state=o["random_state"], contamination=contamination
        )
        contamination = None
    else:
        invoke(score_jobs.preflight, job, o, flagging=True)
    flagged = {**o, "model": model, "contamination": contamination}
    with rt.on_cluster(), rt.bar(job.name) as bar:
        if detector is not None:
            invoke(fit_job.fit, job, flagged, model_dir=model, estimator=detector)
            logger.info("fitted an OutlierDetector on DATA, saved to %s", model)
        result: dict[str, Any] = invoke(score_jobs.flag, job, flagged, progress=bar)
    return result


def _run_stream(job: Job, o: Mapping[str, Any], rt: Runtime) -> dict[str, Any]:
    """Follow DATA, writing one JSON line per batch to standard error."""

    def line(record: dict[str, Any]) -> None:
        sys.stderr.write(json.dumps(record, allow_nan=False) + "\n")
        sys.stderr.flush()

    result: dict[str, Any] = invoke(stream_job.stream, job, o, on_batch=line)
    return result


def _run_plot(job: Job, o: Mapping[str, Any], rt: Runtime) -> dict[str, Any]:
    storage = o["storage_options"]
    image = as_location(o["output"], storage)
    image.check_writable()
    if image.exists() and image.isdir():
        raise InvalidInputError(f"'{image}' is a directory; name the image file to write.")
    model = load(as_location(o["model"], storage))
    if o["data"] is None:
        return {"plot": plot_model(model, image)}
    with rt.on_cluster():
        data = as_location(o["data"], storage)
        return {"plot": plot_model(model, image, data=data, array=o["array"])}


# -------------------------------------------------------------------- jobs
FIT = Job(
    "fit",
    fit_job.fit,
    (
        DATA,
        ARRAY,
        COLUMNS,
        SAMPLE_WEIGHT,
        Option(
            "model",
            LOCATION,
            "Model directory to write (a path or URL).",
            required=True,
            arg="model_dir",
            aliases=("model_dir",),
            group="Outputs",
        ),
        *ESTIMATOR_OPTIONS,
        Option(
            "checkpoint",
            LOCATION,
            "Directory (path or URL) for the fit's state after every iteration.",
            group="Checkpoints",
        ),
        Option("resume", BOOLEAN, "Continue from --checkpoint.", group="Checkpoints"),
    ),
    summary="Fit a Gaussian mixture to DATA and save it to --model.",
    description=(
        "Logs one line per iteration (iteration, mean log-likelihood, change, seconds; "
        "epochs for --method online). With --checkpoint, a fit killed at any point "
        "continues with --resume and ends with the parameters of an uninterrupted fit. "
        "Estimator options are passed only when given: the estimator's own default "
        "applies otherwise, and an option of another --method is refused."
    ),
    examples=(
        "streammix fit data.zarr --model models/v1 --n-components 8 \\\n"
        "    --checkpoint models/v1.ckpt --contamination 0.01",
        "streammix fit data.zarr --model models/lr --n-components 8 "
        "--covariance-type lowrank --rank 3",
    ),
    section="jobs",
    runner=_run_fit,
    check=fit_estimator,
)

SCORE = Job(
    "score",
    score_jobs.score,
    (DATA, ARRAY, COLUMNS, ON_INVALID, MODEL, OUTPUT, INCREMENTAL, OVERWRITE),
    summary="Write every row's log-likelihood and component to OUTPUT.",
    description=(
        "OUTPUT is a Zarr group row-aligned with DATA: log_likelihood (float64) and "
        "component (int32). Re-running finishes what a killed or interrupted run left "
        "and changes nothing after a complete one; 'complete' is set in its attributes "
        "last. A run started while another writes OUTPUT waits for it."
    ),
    examples=(
        "streammix score events.zarr --model models/current --output scores.zarr --incremental",
    ),
    section="jobs",
    preflight=score_jobs.preflight,
)

FLAG = Job(
    "flag",
    score_jobs.flag,
    (
        DATA,
        ARRAY,
        COLUMNS,
        ON_INVALID,
        Option(
            "model",
            LOCATION,
            "Model (from fit or publish); without it an OutlierDetector is fitted on "
            "DATA and saved as OUTPUT.detector.",
            aliases=("model_dir",),
            group="Model",
        ),
        Option(
            "random_state",
            INTEGER,
            "Seed of the detector fitted when no --model is given.",
            default=0,
            bounds=at_least(0),
            aliases=("seed",),
            group="Model",
        ),
        OUTPUT,
        Option(
            "contamination",
            NUMBER,
            "Flag this share of the rows: the lowest log-likelihoods.",
            bounds=CONTAMINATION_BOUNDS,
            group="Threshold",
        ),
        Option(
            "threshold",
            NUMBER,
            "Flag rows with a log-likelihood below this.",
            group="Threshold",
        ),
        Option(
            "truth",
            LOCATION,
            "A Zarr array of 0/1 labels: report precision and recall.",
            group="Outputs",
        ),
        Option(
            "explain",
            BOOLEAN,
            "Also write component and per-feature conditional z-scores of flagged rows.",
            group="Outputs",
        ),
        INCREMENTAL,
        OVERWRITE,
    ),
    summary="Flag outliers: rows whose log-likelihood is below a threshold.",
    description=(
        "OUTPUT gets log_likelihood (float64) and flag (int8: 1 outlier, 0 inlier, -1 "
        "could not be scored); its attributes record the threshold and how it was "
        "chosen (--threshold, --contamination, or the model's calibration from fit "
        "--contamination). Without --model, an OutlierDetector with its robust defaults "
        "is fitted on DATA (contamination --contamination, else the detector's default) "
        "and saved as OUTPUT.detector; a saved detector can be passed as --model."
    ),
    examples=(
        "streammix flag events.zarr --model models/current --output flags.zarr "
        "--contamination 0.01",
        "streammix flag events.zarr --output flags.zarr --contamination 0.02 --explain",
    ),
    section="jobs",
    runner=_run_flag,
    check=_check_flag,
)

SELECT = Job(
    "select",
    select_job.select_job,
    (
        DATA,
        ARRAY,
        COLUMNS,
        SAMPLE_WEIGHT,
        Option(
            "model",
            LOCATION,
            "Model directory for the chosen model.",
            required=True,
            arg="model_dir",
            aliases=("model_dir",),
            group="Outputs",
        ),
        Option(
            "n_components",
            TEXT,
            "Candidate counts, e.g. 1-8 or 2,4,8.",
            default="1-8",
            parse=_component_counts,
            group="Candidates",
        ),
        Option(
            "covariance_types",
            NAMES,
            "Candidate covariance families, comma-separated.",
            choices=COVARIANCE_TYPES,
            group="Candidates",
        ),
        Option("criterion", TEXT, "How the best is chosen.", choices=CRITERIA, group="Candidates"),
        Option(
            "seed",
            INTEGER,
            "Seed of every candidate's initialisation.",
            bounds=at_least(0),
            group="EM",
        ),
        Option("max_iter", INTEGER, "EM iterations at most.", bounds=at_least(1), group="EM"),
        Option(
            "tol",
            NUMBER,
            "Stop when the mean log-likelihood changes less than this.",
            bounds=at_least(0),
            group="EM",
        ),
    ),
    summary="Fit every candidate in the same passes; save the best to --model.",
    description="Prints one line per candidate (the best marked *) unless --json.",
    examples=(
        "streammix select data.zarr --model models/selected --n-components 1-12 \\\n"
        "    --covariance-types full,diag --criterion bic",
    ),
    section="jobs",
    preflight=_model_destination,
)

FORGET = Option(
    "forget",
    NUMBER,
    "A constant step for a drifting input: old data are forgotten at this rate per "
    "update (stored in the model).",
    bounds=Bounds(0, 1, low_open=True, high_open=True),
    group="Online EM",
)
HALF_LIFE = Option(
    "half_life",
    NUMBER,
    "Like --forget, given as the updates after which old data weigh half.",
    bounds=Bounds(0, None, low_open=True),
    group="Online EM",
)

UPDATE = Job(
    "update",
    stream_job.update,
    (
        DATA,
        ARRAY,
        COLUMNS,
        replace(
            MODEL,
            help="Online model to continue (a path, URL or "
            "published pointer); written back, a pointer as a new version.",
        ),
        FORGET,
        HALF_LIFE,
    ),
    summary="Continue an online model with the rows appended to DATA since it last read it.",
    description=(
        "The model records which input it learned from, how many rows and a checksum of "
        "the last ones; update learns exactly the rows after them, one update per chunk, "
        "and writes the model once. No new rows: nothing changes. An input that shrank or "
        "whose learned rows changed is refused (exit 3)."
    ),
    examples=("streammix update events.zarr --model models/current",),
    section="jobs",
    cluster=False,
)

STREAM = Job(
    "stream",
    stream_job.stream,
    (
        DATA,
        ARRAY,
        COLUMNS,
        replace(MODEL, help="Model to start from (when OUTPUT holds no follower state)."),
        replace(
            OUTPUT,
            help="Output Zarr group: log_likelihood and flag per row; the "
            "follower's state is kept in it.",
        ),
        Option(
            "batch_rows",
            INTEGER,
            "Rows per batch (default: DATA's chunk rows).",
            bounds=at_least(1),
            group="Batches",
        ),
        Option(
            "interval",
            NUMBER,
            "Seconds between looks at DATA when no batch waits.",
            bounds=at_least(0),
            group="Batches",
        ),
        Option(
            "once", BOOLEAN, "Stop when no whole batch waits instead of polling.", group="Batches"
        ),
        Option(
            "max_batches",
            INTEGER,
            "Stop after this many batches.",
            bounds=at_least(1),
            group="Batches",
        ),
        Option(
            "threshold", NUMBER, "Flag rows with a log-likelihood below this.", group="Threshold"
        ),
        Option(
            "contamination",
            NUMBER,
            "Threshold at this quantile of the first batch's "
            "log-likelihoods (when neither --threshold nor a calibrated model gives one).",
            bounds=CONTAMINATION_BOUNDS,
            group="Threshold",
        ),
        FORGET,
        HALF_LIFE,
        Option("publish", LOCATION, "Also publish the model at this pointer.", group="Outputs"),
        Option(
            "publish_every",
            INTEGER,
            "Publish every this many batches.",
            bounds=at_least(1),
            group="Outputs",
        ),
        Option(
            "metrics_port",
            INTEGER,
            "Serve Prometheus metrics on 127.0.0.1 at this port.",
            bounds=Bounds(0, 65535),
            group="Outputs",
        ),
    ),
    summary="Follow a growing DATA: score and flag each new batch, then learn it.",
    description=(
        "Batches are fixed runs of rows (a batch is processed once all its rows are "
        "stored), so results do not depend on when rows arrive. Each batch is scored and "
        "flagged with the current model first, written to OUTPUT, learned, and committed "
        "with the model in one write: killed at any moment and restarted, every row is "
        "scored once and the model equals an uninterrupted run's. The threshold is fixed "
        "for the life of OUTPUT. One JSON line per batch on standard error; SIGTERM or "
        "Ctrl-C stops after the current batch."
    ),
    examples=(
        "streammix stream events.zarr --model models/current --output live.zarr \\\n"
        "    --interval 10 --half-life 50 --metrics-port 9108",
    ),
    section="jobs",
    runner=_run_stream,
    cluster=False,
)

MODEL_ARGUMENT = Option(
    "model",
    LOCATION,
    "A saved model (a path or URL, or a published pointer).",
    positional=True,
    required=True,
    group="Model",
)

INFO = Job(
    "info",
    info_job.model_summary,
    (replace(MODEL_ARGUMENT, arg="path"),),
    summary="Describe a saved model.",
    description="MODEL is a path or URL, or a pointer written by publish.",
    examples=("streammix info models/current --json",),
    section="models",
    cluster=False,
)

PUBLISH = Job(
    "publish",
    publish,
    (
        MODEL_ARGUMENT,
        Option(
            "target",
            LOCATION,
            "The pointer readers use, e.g. models/current.",
            required=True,
            group="Outputs",
        ),
        Option(
            "versions",
            LOCATION,
            "Where versions are kept (default: 'versions' beside --target).",
            group="Outputs",
        ),
        Option(
            "version", TEXT, "Name of this version (default: a UTC time stamp).", group="Outputs"
        ),
        Option("keep", INTEGER, "Versions kept.", bounds=at_least(1), group="Outputs"),
    ),
    summary="Make a fitted model the one at --target, atomically.",
    description=(
        "MODEL is copied into the versions directory (manifest last) and removed; "
        "--target becomes a small pointer to the copy, switched with one write, so "
        "readers see the old model or the new one. Works the same on local disks and "
        "object stores."
    ),
    examples=("streammix publish models/staging --target s3://bucket/models/current --keep 10",),
    section="models",
    cluster=False,
)

PLOT = Job(
    "plot",
    plot_model,
    (
        MODEL_ARGUMENT,
        Option(
            "data",
            LOCATION,
            "Also draw a sample of these rows and their scores.",
            group="Data",
        ),
        Option("array", TEXT, "Array of a --data group.", group="Data"),
        Option(
            "output",
            LOCATION,
            "Image file to write (PNG, SVG, PDF; a path or URL).",
            required=True,
            group="Outputs",
        ),
    ),
    summary="Draw a model: its fit, its components, the scores of --data.",
    description=(
        "Draws the log-likelihood per iteration, the components on the two principal "
        "axes, and the score histogram of --data with the threshold. Needs matplotlib "
        "(pip install 'streammix[plot]')."
    ),
    examples=("streammix plot models/current --data data.zarr --output model.png",),
    section="models",
    runner=_run_plot,
)

GENERATE = Job(
    "generate",
    datasets.generate,
    (
        Option(
            "out",
            LOCATION,
            "The Zarr group to write (a path or URL).",
            positional=True,
            required=True,
            arg="path",
            group="Outputs",
        ),
        Option("n_samples", INTEGER, "Rows.", default=200_000, bounds=at_least(1), group="Data"),
        Option("n_features", INTEGER, "Columns.", bounds=at_least(1), group="Data"),
        Option(
            "n_components",
            INTEGER,
            "Components of the mixture drawn from.",
            bounds=at_least(1),
            group="Data",
        ),
        Option(
            "outlier_fraction",
            NUMBER,
            "Share of rows replaced by uniform outliers.",
            bounds=Bounds(0, 1, high_open=True),
            group="Data",
        ),
        Option("chunk_rows", INTEGER, "Rows per chunk.", bounds=at_least(1), group="Outputs"),
        SEED,
        replace(OVERWRITE, help="Replace OUT if it exists."),
    ),
    summary="Write a synthetic dataset (a known mixture plus outliers).",
    description=(
        "OUT gets arrays X (float64), component (int32, -1 for outliers) and is_outlier "
        "(int8), written chunk by chunk in parallel: any size fits."
    ),
    examples=(
        "streammix generate data.zarr --n-samples 1000000 --n-features 8 \\\n"
        "    --n-components 5 --outlier-fraction 0.01 --chunk-rows 50000",
    ),
    section="data",
    preflight=_dataset_destination,
)

SAMPLE = Job(
    "sample",
    sample_job.sample,
    (
        MODEL_ARGUMENT,
        OUTPUT,
        Option("n_samples", INTEGER, "Rows to draw.", required=True, bounds=at_least(1)),
        Option("chunk_rows", INTEGER, "Rows per chunk.", bounds=at_least(1), group="Outputs"),
        SEED,
        OVERWRITE,
    ),
    summary="Draw rows from a model into OUTPUT, chunk by chunk.",
    description=(
        "OUTPUT gets arrays X and component. Chunk c draws from its own stream seeded "
        "by (seed, c): the output is the same whatever the number of workers."
    ),
    examples=(
        "streammix sample models/current --output synthetic.zarr --n-samples 10000000 \\\n"
        "    --chunk-rows 250000 --seed 7",
    ),
    section="data",
    preflight=_output_destination,
)

IMPUTE = Job(
    "impute",
    impute_job.impute,
    (
        DATA,
        ARRAY,
        COLUMNS,
        MODEL,
        OUTPUT,
        Option(
            "n_draws",
            INTEGER,
            "0: fill with conditional means (array X); n: n conditional draws (draws).",
            bounds=at_least(0),
            group="Outputs",
        ),
        SEED,
        OVERWRITE,
    ),
    summary="Fill the NaN entries of DATA from a model, given each row's others.",
    description=(
        "Each row's missing entries are drawn (or averaged) from the model's "
        "conditional distribution given its observed entries."
    ),
    examples=("streammix impute sensors.zarr --model models/current --output filled.zarr",),
    section="data",
    preflight=_output_destination,
)

KDE = Job(
    "kde",
    kde_job.kde,
    (
        DATA,
        ARRAY,
        COLUMNS,
        SAMPLE_WEIGHT,
        OUTPUT,
        Option(
            "bandwidth",
            WORD_OR_NUMBER,
            "scott, silverman (scipy's rules) or a kernel standard deviation.",
            parse=_bandwidth,
            group="Density",
        ),
        Option("query", LOCATION, "Rows to evaluate (default: DATA itself).", group="Data"),
        OVERWRITE,
    ),
    summary="Kernel density estimate of DATA at every --query row.",
    description=(
        "OUTPUT gets log_density, row-aligned with --query (default DATA). Query and "
        "data chunks are paired blockwise; the full matrix is never formed."
    ),
    examples=(
        "streammix kde sample.zarr --output density.zarr --bandwidth silverman --query new.zarr",
    ),
    section="density",
    preflight=_output_destination,
)

JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        FIT,
        SCORE,
        FLAG,
        UPDATE,
        STREAM,
        SELECT,
        INFO,
        PUBLISH,
        PLOT,
        GENERATE,
        SAMPLE,
        IMPUTE,
        KDE,
    )
}
"""Every job by name, in the order ``streammix --help`` lists them; each is also a
pipeline step. ``run``, which executes pipeline files, is declared beside the
pipeline runner (:data:`streammix.pipeline.RUN`), a layer above."""

SECTIONS: tuple[str, ...] = ("jobs", "models", "data", "density")
"""What users do with the commands (each job's ``section``), in the order help shows them."""
