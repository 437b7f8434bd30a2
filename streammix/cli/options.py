"""Options shared by several commands, as reusable decorators.

Layer: edges (CLI).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..cluster import ClusterOptions

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


def data_argument(func: F) -> F:
    """DATA: a Zarr array path, or a group path plus --array."""
    return _stack(
        click.argument("data", type=click.Path()),
        click.option(
            "--array",
            default="X",
            show_default=True,
            help="Array to use when DATA is a Zarr group.",
        ),
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
