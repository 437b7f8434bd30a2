"""Data commands: generate, fit, score, flag. Each parses flags and calls one job.

Layer: edges (CLI).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import click

from .. import datasets
from ..cluster import ClusterOptions, connect
from ..io.location import as_location
from ..jobs import fit_job, score_jobs
from . import ui
from .app import cli
from .options import (
    cluster_options,
    data_argument,
    json_option,
    on_invalid_option,
    overwrite_option,
    storage_option,
)

logger = logging.getLogger("streammix")

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


@cli.command()
@click.argument("out")
@click.option("--n-samples", type=click.IntRange(min=1), default=200_000, show_default=True)
@click.option("--n-features", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--n-components", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--outlier-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Share of rows replaced by uniform outliers.",
)
@click.option("--chunk-rows", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@storage_option
@cluster_options
@json_option
@click.pass_context
def generate(
    ctx: click.Context,
    out: str,
    n_samples: int,
    n_features: int,
    n_components: int,
    outlier_fraction: float,
    chunk_rows: int,
    seed: int,
    overwrite: bool,
    storage_options: dict[str, Any] | None,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Write a synthetic dataset (a known mixture plus outliers) to the Zarr group OUT.

    OUT gets arrays X (float64), component (int32, -1 for outliers) and
    is_outlier (int8), written chunk by chunk in parallel: any size fits.

    \b
    Example:
      streammix generate data.zarr --n-samples 1000000 --n-features 8 \\
          --n-components 5 --outlier-fraction 0.01 --chunk-rows 50000
    """
    summary = ui.run_job(
        ctx,
        cluster,
        "generate",
        datasets.generate,
        out,
        n_samples,
        n_features,
        n_components,
        outlier_fraction,
        chunk_rows,
        seed,
        overwrite=overwrite,
        storage_options=storage_options,
    )
    ui.emit_summary(summary, as_json)


