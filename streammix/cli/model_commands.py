"""Model commands: info and plot.

Layer: edges (CLI).
"""

from __future__ import annotations

import click

from ..cluster import ClusterOptions, connect
from ..io.modelfile import load
from ..jobs.info import model_summary
from ..plotting import plot_model
from . import ui
from .app import cli
from .options import cluster_options, json_option


@cli.command()
@click.argument("model", type=click.Path())
@json_option
def info(model: str, as_json: bool) -> None:
    """Describe the saved model MODEL.

    \b
    Example:
      streammix info models/current --json
    """
    ui.emit_summary(model_summary(model), as_json)


@cli.command()
@click.argument("model", type=click.Path())
@click.option(
    "--data", type=click.Path(), help="Also draw a sample of these rows and their scores."
)
@click.option("--array", default="X", show_default=True, help="Array of a --data group.")
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Image file to write (PNG, SVG, PDF).",
)
@cluster_options
@json_option
def plot(
    model: str, data: str | None, array: str, output: str, cluster: ClusterOptions, as_json: bool
) -> None:
    """Draw MODEL: log-likelihood per iteration, components on the two principal
    axes, and the score histogram of --data with the threshold.

    Needs matplotlib (pip install 'streammix[plot]').

    \b
    Example:
      streammix plot models/current --data data.zarr --output model.png
    """
    est = load(model)
    if data is None:
        path = plot_model(est, output)
    else:
        with connect(cluster):
            path = plot_model(est, output, data=data, array=array)
    ui.emit_summary({"plot": path}, as_json)
