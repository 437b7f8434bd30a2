"""The ``run`` command: execute a declarative pipeline file.

Layer: edges (CLI).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import click

from ..cluster import ClusterOptions
from ..pipeline import Step, load_pipeline, run_pipeline
from . import ui
from .app import cli
from .options import cluster_options, json_option, storage_option

logger = logging.getLogger("streammix")


@cli.command()
@click.argument("pipeline_file", metavar="PIPELINE.toml")
@click.option("--check", is_flag=True, help="Validate the file and list its steps; run nothing.")
@storage_option
@cluster_options
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    pipeline_file: str,
    check: bool,
    storage_options: dict[str, Any] | None,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Run the steps of PIPELINE.toml in order, on one cluster.

    The file is validated first (unknown jobs or keys, missing or mistyped
    values are reported with their step). Cluster options on the command line
    replace the file's [cluster] table; --storage-options are merged over its
    [storage] table. PIPELINE.toml may itself be a URL.

    \b
    Example:
      streammix run pipelines/nightly-scoring.toml
      streammix run pipelines/weekly-refit.toml --scheduler-address tcp://10.0.0.5:8786
    """
    pipeline = load_pipeline(pipeline_file, storage_options)
    if check:
        ui.emit_summary(
            {"pipeline": pipeline.name, "steps": [s.job for s in pipeline.steps]}, as_json
        )
        return
    quiet = bool(ctx.find_root().obj.get("quiet"))
    given = {k: v for k, v in vars_of(cluster).items() if v not in (None, False)}
    options = ClusterOptions(**{**pipeline.cluster, **given}) if given or pipeline.cluster else None

    def on_step(step: Step, summary: dict[str, Any]) -> None:
        logger.info("%s done", step.label)
        if not as_json:
            click.echo(f"# {step.label}")
            ui.emit_summary(summary, False)

    def on_iteration(i: int, bound: float, change: float, seconds: float) -> None:
        change_text = "" if math.isnan(change) else f"  change {change:+.3e}"
        logger.info(
            f"iteration {i:4d}  mean log-likelihood {bound:.6f}{change_text}  {seconds:.2f} s"
        )

    results = run_pipeline(
        pipeline,
        options,
        progress=lambda label: ui.Progress(label, not quiet),
        on_step=on_step,
        on_iteration=on_iteration,
    )
    if as_json:
        ui.emit_summary({"pipeline": pipeline.name, "steps": results}, True)


def vars_of(options: ClusterOptions) -> dict[str, Any]:
    return {f: getattr(options, f) for f in options.__dataclass_fields__ if f != "timeout"}
