"""Model commands: info, publish and plot.

Layer: edges (CLI).
"""

from __future__ import annotations

from typing import Any

import click

from ..cluster import ClusterOptions, connect
from ..io.location import as_location
from ..io.modelfile import load, publish
from ..jobs.info_job import model_summary
from ..plotting import plot_model
from . import ui
from .app import cli
from .options import cluster_options, json_option, storage_option


@cli.command()
@click.argument("model")
@storage_option
@json_option
def info(model: str, storage_options: dict[str, Any] | None, as_json: bool) -> None:
    """Describe the saved model MODEL (a path or URL, or a published pointer).

    \b
    Example:
      streammix info models/current --json
    """
    ui.emit_summary(model_summary(model, storage_options), as_json)


@cli.command(name="publish")
@click.argument("model")
@click.option("--target", required=True, help="The pointer readers use, e.g. models/current.")
@click.option("--versions", help="Where versions are kept (default: 'versions' beside --target).")
@click.option("--version", "version", help="Name of this version (default: a UTC time stamp).")
@click.option(
    "--keep", type=click.IntRange(min=1), default=5, show_default=True, help="Versions kept."
)
@storage_option
@json_option
def publish_command(
    model: str,
    target: str,
    versions: str | None,
    version: str | None,
    keep: int,
    storage_options: dict[str, Any] | None,
    as_json: bool,
) -> None:
    """Make the fitted MODEL the one at --target, atomically.

    MODEL is copied into the versions directory (manifest last) and removed;
    --target becomes a small pointer to the copy, switched with one write, so
    readers see the old model or the new one. Works the same on local disks and
    object stores.

    \b
    Example:
      streammix publish models/staging --target s3://bucket/models/current --keep 10
    """
    summary = publish(
        as_location(model, storage_options),
        as_location(target, storage_options),
        versions=None if versions is None else as_location(versions, storage_options),
        version=version,
        keep=keep,
    )
    ui.emit_summary(summary, as_json)


@cli.command()
@click.argument("model")
@click.option("--data", help="Also draw a sample of these rows and their scores.")
@click.option("--array", default="X", show_default=True, help="Array of a --data group.")
@click.option("--output", required=True, help="Image file to write (PNG, SVG, PDF; a path or URL).")
@storage_option
@cluster_options
@json_option
def plot(
    model: str,
    data: str | None,
    array: str,
    output: str,
    storage_options: dict[str, Any] | None,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Draw MODEL: log-likelihood per iteration, components on the two principal
    axes, and the score histogram of --data with the threshold.

    Needs matplotlib (pip install 'streammix[plot]').

    \b
    Example:
      streammix plot models/current --data data.zarr --output model.png
    """
    est = load(as_location(model, storage_options))
    image = as_location(output, storage_options)
    if data is None:
        path = plot_model(est, image)
    else:
        with connect(cluster):
            path = plot_model(est, image, data=as_location(data, storage_options), array=array)
    ui.emit_summary({"plot": path}, as_json)
