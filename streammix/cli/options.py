"""Options shared by several commands, as reusable decorators.

Layer: edges (CLI).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..cluster import ClusterOptions
from ..errors import InvalidParameterError
from ..io.location import parse_storage_options

F = TypeVar("F", bound=Callable[..., Any])


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for d in reversed(decorators):
            func = d(func)
        return func

    return apply


def cluster_options(func: F) -> F:
    """Where the job runs; gathered into one ``cluster`` argument."""
    decorated = _stack(
        click.option(
            "--scheduler-address",
            envvar=["STREAMMIX_SCHEDULER_ADDRESS", "DASK_SCHEDULER_ADDRESS"],
            help="Run on this existing Dask scheduler (tcp:// or tls://).",
            metavar="ADDR",
        ),
        click.option(
            "--scheduler-file",
            type=click.Path(dir_okay=False),
            help="Run on the cluster described by this scheduler file.",
        ),
        click.option(
            "--n-workers",
            type=click.IntRange(min=1),
            help="Local cluster: worker processes (default: one per core).",
        ),
        click.option(
            "--threads-per-worker",
            type=click.IntRange(min=1),
            help="Local cluster: threads per worker (default: 1).",
        ),
        click.option(
            "--memory-limit",
            metavar="BYTES",
            help="Local cluster: memory per worker, e.g. 4GiB (default: RAM / workers).",
        ),
        click.option(
            "--dashboard/--no-dashboard",
            default=False,
            show_default=True,
            help="Local cluster: serve the dashboard on 127.0.0.1.",
        ),
        click.option(
            "--tls-ca-file",
            type=click.Path(dir_okay=False),
            help="TLS: certificate authority of the scheduler.",
        ),
        click.option(
            "--tls-cert", type=click.Path(dir_okay=False), help="TLS: client certificate."
        ),
        click.option("--tls-key", type=click.Path(dir_okay=False), help="TLS: client key."),
    )(func)

    @functools.wraps(decorated)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["cluster"] = ClusterOptions(
            scheduler_address=kwargs.pop("scheduler_address"),
            scheduler_file=kwargs.pop("scheduler_file"),
            n_workers=kwargs.pop("n_workers"),
            threads_per_worker=kwargs.pop("threads_per_worker"),
            memory_limit=kwargs.pop("memory_limit"),
            dashboard=kwargs.pop("dashboard"),
            tls_ca_file=kwargs.pop("tls_ca_file"),
            tls_cert=kwargs.pop("tls_cert"),
            tls_key=kwargs.pop("tls_key"),
        )
        return decorated(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class StorageOptionsType(click.ParamType):
    """fsspec storage options: a JSON object on the command line, a table in a
    config file. The value is never echoed in errors (it may hold credentials)."""

    name = "JSON"

    def convert(self, value: Any, param: Any, ctx: Any) -> dict[str, Any]:
        try:
            return parse_storage_options(value, "--storage-options")
        except InvalidParameterError as err:
            self.fail(str(err).split(": ", 1)[1], param, ctx)


def storage_option(func: F) -> F:
    """How to reach remote locations; gathered into ``storage_options``."""
    return click.option(
        "--storage-options",
        type=StorageOptionsType(),
        envvar="STREAMMIX_STORAGE_OPTIONS",
        default=None,
        help=(
            "fsspec options for URLs (s3://, gs://, az://, ...) as a JSON object, e.g. "
            """'{"endpoint_url": "http://127.0.0.1:9000"}', or by protocol '{"s3": {...}}'. """
            "Without it each store's standard environment applies."
        ),
    )(func)


def _columns(ctx: Any, param: Any, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(c.strip() for c in value.split(",") if c.strip())
    if not names:
        raise click.BadParameter("name at least one column.")
    return names


def data_argument(func: F) -> F:
    """DATA: a Zarr array or group (plus --array), or a Parquet file or dataset
    (plus --columns); a local path or a URL."""
    return _stack(
        click.argument("data", metavar="DATA"),
        click.option(
            "--array",
            default="X",
            show_default=True,
            help="Array to use when DATA is a Zarr group.",
        ),
        click.option(
            "--columns",
            callback=_columns,
            metavar="A,B,...",
            help="Columns to use when DATA is Parquet (default: every numeric column).",
        ),
        storage_option,
    )(func)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."
)

overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an output written by another job."
)

on_invalid_option = click.option(
    "--on-invalid",
    type=click.Choice(["error", "skip", "flag"]),
    default="error",
    show_default=True,
    help="Rows with NaN or infinity: fail naming the first, skip them (-1), or flag them.",
)
