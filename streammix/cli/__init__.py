"""The ``streammix`` command line.

Layer: edges. The group, its global options and exit codes are in
:mod:`streammix.cli.app`; every command is made from its job's declaration
(:mod:`streammix.jobs.catalog`) by :mod:`streammix.cli.commands`, so a command
and a pipeline step of the same job take the same options and run the same code.
"""

from __future__ import annotations

from .app import cli


def main() -> None:
    """Console entry point."""
    raise SystemExit(cli.main(prog_name="streammix"))


__all__ = ["cli", "main"]
