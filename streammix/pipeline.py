"""Declarative pipelines: a TOML file of job steps, validated, then run on one cluster.

Layer: edges.

A pipeline file::

    [pipeline]
    name = "nightly-scoring"

    [cluster]                      # optional: the CLI's cluster options
    scheduler_address = "tcp://10.0.0.5:8786"

    [[step]]
    job = "score"
    data = "../data/events.zarr"   # relative paths are relative to this file
    model = "../models/current"
    output = "../scores/events.zarr"
    incremental = true

    [storage]                      # optional: fsspec storage options for URLs
    endpoint_url = "http://minio:9000"

Every step names a ``job`` and that job's options: the keys are the options'
canonical names, as declared once in :mod:`streammix.jobs.catalog` (the CLI's
``--kebab-case`` names with underscores; older names are still read). The whole
file is checked before anything runs, with the same rules as the command line:
unknown jobs or keys (with the nearest valid name), missing or mistyped values,
values out of bounds, options that do not go together, are reported with the
step they are in. A step runs through the same code as its command.
``${NAME}`` in a string is replaced by the environment variable ``NAME``; a
variable that is unset or empty is an error (an empty one would turn
``"${OUT}/scores.zarr"`` into ``/scores.zarr``, at the filesystem root).
Every destination is checked before a step runs: a filesystem root or a bare
bucket is never written.
Locations are local paths or URLs (``s3://...``); a relative path is relative
to the pipeline file (a URL when the file itself was read from one).

The ``publish`` job makes a freshly fitted model the current one atomically:
the model is copied into a versions directory and the ``target`` pointer is
switched to it with one write (:func:`streammix.io.modelfile.publish`), so a
reader of ``target`` sees the old model or the new one, never half of one.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .cluster import ClusterOptions, connect
from .errors import InvalidInputError, InvalidParameterError, PipelineError, StreammixError
from .io.location import Location, as_location
from .jobs.catalog import CLUSTER_OPTIONS, JOBS
from .jobs.declaration import (
    IterationLog,
    Job,
    MissingOption,
    Option,
    OptionError,
    ProgressBar,
    Runtime,
    UnknownKey,
    canonical_keys,
    invoke,
    key_spelling,
)
from .jobs.kinds import BOOLEAN, LOCATION, BadValue

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STEP_JOBS = tuple(JOBS)


@dataclass(frozen=True, slots=True)
class Step:
    job: str
    options: dict[str, Any]
    index: int

    @property
    def label(self) -> str:
        return f"step {self.index} ({self.job})"


@dataclass(frozen=True, slots=True)
class Pipeline:
    path: Location
    name: str
    steps: tuple[Step, ...]
    cluster: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: str, where: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise PipelineError(f"{where}: environment variable ${{{name}}} is not set.")
        value = os.environ[name]
        if not value.strip():
            raise PipelineError(
                f"{where}: environment variable ${{{name}}} is empty; set it to a value."
            )
        return value

    return _ENV.sub(repl, value)


def _value(raw: Any, option: Option, where: str, base: Location) -> Any:
    if isinstance(raw, str):
        raw = _expand(raw, where)
    try:
        value = option.value(raw)
    except BadValue as err:
        raise PipelineError(f"{where} {err.predicate()}.") from None
    if option.is_location and value is not None:
        value = str(base.resolve(value))
    return value


def _check_table(
    table: Mapping[str, Any], options: Sequence[Option], where: str, base: Location
) -> dict[str, Any]:
    """Every option of ``options`` by name: the table's value checked, else its default."""
    try:
        given = canonical_keys(table, options)
    except (UnknownKey, OptionError) as err:
        raise PipelineError(f"{where}: {err}.") from None
    out = {}
    for opt in options:
        if opt.name in given:
            out[opt.name] = _value(given[opt.name], opt, f"{where}: {opt.name}", base)
        elif opt.required:
            raise PipelineError(f"{where}: missing required key {opt.name!r}.")
        else:
            out[opt.name] = None if opt.default is None else opt.value(opt.default)
    return out


def _check_step(raw: Any, index: int, p: Location, base: Location) -> Step:
    where = f"{p}: step {index}"
    name = raw.get("job") if isinstance(raw, dict) else None
    if name not in STEP_JOBS:
        raise PipelineError(f"{where}: 'job' must be one of {', '.join(STEP_JOBS)}; got {name!r}.")
    job = JOBS[name]
    where = f"{where} ({name})"
    options = _check_table({k: v for k, v in raw.items() if k != "job"}, job.options, where, base)
    try:
        job.validate(options)
    except MissingOption as err:
        raise PipelineError(f"{where}: missing required key {err.name!r}.") from None
    except OptionError as err:
        raise PipelineError(f"{where}: {err.worded(key_spelling)}") from None
    except InvalidParameterError as err:
        raise PipelineError(f"{where}: {err}") from None
    return Step(name, options, index)


