"""How a job declares its options once, and how its library function is called.

Layer: edges. An :class:`Option` is written once, with its canonical name (the
same on the command line as ``--kebab-case``, in a pipeline step, in a
``--config`` table and in ``STREAMMIX_<COMMAND>_<OPTION>``), its kind, default,
help, constraint, the parameter it feeds, its help group and older names. A
:class:`Job` names the one library function it calls; options reach that
function by name (or by :attr:`Option.arg`), so the command line and the
pipeline runner call it the same way. The front ends (:mod:`streammix.cli`,
:mod:`streammix.pipeline`) derive everything else from these declarations.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..cluster import ClusterOptions, connect
from ..errors import InvalidParameterError
from ..io.location import as_location
from .kinds import BadValue, Bounds, Kind, LocationKind


class _Inherit:
    def __repr__(self) -> str:
        return "INHERIT"


INHERIT: Any = _Inherit()
"""Default of an option: the library function's default for the parameter it feeds."""


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a job.

    Parameters
    ----------
    name : the canonical key (snake_case)
    kind : how its values are written (:mod:`streammix.jobs.kinds`)
    help : one or two sentences for ``--help``
    default : the value when none is given; :data:`INHERIT` takes the job
        function's default for :attr:`target` (``None`` when it has none). An
        option that feeds an estimator defaults to ``None``: not passed, so the
        estimator's own default applies.
    group : the help section (its purpose)
    choices, bounds : the constraint
    parse : turns the checked value into what the function takes (``"1-8"`` ->
        ``[1, ..., 8]``); raises :class:`~streammix.jobs.kinds.BadValue`
    estimator : the estimator constructor parameter it feeds
    arg : the function's parameter name when it differs from ``name``
    aliases : older names, still accepted
    positional : a command-line argument rather than an ``--option``
    required : no default; must be given
    metavar : how help shows its value
    envvars : environment variables read after the derived one
    negatable : a boolean with a ``--no-...`` form
    """

    name: str
    kind: Kind
    help: str
    default: Any = INHERIT
    group: str = "Options"
    choices: tuple[str, ...] = ()
    bounds: Bounds | None = None
    parse: Callable[[Any], Any] | None = None
    estimator: str | None = None
    arg: str | None = None
    aliases: tuple[str, ...] = ()
    positional: bool = False
    required: bool = False
    metavar: str | None = None
    envvars: tuple[str, ...] = ()
    negatable: bool = False

    @property
    def target(self) -> str:
        """The name of the function parameter this option feeds."""
        return self.arg or self.name

    @property
    def is_location(self) -> bool:
        return isinstance(self.kind, LocationKind)

    def value(self, raw: Any, *, text: bool = False) -> Any:
        """``raw`` checked against the kind and constraint, then parsed.

        ``text=True`` reads a string as text (``"3"`` is an integer); otherwise a
        value must already have its type, as in TOML. Raises :class:`BadValue`.
        """
        value = (
            self.kind.from_text(raw) if text and isinstance(raw, str) else self.kind.from_toml(raw)
        )
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if self.choices and item not in self.choices:
                raise BadValue(item, "one of " + ", ".join(self.choices))
        if self.bounds is not None and value not in self.bounds:
            raise BadValue(value, f"in {self.bounds}")
        return self.parse(value) if self.parse is not None else value

    def envvar_names(self, command: str) -> list[str]:
        """``STREAMMIX_<COMMAND>_<NAME>``, the same for each alias, then :attr:`envvars`."""
        own = [f"STREAMMIX_{command}_{n}".upper() for n in (self.name, *self.aliases)]
        return [*own, *self.envvars]


def inherit_defaults(options: Sequence[Option], function: Callable[..., Any]) -> tuple[Option, ...]:
    """Resolve :data:`INHERIT` defaults from ``function``'s signature."""
    params = inspect.signature(function).parameters
    out = []
    for opt in options:
        if opt.default is INHERIT:
            p = params.get(opt.target)
            found = None if p is None or p.default is p.empty else p.default
            opt = replace(opt, default=found)
        out.append(opt)
    return tuple(out)


class ProgressBar(Protocol):
    def __call__(self, done: int, total: int) -> None: ...

    def close(self) -> None: ...


class IterationLog(Protocol):
    def __call__(
        self, iteration: int, mean_loglik: float, change: float, seconds: float
    ) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Runtime:
    """What the front end running a job provides.

    Parameters
    ----------
    cluster : where to run (``None``: the embedded local cluster)
    connected : a cluster is already connected (the steps of a pipeline)
    progress : ``progress(label)`` -> a progress bar
    iterations : ``iterations(unit, total)`` -> a log of EM iterations (epochs)
    report : ``report(label, summary)`` for each finished part of a job
    """

    cluster: ClusterOptions | None = None
    connected: bool = False
    progress: Callable[[str], ProgressBar] | None = None
    iterations: Callable[[str, int | None], IterationLog] | None = None
    report: Callable[[str, dict[str, Any]], None] | None = None

    def on_cluster(self) -> AbstractContextManager[Any]:
        """Run the block on the cluster (connecting first unless connected)."""
        return nullcontext() if self.connected else connect(self.cluster)

    @contextmanager
    def bar(self, label: str) -> Iterator[ProgressBar | None]:
        bar = self.progress(label) if self.progress is not None else None
        try:
            yield bar
        finally:
            if bar is not None:
                bar.close()

    @contextmanager
    def iteration_log(self, unit: str, total: int | None) -> Iterator[IterationLog | None]:
        log = self.iterations(unit, total) if self.iterations is not None else None
        try:
            yield log
        finally:
            if log is not None:
                log.close()


