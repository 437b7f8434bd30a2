"""Model selection in shared passes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import streammix as sm
from streammix.engine import compute as compute_module

from .test_cli import run


def four_clusters(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[-8, 0, 0], [0, 8, 0], [8, 0, 0], [0, -8, 5]], dtype=float)
    return np.concatenate([rng.normal(c, 0.7, (n, 3)) for c in centers])


def test_bic_picks_four_well_separated_clusters():
    result = sm.select(
        four_clusters(),
        n_components=range(1, 9),
        covariance_types=["full", "diag", "spherical"],
        random_state=0,
    )
    best = result.best_row()
    assert best["n_components"] == 4 and result.best_.n_components == 4
    assert len(result.table) == 24
    assert min(r["bic"] for r in result.table) == best["bic"]


def test_every_chunk_read_serves_all_candidates(monkeypatch):
    labels = []
    real = compute_module.compute

    def counting(*collections, label="compute"):
        labels.append(label)
        return real(*collections, label=label)

    monkeypatch.setattr("streammix.engine.data.compute", counting)
    X = four_clusters()
    import dask.array as da

    result = sm.select(
        da.from_array(X, chunks=(1000, 3)),
        n_components=range(1, 7),
        covariance_types=["full", "diag"],
        random_state=0,
    )
    longest = max(r["n_iter"] for r in result.table)
    # one pass per EM iteration of the longest run, plus one final scoring pass
    assert labels.count("EM") == longest + 1


def test_heldout_and_aic_criteria():
    for criterion in ("heldout", "aic"):
        result = sm.select(
            four_clusters(), n_components=[2, 4, 6], random_state=1, criterion=criterion
        )
        assert result.best_row()["n_components"] >= 4
        if criterion == "heldout":
            assert all(r["heldout"] is not None for r in result.table)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_components=[0, 2]), "positive integers"),
        (dict(covariance_types=["banded"]), "covariance_types"),
        (dict(criterion="mdl"), "criterion"),
    ],
)
def test_bad_selection_settings(kwargs, match):
    with pytest.raises(sm.InvalidParameterError, match=match):
        sm.select(four_clusters(100), **kwargs)


def test_select_command(tmp_path):
    import zarr

    X = four_clusters(500)
    z = zarr.create_array(str(tmp_path / "d.zarr"), shape=X.shape, chunks=(500, 3), dtype="f8")
    z[:] = X
    _, out, _ = run(
        "select",
        tmp_path / "d.zarr",
        "--model",
        tmp_path / "m",
        "--n-components",
        "1-6",
        "--covariance-types",
        "full,diag",
        "--json",
    )
    summary = json.loads(out)
    assert summary["n_components"] == 4 and len(summary["candidates"]) == 12
    assert sm.load(tmp_path / "m").n_components == 4
