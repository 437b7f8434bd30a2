"""A one-page picture of a fitted mixture (needs the ``plot`` extra: matplotlib).

Layer: edges. Panels: the fit's log-likelihood per iteration; a 2-D projection
on the mixture's two principal axes with each component's 2-sigma ellipse (and
a sample of data rows); the histogram of the sample's log-likelihoods with the
outlier threshold, when the model carries one.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from .errors import InvalidParameterError, StreammixError
from .io.inputs import as_chunked
from .io.location import Location, as_location

SAMPLE_ROWS = 5_000


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise StreammixError(
            "Plotting needs matplotlib: install streammix[plot] (pip install 'streammix[plot]')."
        ) from None
    return plt


def principal_axes(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the two leading eigenvectors (columns) of the mixture's covariance."""
    params = model.params_
    w, mu, cov = params.weights, params.means, params.dense_covariances()
    mean = w @ mu
    total = np.einsum("k,kij->ij", w, cov) + np.einsum("k,ki,kj->ij", w, mu - mean, mu - mean)
    vals, vecs = np.linalg.eigh(total)
    axes = vecs[:, ::-1][:, : min(2, len(vals))]
    if axes.shape[1] == 1:
        axes = np.hstack([axes, np.zeros_like(axes)])
    return mean, axes


def _sample_rows(data: Any, array: str, rng: np.random.Generator) -> np.ndarray:
    ds = as_chunked(data, array=array)
    n = min(SAMPLE_ROWS, ds.n_rows)
    rows = np.sort(rng.choice(ds.n_rows, size=n, replace=False))
    sample = ds.take(rows)
    return sample[np.all(np.isfinite(sample), axis=1)]


def _stream_panel(ax: Any, history: dict[str, list[Any]]) -> None:
    """A followed stream: each batch's mean log-likelihood (before it was learned) and
    the share of its rows flagged, on a second axis."""
    batches = np.asarray(history["batch"])
    ll = np.asarray([np.nan if v is None else v for v in history["log_likelihood"]], float)
    ax.plot(batches, ll, color="C0", lw=1)
    ax.set_xlabel("batch")
    ax.set_ylabel("mean log-likelihood", color="C0")
    share = ax.twinx()
    share.plot(batches, 100 * np.asarray(history["flagged_share"], float), color="C3", lw=1)
    share.set_ylabel("flagged (%)", color="C3")
    ax.set_title("stream")


def plot_model(
    model: Any, output: str | os.PathLike[str] | Location, data: Any = None, array: str = "X"
) -> str:
    """Draw ``model`` (and a sample of ``data``) into the image file ``output`` (a path
    or URL; its suffix picks the format: png, svg, pdf)."""
    target = as_location(output)
    fmt = target.name.rsplit(".", 1)[-1].lower() if "." in target.name else ""
    if fmt not in ("png", "svg", "pdf", "jpg", "jpeg"):
        raise InvalidParameterError(f"'{target}': name the image with a .png, .svg or .pdf suffix.")
    plt = _pyplot()
    from matplotlib.patches import Ellipse

    rng = np.random.default_rng(0)
    sample = None if data is None else _sample_rows(data, array, rng)
    panels = 3 if sample is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))

    history = getattr(model, "stream_history_", None) or {}
    if history.get("batch"):
        _stream_panel(axes[0], history)
    else:
        bounds = list(getattr(model, "lower_bounds_", []) or [])
        ax = axes[0]
        if bounds:
            ax.plot(np.arange(1, len(bounds) + 1), bounds, marker="o", ms=3)
        ax.set_xlabel("iteration" if type(model).__name__ == "GaussianMixture" else "epoch")
        ax.set_ylabel("mean log-likelihood")
        ax.set_title("fit")

    mean, pcs = principal_axes(model)
    params = model.params_
    ax = axes[1]
    if sample is not None:
        proj = (sample - mean) @ pcs
        ax.scatter(proj[:, 0], proj[:, 1], s=2, alpha=0.3, color="0.4")
    dense = params.dense_covariances()
    for k in range(params.n_components):
        c = (params.means[k] - mean) @ pcs
        cov2 = pcs.T @ dense[k] @ pcs
        vals, vecs = np.linalg.eigh(cov2)
        vals = np.maximum(vals, 0.0)
        angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
        ax.add_patch(
            Ellipse(
                tuple(c),
                4 * np.sqrt(vals[1]),
                4 * np.sqrt(vals[0]),
                angle=angle,
                fill=False,
                lw=1.5,
                color=f"C{k % 10}",
            )
        )
        ax.plot(*c, "x", color=f"C{k % 10}")
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.set_title(f"{params.n_components} components ({model.covariance_type}), 2-sigma")
    ax.autoscale_view()

    if sample is not None:
        ax = axes[2]
        ll = np.asarray(model.score_samples(sample))
        ax.hist(ll, bins=60, color="0.5")
        threshold = getattr(model, "threshold_", None)
        if threshold is not None:
            ax.axvline(threshold, color="C3", lw=2, label=f"threshold {threshold:.2f}")
            ax.legend()
        ax.set_xlabel("log-likelihood")
        ax.set_ylabel("rows (sample)")
        ax.set_title("scores")
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=110, format=fmt)
    plt.close(fig)
    target.write_bytes(image.getvalue())
    return str(target)
