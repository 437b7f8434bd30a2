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

Every step names a ``job`` and that job's options (the CLI's option names with
underscores). The whole file is checked before anything runs: unknown jobs or
keys, missing or mistyped values are reported with the step they are in.
``${NAME}`` in a string is replaced by the environment variable ``NAME``.
Locations are local paths or URLs (``s3://...``); a relative path is relative
to the pipeline file (a URL when the file itself was read from one).

The ``publish`` job makes a freshly fitted model the current one atomically:
the model is copied into a versions directory and the ``target`` pointer is
switched to it with one write (:func:`streammix.io.modelfile.publish`), so a
reader of ``target`` sees the old model or the new one, never half of one.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .cluster import ClusterOptions, connect
from .errors import InvalidInputError, PipelineError, StreammixError
from .io.location import Location, as_location

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REQUIRED = object()


@dataclass(frozen=True, slots=True)
class Field:
    kind: str  # "path", "str", "int", "float", "bool"
    default: Any = None
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


def _f(kind: str, default: Any = None, **kw: Any) -> Field:
    return Field(kind, default, **kw)


_CLUSTER = {
    "scheduler_address": _f("str"),
    "scheduler_file": _f("path"),
    "n_workers": _f("int", low=1),
    "threads_per_worker": _f("int", low=1),
    "memory_limit": _f("str"),
    "dashboard": _f("bool", False),
    "tls_ca_file": _f("path"),
    "tls_cert": _f("path"),
    "tls_key": _f("path"),
}

_COMMON_DATA = {"data": _f("path", REQUIRED), "array": _f("str", "X")}

SCHEMAS: dict[str, dict[str, Field]] = {
    "generate": {
        "out": _f("path", REQUIRED),
        "n_samples": _f("int", REQUIRED, low=1),
        "n_features": _f("int", 6, low=1),
        "n_components": _f("int", 4, low=1),
        "outlier_fraction": _f("float", 0.0, low=0.0, high=0.999999),
        "chunk_rows": _f("int", 100_000, low=1),
        "seed": _f("int", 0),
        "overwrite": _f("bool", False),
    },
    "fit": {
        **_COMMON_DATA,
        "model": _f("path", REQUIRED),
        "n_components": _f("int", REQUIRED, low=1),
        "covariance_type": _f("str", "full", choices=("full", "tied", "diag", "spherical")),
        "method": _f("str", "batch", choices=("batch", "online", "detector")),
        "n_init": _f("int", 1, low=1),
        "max_iter": _f("int", 100, low=1),
        "tol": _f("float", 1e-3, low=0.0),
        "reg_covar": _f("float", 1e-6, low=0.0),
        "init": _f("str", "kmeans", choices=("kmeans", "k-means++", "random", "random_from_data")),
        "max_epochs": _f("int", 1, low=1),
        "batch_size": _f("int", None, low=1),
        "seed": _f("int", 0),
        "checkpoint": _f("path"),
        "resume": _f("bool", False),
        "contamination": _f("float", None, low=1e-12, high=0.5),
    },
    "score": {
        **_COMMON_DATA,
        "model": _f("path", REQUIRED),
        "output": _f("path", REQUIRED),
        "incremental": _f("bool", False),
        "overwrite": _f("bool", False),
        "on_invalid": _f("str", "error", choices=("error", "skip", "flag")),
    },
    "flag": {
        **_COMMON_DATA,
        "model": _f("path", REQUIRED),
        "output": _f("path", REQUIRED),
        "contamination": _f("float", None, low=1e-12, high=0.5),
        "threshold": _f("float"),
        "truth": _f("path"),
        "explain": _f("bool", False),
        "incremental": _f("bool", False),
        "overwrite": _f("bool", False),
        "on_invalid": _f("str", "error", choices=("error", "skip", "flag")),
    },
    "publish": {
        "model": _f("path", REQUIRED),
        "target": _f("path", REQUIRED),
        "versions": _f("path"),
        "version": _f("str"),
        "keep": _f("int", 5, low=1),
    },
    "info": {"model": _f("path", REQUIRED)},
    "select": {
        **_COMMON_DATA,
        "model": _f("path", REQUIRED),
        "n_components": _f("str", "1-8"),
        "covariance_types": _f("str", "full"),
        "criterion": _f("str", "bic", choices=("bic", "aic", "heldout")),
        "seed": _f("int", 0),
        "max_iter": _f("int", 100, low=1),
        "tol": _f("float", 1e-3, low=0.0),
    },
    "sample": {
        "model": _f("path", REQUIRED),
        "output": _f("path", REQUIRED),
        "n_samples": _f("int", REQUIRED, low=1),
        "chunk_rows": _f("int", 100_000, low=1),
        "seed": _f("int", 0),
        "overwrite": _f("bool", False),
    },
    "impute": {
        **_COMMON_DATA,
        "model": _f("path", REQUIRED),
        "output": _f("path", REQUIRED),
        "n_draws": _f("int", 0, low=0),
        "seed": _f("int", 0),
        "overwrite": _f("bool", False),
    },
    "kde": {
        **_COMMON_DATA,
        "output": _f("path", REQUIRED),
        "bandwidth": _f("str", "scott"),
        "query": _f("path"),
        "overwrite": _f("bool", False),
    },
}


class _PathValue(str):
    """A validated path option (resolved against the pipeline file)."""

    __slots__ = ()


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
        return os.environ[name]

    return _ENV.sub(repl, value)


def _check_value(value: Any, spec: Field, where: str, base: Location) -> Any:
    kind = spec.kind
    ok = {
        "path": isinstance(value, str),
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
    }[kind]
    if not ok:
        noun = {
            "path": "a path string",
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
        }[kind]
        raise PipelineError(f"{where} must be {noun}, got {value!r}.")
    if isinstance(value, str):
        value = _expand(value, where)
    if spec.choices and value not in spec.choices:
        raise PipelineError(f"{where} must be one of {', '.join(spec.choices)}; got {value!r}.")
    if kind in ("int", "float"):
        too_low = spec.low is not None and value < spec.low
        if too_low or (spec.high is not None and value > spec.high):
            lo = "-inf" if spec.low is None else spec.low
            hi = "inf" if spec.high is None else spec.high
            raise PipelineError(f"{where} must be in [{lo}, {hi}]; got {value!r}.")
        if kind == "float":
            value = float(value)
    if kind == "path":
        value = _PathValue(str(base.resolve(value)))
    return value


def _check_table(
    table: Mapping[str, Any], schema: Mapping[str, Field], where: str, base: Location
) -> dict[str, Any]:
    out = {}
    for key in table:
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PipelineError(f"{where}: unknown key {key!r}{hint}.")
    for key, spec in schema.items():
        if key in table:
            out[key] = _check_value(table[key], spec, f"{where}: {key}", base)
        elif spec.default is REQUIRED:
            raise PipelineError(f"{where}: missing required key {key!r}.")
        else:
            out[key] = spec.default
    return out


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
    cluster = _check_table(doc.get("cluster") or {}, _CLUSTER, f"{p}: [cluster]", base)
    raw_steps = doc.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PipelineError(f"{p}: no steps; add [[step]] tables with a 'job' key.")
    steps = []
    for i, raw in enumerate(raw_steps, start=1):
        where = f"{p}: step {i}"
        job = raw.get("job") if isinstance(raw, dict) else None
        if job not in SCHEMAS:
            known = ", ".join(SCHEMAS)
            raise PipelineError(f"{where}: 'job' must be one of {known}; got {job!r}.")
        options = {k: v for k, v in raw.items() if k != "job"}
        steps.append(Step(job, _check_table(options, SCHEMAS[job], f"{where} ({job})", base), i))
    return Pipeline(
        p, name, tuple(steps), {k: v for k, v in cluster.items() if v is not None}, merged
    )


def run_step(
    step: Step,
    progress: Callable[[str], Callable[[int, int], None]] | None = None,
    on_iteration: Callable[[int, float, float, float], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one validated step on the current cluster."""
    from . import datasets
    from .io.modelfile import publish
    from .jobs import fit_job, score_jobs

    o = {k: _located(v, storage_options) for k, v in step.options.items()}
    bar = progress(step.job) if progress else None
    if step.job == "generate":
        return datasets.generate(o.pop("out"), progress=bar, **o)
    if step.job == "fit":
        est = fit_job.make_estimator(
            o["method"],
            n_components=o["n_components"],
            covariance_type=o["covariance_type"],
            reg_covar=o["reg_covar"],
            init_params=o["init"],
            seed=o["seed"],
            n_init=o["n_init"],
            max_iter=o["max_iter"],
            tol=o["tol"],
            max_epochs=o["max_epochs"],
            batch_size=o["batch_size"],
            contamination=o["contamination"],
        )
        return fit_job.fit(
            o["data"],
            o["model"],
            est,
            array=o["array"],
            checkpoint=o["checkpoint"],
            resume=o["resume"],
            contamination=o["contamination"],
            on_iteration=on_iteration,
        )
    if step.job == "score":
        return score_jobs.score(
            o["data"],
            o["model"],
            o["output"],
            array=o["array"],
            incremental=o["incremental"],
            overwrite=o["overwrite"],
            on_invalid=o["on_invalid"],
            progress=bar,
        )
    if step.job == "flag":
        return score_jobs.flag(
            o["data"],
            o["model"],
            o["output"],
            contamination=o["contamination"],
            threshold=o["threshold"],
            array=o["array"],
            incremental=o["incremental"],
            overwrite=o["overwrite"],
            on_invalid=o["on_invalid"],
            truth=o["truth"],
            explain=o["explain"],
            progress=bar,
        )
    if step.job == "publish":
        return publish(**o)
    if step.job in ("select", "sample", "impute", "kde"):
        return _run_textbook(step.job, o, bar)
    if step.job == "info":
        from .jobs.info_job import model_summary

        return model_summary(o["model"])
    raise PipelineError(f"{step.label}: unknown job")


def _located(value: Any, storage_options: Mapping[str, Any] | None) -> Any:
    """Path options become locations carrying the pipeline's storage options."""
    if isinstance(value, _PathValue):
        return as_location(str(value), storage_options)
    return value


def _run_textbook(job: str, o: dict[str, Any], bar: Any) -> dict[str, Any]:
    from .estimators.selection import parse_component_counts
    from .jobs import impute_job, kde_job, sample_job, select_job

    if job == "select":
        ks = parse_component_counts(o["n_components"])
        types = [t.strip() for t in o["covariance_types"].split(",") if t.strip()]
        return select_job.select_job(
            o["data"],
            o["model"],
            n_components=ks,
            covariance_types=types,
            criterion=o["criterion"],
            seed=o["seed"],
            array=o["array"],
            tol=o["tol"],
            max_iter=o["max_iter"],
        )
    if job == "sample":
        return sample_job.sample(
            o["model"],
            o["output"],
            o["n_samples"],
            chunk_rows=o["chunk_rows"],
            seed=o["seed"],
            overwrite=o["overwrite"],
            progress=bar,
        )
    if job == "impute":
        return impute_job.impute(
            o["data"],
            o["model"],
            o["output"],
            array=o["array"],
            n_draws=o["n_draws"],
            seed=o["seed"],
            overwrite=o["overwrite"],
            progress=bar,
        )
    bandwidth: str | float = o["bandwidth"]
    if bandwidth not in ("scott", "silverman"):
        try:
            bandwidth = float(bandwidth)
        except ValueError:
            raise PipelineError(
                f"kde: bandwidth {bandwidth!r} is not scott, silverman or a number."
            ) from None
    return kde_job.kde(
        o["data"],
        o["output"],
        bandwidth=bandwidth,
        query=o["query"],
        array=o["array"],
        overwrite=o["overwrite"],
        progress=bar,
    )


def run_pipeline(
    pipeline: Pipeline,
    cluster: ClusterOptions | None = None,
    progress: Callable[[str], Callable[[int, int], None]] | None = None,
    on_step: Callable[[Step, dict[str, Any]], None] | None = None,
    on_iteration: Callable[[int, float, float, float], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every step in order on one cluster; stops at the first failing step."""
    options = cluster or ClusterOptions(**pipeline.cluster)
    results = []
    with connect(options):
        for step in pipeline.steps:
            try:
                summary = run_step(step, progress, on_iteration, pipeline.storage)
            except StreammixError as err:
                err.args = (f"{step.label}: {err}",)
                raise
            results.append(summary)
            if on_step is not None:
                on_step(step, summary)
    return results