def load_pipeline(
    path: str | os.PathLike[str] | Location, storage_options: Mapping[str, Any] | None = None
) -> Pipeline:
    """Read and validate a pipeline file (a path or URL); raises :class:`PipelineError`."""
    p = as_location(path, storage_options)
    try:
        doc = tomllib.loads(p.read_text())
    except InvalidInputError:
        raise PipelineError(f"No pipeline file at '{p}'.") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise PipelineError(f"{p}: not valid TOML ({err}).") from None
    unknown = set(doc) - {"pipeline", "cluster", "storage", "step"}
    if unknown:
        raise PipelineError(
            f"{p}: unknown table(s) {', '.join(sorted(unknown))}; expected "
            "[pipeline], [cluster], [storage] and [[step]]."
        )
    storage = doc.get("storage") or {}
    if not isinstance(storage, dict):
        raise PipelineError(f"{p}: [storage] must be a table of storage options.")
    storage = {
        k: _expand(v, f"{p}: [storage] {k}") if isinstance(v, str) else v
        for k, v in storage.items()
    }
    merged = {**storage, **dict(storage_options or {})}
    base = as_location(p.realpath().parent.url if p.is_local else p.parent.url, merged)
    meta = doc.get("pipeline") or {}
    stem = p.name.rsplit(".", 1)[0] if "." in p.name else p.name
    name = str(meta.get("name") or stem)
    cluster = _check_table(doc.get("cluster") or {}, CLUSTER_OPTIONS, f"{p}: [cluster]", base)
    raw_steps = doc.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PipelineError(f"{p}: no steps; add [[step]] tables with a 'job' key.")
    steps = tuple(_check_step(raw, i, p, base) for i, raw in enumerate(raw_steps, start=1))
    return Pipeline(p, name, steps, {k: v for k, v in cluster.items() if v is not None}, merged)


def run_step(
    step: Step, runtime: Runtime, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Run one validated step with ``runtime`` (on the cluster it names or is connected to)."""
    options = {**step.options, "storage_options": dict(storage_options or {}) or None}
    return JOBS[step.job].run(options, runtime)


def run_pipeline(
    pipeline: Pipeline,
    cluster: ClusterOptions | None = None,
    progress: Callable[[str], ProgressBar] | None = None,
    on_step: Callable[[Step, dict[str, Any]], None] | None = None,
    iterations: Callable[[str, int | None], IterationLog] | None = None,
) -> list[dict[str, Any]]:
    """Run every step in order on one cluster; stops at the first failing step.

    ``progress(label)`` gives a step's progress bar, ``iterations(unit, total)``
    a fit's log of iterations, ``on_step(step, summary)`` hears of each finished step.
    """
    options = cluster or ClusterOptions(**pipeline.cluster)
    runtime = Runtime(connected=True, progress=progress, iterations=iterations)
    results = []
    with connect(options):
        for step in pipeline.steps:
            try:
                summary = run_step(step, runtime, pipeline.storage)
            except StreammixError as err:
                err.args = (f"{step.label}: {err}",)
                raise
            results.append(summary)
            if on_step is not None:
                on_step(step, summary)
    return results


def run_file(
    pipeline_file: str,
    check: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Validate a pipeline file, then (unless ``check``) run its steps on one cluster.

    Cluster options of ``runtime`` that are set replace the file's ``[cluster]``
    values; ``storage_options`` are merged over its ``[storage]`` table.
    """
    pipeline = load_pipeline(pipeline_file, storage_options)
    if check:
        return {"pipeline": pipeline.name, "steps": [s.job for s in pipeline.steps]}
    rt = runtime or Runtime()
    given = {
        k: v
        for k, v in (asdict(rt.cluster) if rt.cluster else {}).items()
        if v not in (None, False) and k != "timeout"
    }
    report = rt.report
    results = run_pipeline(
        pipeline,
        ClusterOptions(**{**pipeline.cluster, **given}),
        progress=rt.progress,
        iterations=rt.iterations,
        on_step=None if report is None else lambda step, summary: report(step.label, summary),
    )
    return {"pipeline": pipeline.name, "steps": results}


def _run_file(job: Job, options: Mapping[str, Any], runtime: Runtime) -> dict[str, Any]:
    result: dict[str, Any] = invoke(run_file, job, options, runtime=runtime)
    return result


RUN = Job(
    "run",
    run_file,
    (
        Option(
            "pipeline_file",
            LOCATION,
            "The pipeline file (a path or URL).",
            positional=True,
            required=True,
            metavar="PIPELINE.toml",
            group="Pipeline",
        ),
        Option(
            "check",
            BOOLEAN,
            "Validate the file and list its steps; run nothing.",
            group="Pipeline",
        ),
    ),
    summary="Run the steps of a pipeline file in order, on one cluster.",
    description=(
        "The file is validated first (unknown jobs or keys, missing or mistyped values "
        "are reported with their step). Cluster options on the command line replace the "
        "file's [cluster] table; --storage-options are merged over its [storage] table. "
        "PIPELINE.toml may itself be a URL."
    ),
    examples=(
        "streammix run pipelines/nightly-scoring.toml",
        "streammix run pipelines/weekly-refit.toml --scheduler-address tcp://10.0.0.5:8786",
    ),
    section="jobs",
    runner=_run_file,
)
"""The ``run`` command: a pipeline file, declared like the jobs it runs (it is not a step)."""
