"""Help that reads by purpose: a command's options in sections, commands by section.

Layer: edges (CLI). Each parameter carries the section it is listed in (the
help group of its declaration); arguments are listed with their help too,
which click does not do by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

HELP_SECTION = "Help"


class SectionOption(click.Option):
    """An option that knows its help section."""

    def __init__(self, *args: Any, section: str = "Options", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class SectionArgument(click.Argument):
    """An argument (with its help) that knows its help section."""

    def __init__(self, *args: Any, section: str = "Arguments", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its parameters in sections, in the order
    their sections first appear; arguments too, in their own sections."""

    def format_arguments(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Nothing: :meth:`format_options` lists arguments in their sections."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                title = getattr(param, "section", HELP_SECTION)
                sections.setdefault(title, []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def format_sectioned_commands(
    group: click.Group,
    ctx: click.Context,
    formatter: click.HelpFormatter,
    sections: Sequence[tuple[str, Sequence[str]]],
) -> None:
    """The group's commands under one ``Commands:`` heading, one line each, a
    blank line between sections and each section's name beside its first command::

        fit       jobs     Fit a Gaussian mixture to DATA and save it to --model.
        score              Write every row's log-likelihood and component to OUTPUT.
    """
    rows: list[list[tuple[str, str, click.Command]]] = []
    for title, names in sections:
        block = []
        for i, name in enumerate(names):
            cmd = group.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                block.append((name, title if i == 0 else "", cmd))
        if block:
            rows.append(block)
    if not rows:
        return
    first = max(len(name) for block in rows for name, _, _ in block) + 2
    second = max(len(title) for block in rows for _, title, _ in block) + 2
    # One line per command, as click does: the short help is shortened to fit.
    limit = max((formatter.width or 80) - formatter.current_indent - first - second - 2, 20)
    pad = " " * (formatter.current_indent + 2)
    with formatter.section("Commands"):
        for b, block in enumerate(rows):
            if b:
                formatter.write("\n")
            for name, title, cmd in block:
                text = cmd.get_short_help_str(limit=limit)
                formatter.write(f"{pad}{name:<{first}}{title:<{second}}{text}\n")
