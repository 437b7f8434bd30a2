"""The ``streammix`` command group: global options, configuration, exit codes.

Layer: edges (CLI). Exit codes:

====  =========================================================
0     success
1     runtime error (cluster unreachable, output conflict, ...)
2     usage error (unknown option, value out of range)
3     invalid input data (unreadable, wrong shape, NaN, damaged model,
      a destination that cannot be written)
130   interrupted (Ctrl-C, ``SIGINT``)
143   terminated (``SIGTERM``, what Kubernetes and schedulers send)
====  =========================================================

Every error is printed as one line on stderr; ``--debug`` adds the traceback.
An interrupted or terminated job stops as a killed one would, with one line:
what it wrote stays (outputs, checkpoints), and running it again finishes it.
``SIGTERM`` is turned into the same clean stop as Ctrl-C (the embedded
cluster is shut down rather than orphaned); the embedded cluster's workers
ignore the terminal's Ctrl-C, which only their driver handles.
Options come, in increasing priority, from a ``--config`` TOML file (a table
per command plus ``[cluster]`` and ``[storage]`` for every command; see
:mod:`streammix.cli.config`), ``STREAMMIX_*`` environment variables
(``STREAMMIX_<COMMAND>_<OPTION>``, and ``STREAMMIX_SCHEDULER_ADDRESS`` or
``DASK_SCHEDULER_ADDRESS``), and the command line. The commands themselves are
made from the job declarations (:mod:`streammix.cli.commands`).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

import click

from ..errors import (
    ClusterError,
    InvalidInputError,
    InvalidInputTypeError,
    InvalidParameterError,
    ModelFileError,
    StreammixError,
)
from ..io.location import redact
from ..jobs.catalog import SECTIONS
from . import ui
from .commands import COMMAND_JOBS, COMMANDS
from .config import load_config
from .help import format_sectioned_commands

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INPUT = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` in the main thread: a ``KeyboardInterrupt``, so that every clean-up
    that runs on Ctrl-C (tasks cancelled, cluster shut down) runs on it too."""


class Stopped(BaseException):
    """A job stopped by a signal, past click (which would turn it into ``Abort``)."""

    def __init__(self, cause: KeyboardInterrupt) -> None:
        super().__init__(cause)
        self.cause = cause


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Stop the job: the clean-up (tasks cancelled, the embedded cluster shut down) runs
    as the exception unwinds, and what it logs (cancelled tasks, closing workers) is
    expected, so logging ends here; the one line comes from :func:`_stopped`."""
    logging.disable(logging.CRITICAL)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


class StreammixGroup(click.Group):
    """A group that turns every error into one line and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as err:
            raise Stopped(err) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        prog = kwargs.get("prog_name") or "streammix"
        debug = "--debug" in sys.argv
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {signum: signal.signal(signum, _on_signal) for signum in signals}
        try:
            return self._main(prog, debug, *args, **kwargs)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _main(self, prog: str, debug: bool, *args: Any, **kwargs: Any) -> Any:
        try:
            result = super().main(*args, **kwargs)
        except Stopped as err:
            _stopped(prog, err.cause)
        except click.exceptions.Exit as err:
            return err.exit_code
        except click.exceptions.Abort as err:
            if isinstance(err.__cause__, KeyboardInterrupt):
                _stopped(prog, err.__cause__)
            _fail(prog, "aborted", EXIT_RUNTIME)
        except click.UsageError as err:
            where = f"{prog} {err.ctx.command.name}" if err.ctx and err.ctx.parent else prog
            _fail(where, err.format_message(), EXIT_USAGE)
        except click.ClickException as err:
            _fail(prog, err.format_message(), err.exit_code)
        except InvalidParameterError as err:
            _fail(prog, str(err), EXIT_USAGE, debug)
        except (InvalidInputError, InvalidInputTypeError, ModelFileError) as err:
            _fail(prog, str(err), EXIT_INPUT, debug)
        except (StreammixError, ClusterError) as err:
            _fail(prog, str(err), EXIT_RUNTIME, debug)
        except KeyboardInterrupt as err:
            _stopped(prog, err)
        except Exception as err:
            _fail(prog, f"{type(err).__name__}: {err}", EXIT_RUNTIME, debug)
        return result if isinstance(result, int) else EXIT_OK

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Commands grouped by what users do with them (each job's section)."""
        section = {name: job.section for name, job in COMMAND_JOBS.items()}
        sections = [
            (title, [name for name in self.commands if section.get(name) == title])
            for title in SECTIONS
        ]
        listed = {name for _, names in sections for name in names}
        others = [name for name in self.commands if name not in listed]
        format_sectioned_commands(self, ctx, formatter, [*sections, ("other", others)])


def _stopped(prog: str, cause: KeyboardInterrupt) -> None:
    """One line and 130 (Ctrl-C) or 143 (``SIGTERM``)."""
    if isinstance(cause, Terminated):
        _fail(prog, "terminated (SIGTERM); running the job again finishes it", EXIT_TERMINATED)
    if sys.stderr.isatty():
        click.echo(err=True)  # ends the line the terminal's "^C" is on
    _fail(prog, "interrupted; running the job again finishes it", EXIT_INTERRUPTED)


def _fail(prog: str, message: str, code: int, debug: bool = False) -> None:
    if debug:
        traceback.print_exc()
    line = redact(" ".join(str(message).split()))
    click.echo(f"{prog}: error: {line}", err=True)
    sys.exit(code)


@click.group(
    cls=StreammixGroup,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "auto_envvar_prefix": "STREAMMIX",
        "max_content_width": 100,
    },
)
@click.version_option(package_name="streammix")
@click.option(
    "--config",
    "config_file",
    envvar="STREAMMIX_CONFIG",
    help="TOML file (a path or URL) with option defaults per command.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Format of the logs on stderr.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.option("-v", "--verbose", count=True, help="More logging (debug).")
@click.option("--debug", is_flag=True, help="Print tracebacks of errors.")
@click.pass_context
def cli(
    ctx: click.Context,
    config_file: str | None,
    log_format: str,
    quiet: bool,
    verbose: int,
    debug: bool,
) -> None:
    """Gaussian mixture models for data larger than memory.

    Fit mixtures to chunked Zarr arrays, score and flag outliers, on an embedded
    local Dask cluster (the default) or on an existing one (--scheduler-address).
    Each option of a command is also a key of its table in a --config file and
    of a pipeline step of the same job, and the environment variable
    STREAMMIX_<COMMAND>_<OPTION> (e.g. STREAMMIX_FIT_N_COMPONENTS).

    \b
    Example:
      streammix generate data.zarr --n-samples 1000000 --n-features 8
      streammix fit data.zarr --model model --n-components 8
      streammix flag data.zarr --model model --output flags.zarr --contamination 0.01
    """
    ui.setup_logging(log_format, quiet, verbose)
    ctx.ensure_object(dict)
    ctx.obj.update({"quiet": quiet, "debug": debug})
    ctx.default_map = load_config(config_file, list(cli.commands))


for _command in COMMANDS.values():
    cli.add_command(_command)