@cli.command()
@data_argument
@click.option(
    "--model",
    "model_dir",
    required=True,
    help="Model directory to write (a path or URL).",
)
@click.option(
    "--n-components",
    type=click.IntRange(min=1),
    help="Components (required, except for --method detector: 1).",
)
@click.option(
    "--covariance-type", type=click.Choice(COVARIANCE_TYPES), default="full", show_default=True
)
@click.option(
    "--method",
    type=click.Choice(["batch", "online", "detector"]),
    default="batch",
    show_default=True,
    help="Batch EM, one-pass stepwise (online) EM, or the robust outlier detector.",
)
@click.option(
    "--n-init",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Batch: restarts (all advance in the same passes).",
)
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Batch: EM iterations at most.",
)
@click.option(
    "--tol",
    type=click.FloatRange(min=0.0),
    default=1e-3,
    show_default=True,
    help="Batch: stop when the mean log-likelihood changes less than this.",
)
@click.option("--reg-covar", type=click.FloatRange(min=0.0), default=1e-6, show_default=True)
@click.option(
    "--init",
    "init_params",
    type=click.Choice(["kmeans", "k-means++", "random", "random_from_data"]),
    default="kmeans",
    show_default=True,
)
@click.option(
    "--max-epochs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Online: passes over the data.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Online: rows per update (default: one chunk).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--checkpoint",
    help="Directory (path or URL) for the fit's state after every iteration.",
)
@click.option("--resume", is_flag=True, help="Continue from --checkpoint.")
@click.option(
    "--contamination",
    type=click.FloatRange(0.0, 0.5, min_open=True),
    help="Also calibrate an outlier threshold at this share of the training rows.",
)
@cluster_options
@json_option
@click.pass_context
def fit(
    ctx: click.Context,
    data: str,
    array: str,
    columns: tuple[str, ...] | None,
    storage_options: dict[str, Any] | None,
    model_dir: str,
    n_components: int | None,
    covariance_type: str,
    method: str,
    n_init: int,
    max_iter: int,
    tol: float,
    reg_covar: float,
    init_params: str,
    max_epochs: int,
    batch_size: int | None,
    seed: int,
    checkpoint: str | None,
    resume: bool,
    contamination: float | None,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Fit a Gaussian mixture to DATA and save it to --model.

    Logs one line per iteration (iteration, mean log-likelihood, change,
    seconds). With --checkpoint, a fit killed at any point continues with
    --resume and ends with the parameters of an uninterrupted fit.

    \b
    Example:
      streammix fit data.zarr --model models/v1 --n-components 8 \\
          --checkpoint models/v1.ckpt --contamination 0.01
    """
    if resume and not checkpoint:
        raise click.UsageError("--resume needs --checkpoint.")
    if n_components is None:
        if method != "detector":
            raise click.UsageError("Missing option '--n-components'.")
        n_components = 1
    estimator = fit_job.make_estimator(
        method,
        n_components=n_components,
        covariance_type=covariance_type,
        reg_covar=reg_covar,
        init_params=init_params,
        seed=seed,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        max_epochs=max_epochs,
        batch_size=batch_size,
        contamination=contamination,
    )
    total = max_iter if method == "batch" else max_epochs
    unit = "iteration" if method == "batch" else "epoch"
    progress = ui.Progress("fit", not ui.quiet(ctx))

    def on_iteration(i: int, bound: float, change: float, seconds: float) -> None:
        progress.close()
        change_text = "" if math.isnan(change) else f"  change {change:+.3e}"
        logger.info(f"{unit} {i:4d}  mean log-likelihood {bound:.6f}{change_text}  {seconds:.2f} s")
        progress(i, total)

    fit_job.preflight(
        data,
        array,
        n_components,
        columns=columns,
        destinations=(model_dir, checkpoint),
        storage_options=storage_options,
    )
    with connect(cluster):
        summary = fit_job.fit(
            data,
            model_dir,
            estimator,
            array=array,
            columns=columns,
            checkpoint=checkpoint,
            resume=resume,
            contamination=contamination,
            storage_options=storage_options,
            on_iteration=on_iteration,
        )
    progress.close()
    ui.emit_summary(summary, as_json)


@cli.command()
@data_argument
@click.option("--model", "model_dir", required=True, help="Model (from fit or publish).")
@click.option("--output", required=True, help="Output Zarr group (a path or URL).")
@click.option(
    "--incremental", is_flag=True, help="Score only rows appended to DATA since OUTPUT was written."
)
@overwrite_option
@on_invalid_option
@cluster_options
@json_option
@click.pass_context
def score(
    ctx: click.Context,
    data: str,
    array: str,
    columns: tuple[str, ...] | None,
    storage_options: dict[str, Any] | None,
    model_dir: str,
    output: str,
    incremental: bool,
    overwrite: bool,
    on_invalid: str,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Write every row's log-likelihood and most likely component to OUTPUT.

    OUTPUT is a Zarr group row-aligned with DATA: log_likelihood (float64) and
    component (int32). Re-running finishes what a killed run left and changes
    nothing after a complete one; 'complete' is set in its attributes last.

    \b
    Example:
      streammix score events.zarr --model models/current --output scores.zarr --incremental
    """
    score_jobs.preflight(
        data,
        model_dir,
        array,
        output=output,
        columns=columns,
        storage_options=storage_options,
    )
    summary = ui.run_job(
        ctx,
        cluster,
        "score",
        score_jobs.score,
        data,
        model_dir,
        output,
        array=array,
        columns=columns,
        incremental=incremental,
        overwrite=overwrite,
        on_invalid=on_invalid,
        storage_options=storage_options,
    )
    ui.emit_summary(summary, as_json)


@cli.command()
@data_argument
@click.option(
    "--model",
    "model_dir",
    help="Model (from fit or publish); without it an OutlierDetector is fitted on DATA and "
    "saved as OUTPUT.detector.",
)
@click.option("--output", required=True, help="Output Zarr group (a path or URL).")
@click.option(
    "--contamination",
    type=float,
    help="Flag this share of the rows (in (0, 0.5]): the lowest log-likelihoods.",
)
@click.option("--threshold", type=float, help="Flag rows with a log-likelihood below this.")
@click.option("--truth", help="A Zarr array of 0/1 labels: report precision and recall.")
@click.option(
    "--incremental", is_flag=True, help="Score only rows appended to DATA since OUTPUT was written."
)
@click.option(
    "--explain",
    is_flag=True,
    help="Also write component and per-feature conditional z-scores of flagged rows.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the detector fitted when no --model is given.",
)
@overwrite_option
@on_invalid_option
@cluster_options
@json_option
@click.pass_context
def flag(
    ctx: click.Context,
    data: str,
    array: str,
    columns: tuple[str, ...] | None,
    storage_options: dict[str, Any] | None,
    model_dir: str | None,
    output: str,
    contamination: float | None,
    threshold: float | None,
    truth: str | None,
    incremental: bool,
    explain: bool,
    seed: int,
    overwrite: bool,
    on_invalid: str,
    cluster: ClusterOptions,
    as_json: bool,
) -> None:
    """Flag outliers of DATA: rows whose log-likelihood is below a threshold.

    OUTPUT gets log_likelihood (float64) and flag (int8: 1 outlier, 0 inlier,
    -1 could not be scored); its attributes record the threshold and how it
    was chosen (--threshold, --contamination, or the model's calibration from
    fit --contamination). Without --model, an OutlierDetector with its robust
    defaults is fitted on DATA (contamination --contamination, else 0.1) and
    saved as OUTPUT.detector; a saved detector can be passed as --model.

    \b
    Example:
      streammix flag events.zarr --model models/current --output flags.zarr --contamination 0.01
      streammix flag events.zarr --output flags.zarr --contamination 0.02 --explain
    """
    if contamination is not None and not 0.0 < contamination <= 0.5:
        raise click.BadParameter(
            f"{contamination} is not in (0, 0.5].", param_hint="--contamination"
        )
    detector = None
    if model_dir is None:
        if threshold is not None and contamination is not None:
            raise click.UsageError("Pass either --contamination or --threshold, not both.")
        out = as_location(output, storage_options)
        model_dir = str(out.sibling(f"{out.name}.detector"))
        fit_job.preflight(
            data,
            array,
            1,
            columns=columns,
            destinations=(output, model_dir),
            storage_options=storage_options,
        )
        detector = fit_job.make_estimator(
            "detector", n_components=1, seed=seed, contamination=contamination
        )
        contamination = None  # the detector's threshold is that quantile of DATA
    else:
        score_jobs.preflight(
            data,
            model_dir,
            array,
            contamination,
            threshold,
            flagging=True,
            output=output,
            columns=columns,
            storage_options=storage_options,
        )
    model = model_dir

    def fit_then_flag(**kwargs: Any) -> dict[str, Any]:
        if detector is not None:
            fit_job.fit(
                data,
                model,
                detector,
                array=array,
                columns=columns,
                storage_options=storage_options,
            )
            logger.info("fitted an OutlierDetector on DATA, saved to %s", model)
        return score_jobs.flag(data, model, output, **kwargs)

    summary = ui.run_job(
        ctx,
        cluster,
        "flag",
        fit_then_flag,
        contamination=contamination,
        threshold=threshold,
        array=array,
        columns=columns,
        incremental=incremental,
        overwrite=overwrite,
        on_invalid=on_invalid,
        truth=truth,
        explain=explain,
        storage_options=storage_options,
    )
    ui.emit_summary(summary, as_json)
