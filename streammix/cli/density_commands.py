"""Commands for what the textbook does with a mixture: sample, impute, kde, select.

Layer: edges (CLI).
"""

from __future__ import annotations

from typing import Any

import click

from ..cluster import ClusterOptions, connect
from ..errors import InvalidParameterError
from ..estimators.selection import parse_component_counts
from ..jobs import impute_job, kde_job, sample_job, select_job
from . import ui
from .app import cli
from .options import cluster_options, data_argument, json_option, overwrite_option, storage_option


def parse_ks(text: str) -> list[int]:
    try:
        return parse_component_counts(text)
    except InvalidParameterError as err:
        raise click.BadParameter(str(err), param_hint="--n-components") from None


@cli.command()
@click.argument("model")
@click.option("--output", required=True, help="Output Zarr group (a path or URL).")
@click.option("--n-samples", type=click.IntRange(min=1), required=True)
@click.option("--chunk-rows", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@overwrite_option
@storage_option
@cluster_options
@json_option
@click.pass_context
def sample(
    ctx: click.Context,
    model: str,
    output: str,
    n_samples: int,
    chunk_rows: int,
    seed: int,
    overwrite: bool,
    storage_options: dict[str, Any] | None,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Draw rows from MODEL into OUTPUT (arrays X and component), chunk by chunk.

    Chunk c draws from its own stream seeded by (seed, c): the output is the
    same whatever the number of workers.

    \b
    Example:
      streammix sample models/current --output synthetic.zarr --n-samples 10000000 \\
          --chunk-rows 250000 --seed 7
    """
    summary = ui.run_job(
        ctx,
        cluster,
        "sample",
        sample_job.sample,
        model,
        output,
        n_samples,
        chunk_rows=chunk_rows,
        seed=seed,
        overwrite=overwrite,
        storage_options=storage_options,
    )
    ui.emit_summary(summary, as_json)


@cli.command()
@data_argument
@click.option("--model", "model_dir", required=True, help="Model (from fit or publish).")
@click.option("--output", required=True, help="Output Zarr group (a path or URL).")
@click.option(
    "--n-draws",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="0: fill with conditional means (array X); n: n conditional draws (draws).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@overwrite_option
@cluster_options
@json_option
@click.pass_context
def impute(
    ctx: click.Context,
    data: str,
    array: str,
    columns: tuple[str, ...] | None,
    storage_options: dict[str, Any] | None,
    model_dir: str,
    output: str,
    n_draws: int,
    seed: int,
    overwrite: bool,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Fill the NaN entries of DATA from MODEL, conditional on each row's observed entries.

    \b
    Example:
      streammix impute sensors.zarr --model models/current --output filled.zarr
    """
    summary = ui.run_job(
        ctx,
        cluster,
        "impute",
        impute_job.impute,
        data,
        model_dir,
        output,
        array=array,
        columns=columns,
        n_draws=n_draws,
        seed=seed,
        overwrite=overwrite,
        storage_options=storage_options,
    )
    ui.emit_summary(summary, as_json)


def _bandwidth(text: str) -> str | float:
    if text in ("scott", "silverman"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use scott, silverman or a positive number.") from None
    if not value > 0:
        raise click.BadParameter(f"{text!r} must be positive.")
    return value


@cli.command()
@data_argument
@click.option("--output", required=True, help="Output Zarr group (a path or URL).")
@click.option(
    "--bandwidth",
    default="scott",
    show_default=True,
    help="scott, silverman (scipy's rules) or a kernel standard deviation.",
)
@click.option("--query", help="Rows to evaluate (default: DATA itself).")
@overwrite_option
@cluster_options
@json_option
@click.pass_context
def kde(
    ctx: click.Context,
    data: str,
    array: str,
    columns: tuple[str, ...] | None,
    storage_options: dict[str, Any] | None,
    output: str,
    bandwidth: str,
    query: str | None,
    overwrite: bool,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Kernel density estimate of DATA: write the log-density of every --query row.

    Query and data chunks are paired blockwise; the full matrix is never formed.

    \b
    Example:
      streammix kde sample.zarr --output density.zarr --bandwidth silverman --query new.zarr
    """
    summary = ui.run_job(
        ctx,
        cluster,
        "kde",
        kde_job.kde,
        data,
        output,
        bandwidth=_bandwidth(bandwidth),
        query=query,
        array=array,
        columns=columns,
        overwrite=overwrite,
        storage_options=storage_options,
    )
    ui.emit_summary(summary, as_json)


@cli.command()
@data_argument
@click.option("--model", "model_dir", required=True, help="Model directory for the chosen model.")
@click.option(
    "--n-components",
    "ks",
    default="1-8",
    show_default=True,
    help="Candidate counts, e.g. 1-8 or 2,4,8.",
)
@click.option(
    "--covariance-types",
    default="full",
    show_default=True,
    help="Comma-separated families among full, tied, diag, spherical.",
)
@click.option(
    "--criterion", type=click.Choice(["bic", "aic", "heldout"]), default="bic", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-iter", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0.0), default=1e-3, show_default=True)
@cluster_options
@json_option
def select(
    data: str,
    array: str,
    columns: tuple[str, ...] | None,
    storage_options: dict[str, Any] | None,
    model_dir: str,
    ks: str,
    covariance_types: str,
    criterion: str,
    seed: int,
    max_iter: int,
    tol: float,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Fit every candidate in the same passes over DATA and save the best to --model.

    \b
    Example:
      streammix select data.zarr --model models/selected --n-components 1-12 \\
          --covariance-types full,diag --criterion bic
    """
    types = [t.strip() for t in covariance_types.split(",") if t.strip()]
    with connect(cluster):
        summary = select_job.select_job(
            data,
            model_dir,
            n_components=parse_ks(ks),
            covariance_types=types,
            criterion=criterion,
            seed=seed,
            array=array,
            columns=columns,
            tol=tol,
            max_iter=max_iter,
            storage_options=storage_options,
        )
    if not as_json:
        for row in summary["candidates"]:
            mark = "*" if row["best"] else " "
            held = "" if row["heldout"] is None else f"  heldout {row['heldout']:.5f}"
            click.echo(
                f"{mark} K={row['n_components']:3d} {row['covariance_type']:9s} "
                f"bic {row['bic']:.6g}  aic {row['aic']:.6g}{held}"
            )
        summary = {k: v for k, v in summary.items() if k != "candidates"}
    ui.emit_summary(summary, as_json)
