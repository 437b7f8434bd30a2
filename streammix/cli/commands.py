"""Every command, made from its job's declaration in :mod:`streammix.jobs.catalog`.

Layer: edges (CLI). An option becomes ``--kebab-case`` (its older names too),
reads ``STREAMMIX_<COMMAND>_<OPTION>``, and lists in the help section of its
group; a positional option becomes an argument. The callback checks the
options across each other, then runs the job with the same code as a pipeline
step, and prints its summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import click

from ..cluster import ClusterOptions
from ..jobs.catalog import CLUSTER_OPTIONS, JOBS, STORAGE_OPTIONS
from ..jobs.declaration import (
    Job,
    MissingOption,
    Option,
    OptionError,
    Runtime,
    flag_spelling,
)
from ..jobs.fit_options import method_note
from ..jobs.kinds import BOOLEAN, NAMES, BadValue
from ..pipeline import RUN
from . import ui
from .help import SectionArgument, SectionedCommand, SectionOption

JSON_SECTION = "Output format"


class OptionType(click.ParamType):
    """Converts a value (text, or typed from a ``--config`` file) as its option declares."""

    def __init__(self, option: Option) -> None:
        self.option = option
        self.name = option.kind.metavar.lower()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.option.value(value, text=isinstance(value, str))
        except BadValue as err:
            self.fail(err.sentence(), param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        if self.option.choices:
            choices = "[" + "|".join(self.option.choices) + "]"
            return f"{choices},..." if self.option.kind is NAMES else choices
        return self.option.metavar or self.option.kind.metavar


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(option: Option) -> str:
    """The option's help, then where it applies and its default (an estimator's
    own default read from the estimator's signature)."""
    notes = [method_note(option)]
    flag = option.kind is BOOLEAN and not option.negatable
    if option.default is not None and not flag:
        notes.append(f"default: {option.kind.show(option.default)}")
    note = "; ".join(n for n in notes if n)
    return f"{option.help}  [{note}]" if note else option.help


def make_param(command: str, option: Option) -> click.Parameter:
    """The click parameter of ``option`` in ``command``."""
    env = option.envvar_names(command)
    if option.positional:
        return SectionArgument(
            [option.name],
            type=OptionType(option),
            required=option.required,
            metavar=option.metavar or option.name.upper(),
            envvar=env,
            section=option.group,
            help=option.help,
        )
    names = [option.name, *option.aliases]
    common: dict[str, Any] = {"envvar": env, "help": _help(option), "section": option.group}
    if option.kind is BOOLEAN:
        if option.default is None or option.negatable:
            decls = [f"{_flag(n)}/--no-{_flag(n)[2:]}" for n in names]
            return SectionOption([*decls, option.name], default=option.default, **common)
        return SectionOption([*map(_flag, names), option.name], is_flag=True, **common)
    return SectionOption(
        [*map(_flag, names), option.name],
        type=OptionType(option),
        default=option.default,
        required=option.required,
        **common,
    )


def _options(job: Job) -> list[Option]:
    return [*job.options, STORAGE_OPTIONS, *(CLUSTER_OPTIONS if job.cluster else ())]


def _show_candidates(summary: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    for row in summary["candidates"]:
        mark = "*" if row["best"] else " "
        held = "" if row["heldout"] is None else f"  heldout {row['heldout']:.5f}"
        click.echo(
            f"{mark} K={row['n_components']:3d} {row['covariance_type']:9s} "
            f"bic {row['bic']:.6g}  aic {row['aic']:.6g}{held}"
        )
    return {k: v for k, v in summary.items() if k != "candidates"}


def _show_pipeline(summary: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any] | None:
    return summary if options["check"] else None  # each step's summary is printed already


TEXT_SUMMARIES: dict[str, Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any] | None]] = {
    "select": _show_candidates,
    "run": _show_pipeline,
}
"""Jobs whose summary prints differently as text; ``None``: nothing more to print."""


def _callback(job: Job, **params: Any) -> None:
    ctx = click.get_current_context()
    as_json = params.pop("as_json")
    cluster = (
        ClusterOptions(**{o.name: params.pop(o.name) for o in CLUSTER_OPTIONS})
        if job.cluster
        else None
    )
    options = params
    try:
        job.validate(options)
    except MissingOption as err:
        param = next(p for p in ctx.command.params if p.name == err.name)
        raise click.MissingParameter(ctx=ctx, param=param) from None
    except OptionError as err:
        raise click.UsageError(err.worded(flag_spelling), ctx) from None
    quiet = ui.quiet(ctx)
    runtime = Runtime(
        cluster=cluster,
        progress=lambda label: ui.Progress(label, not quiet),
        iterations=lambda unit, total: ui.IterationLog(unit, total, not quiet),
        report=ui.step_reporter(as_json),
    )
    summary: dict[str, Any] | None = job.run(options, runtime)
    show = TEXT_SUMMARIES.get(job.name)
    if show is not None and not as_json and summary is not None:
        summary = show(summary, options)
    if summary is not None:
        ui.emit_summary(summary, as_json)


def _help_text(job: Job) -> str:
    examples = "\n".join("  " + line for ex in job.examples for line in ex.splitlines())
    return f"{job.summary}\n\n{job.description}\n\n\b\nExample:\n{examples}"


def make_command(job: Job) -> click.Command:
    """The ``streammix <job>`` command."""
    params = [make_param(job.name, o) for o in _options(job)]
    params.append(
        SectionOption(
            ["--json", "as_json"],
            is_flag=True,
            help="Print a JSON summary on stdout.",
            section=JSON_SECTION,
        )
    )
    return SectionedCommand(
        job.name,
        params=params,
        callback=partial(_callback, job),
        help=_help_text(job),
        short_help=job.summary,
    )


COMMAND_JOBS: dict[str, Job] = {**JOBS, RUN.name: RUN}
"""The job behind each command: every job of the catalog, and ``run``."""

COMMANDS: dict[str, click.Command] = {name: make_command(j) for name, j in COMMAND_JOBS.items()}