Runner = Callable[["Job", Mapping[str, Any], Runtime], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Job:
    """A job: its options, the library function it calls, and how.

    Parameters
    ----------
    name : the command and the pipeline ``job``
    function : the one library function it calls
    options : its options; :data:`INHERIT` defaults are resolved from ``function``
    summary, description, examples : its help
    section : what users do with it (groups ``streammix --help``)
    runner : how options map to ``function`` (default :func:`run_by_name`)
    preflight : checks made before a cluster starts, called by name like ``function``
    check : rules across options, without I/O; raises :class:`OptionError`
    cluster : runs on a cluster (takes the cluster options)
    """

    name: str
    function: Callable[..., Any]
    options: tuple[Option, ...]
    summary: str
    description: str
    examples: tuple[str, ...]
    section: str
    runner: Runner | None = None
    preflight: Callable[..., Any] | None = None
    check: Callable[[Mapping[str, Any]], None] | None = None
    cluster: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", inherit_defaults(self.options, self.function))

    def option(self, name: str) -> Option:
        """The option called ``name``."""
        return next(o for o in self.options if o.name == name)

    def validate(self, options: Mapping[str, Any]) -> None:
        """Rules across options (no I/O); raises :class:`OptionError`."""
        if self.check is not None:
            self.check(options)

    def run(self, options: Mapping[str, Any], runtime: Runtime) -> dict[str, Any]:
        """Run with checked ``options`` (every option by name, plus ``storage_options``)."""
        return (self.runner or run_by_name)(self, options, runtime)


def run_by_name(job: Job, options: Mapping[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Preflight, then the job's function on the cluster with a progress bar."""
    if job.preflight is not None:
        invoke(job.preflight, job, options)
    where = runtime.on_cluster() if job.cluster else nullcontext()
    with where, runtime.bar(job.name) as bar:
        result: dict[str, Any] = invoke(job.function, job, options, progress=bar)
    return result


def invoke(function: Callable[..., Any], job: Job, options: Mapping[str, Any], **extra: Any) -> Any:
    """Call ``function`` with the options that feed its parameters.

    A parameter takes, in order: ``extra[name]``, the option whose
    :attr:`~Option.target` it is, ``storage_options``; otherwise its default.
    A function without ``storage_options`` gets its locations as
    :class:`~streammix.io.location.Location` values carrying them.
    """
    params = inspect.signature(function).parameters
    feeds = {o.target: o for o in job.options}
    storage = options.get("storage_options")
    kwargs: dict[str, Any] = {}
    for name, p in params.items():
        if name in extra:
            kwargs[name] = extra[name]
        elif name in feeds:
            opt = feeds[name]
            value = options[opt.name]
            if opt.is_location and value is not None and "storage_options" not in params:
                value = as_location(value, storage)
            kwargs[name] = value
        elif name == "storage_options":
            kwargs[name] = storage
        elif p.default is p.empty:
            raise TypeError(f"job {job.name}: no option feeds {function.__name__}({name}=...)")
    return function(**kwargs)


# ------------------------------------------------------------------ errors
NO_VALUE: Any = object()
Spelling = Callable[[str, Any], str]


def flag_spelling(name: str, value: Any = NO_VALUE) -> str:
    """``--max-iter``, ``--method online``: the command line's words."""
    flag = "--" + name.replace("_", "-")
    return flag if value is NO_VALUE else f"{flag} {value}"


def key_spelling(name: str, value: Any = NO_VALUE) -> str:
    """``'max_iter'``, ``method = 'online'``: a TOML file's words."""
    return repr(name) if value is NO_VALUE else f"{name} = {value!r}"


class OptionError(InvalidParameterError):
    """Options that do not go together, worded by the front end that reports them.

    ``template`` has a ``{0}``, ``{1}``, ... for each option, given as a name or a
    ``(name, value)`` setting.

    Examples
    --------
    >>> err = OptionError("{0} does not apply to {1}.", "max_iter", ("method", "online"))
    >>> err.worded(flag_spelling)
    '--max-iter does not apply to --method online.'
    >>> str(err)
    "'max_iter' does not apply to method = 'online'."
    """

    def __init__(self, template: str, *names: str | tuple[str, Any]) -> None:
        self.template = template
        self.names = names
        super().__init__(self.worded(key_spelling))

    def worded(self, spell: Spelling) -> str:
        words = [spell(*n) if isinstance(n, tuple) else spell(n, NO_VALUE) for n in self.names]
        return self.template.format(*words)


class MissingOption(OptionError):
    """A required option that was not given."""

    def __init__(self, name: str) -> None:
        super().__init__("missing required key {0}", name)

    @property
    def name(self) -> str:
        return str(self.names[0])


class UnknownKey(InvalidParameterError):
    """A key no option has; :attr:`hint` suggests the nearest name."""

    def __init__(self, key: str, suggestion: str | None) -> None:
        self.key = key
        self.hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(f"unknown key {key!r}{self.hint}")


def canonical_keys(table: Mapping[str, Any], options: Sequence[Option]) -> dict[str, Any]:
    """A TOML table's values by canonical option name.

    Dashes read as underscores and older names as their option's. Raises
    :class:`UnknownKey`, or :class:`OptionError` when an option is given twice
    (by its name and an older one).
    """
    names = {o.name: o.name for o in options}
    for o in options:
        names.update(dict.fromkeys(o.aliases, o.name))
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in table.items():
        name = names.get(key.replace("-", "_"))
        if name is None:
            close = difflib.get_close_matches(key.replace("-", "_"), [o.name for o in options], 1)
            raise UnknownKey(key, close[0] if close else None)
        if name in out:
            raise OptionError("give either {0} or {1}, not both", given_as[name], key)
        out[name] = value
        given_as[name] = key
    return out
