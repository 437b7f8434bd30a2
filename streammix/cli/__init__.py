"""The ``streammix`` command line.

Layer: edges. Commands live in modules by theme and register on the group in
:mod:`streammix.cli.app`; each parses flags and calls one library function.
"""

from __future__ import annotations

from . import (  # noqa: F401 - register the commands
    density_commands,
    job_commands,
    model_commands,
    run_command,
)
from .app import cli


def main() -> None:
    """Console entry point."""
    raise SystemExit(cli.main(prog_name="streammix"))


__all__ = ["cli", "main"]
