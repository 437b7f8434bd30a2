"""Pipeline files: validation, atomic publishing, and the shipped pipelines end to end."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import zarr

import streammix as sm
from streammix.cluster import ClusterOptions
from streammix.datasets import generate
from streammix.errors import PipelineError
from streammix.io.modelfile import publish
from streammix.pipeline import load_pipeline, run_pipeline

from .test_cli import assert_one_line_error, run

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text, name="p.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[[step]]\njob = "scor"\n', "'job' must be one of"),
        (
            '[[step]]\njob = "score"\ndata = "d"\nmodel = "m"\noutput = "o"\nincrementl = true\n',
            "unknown key 'incrementl' \\(did you mean 'incremental'\\?\\)",
        ),
        ('[[step]]\njob = "score"\ndata = "d"\nmodel = "m"\n', "missing required key 'output'"),
        (
            '[[step]]\njob = "fit"\ndata = "d"\nmodel = "m"\nn_components = "4"\n',
            "n_components must be an integer",
        ),
        (
            '[[step]]\njob = "fit"\ndata = "d"\nmodel = "m"\nn_components = 0\n',
            "n_components must be in \\[1",
        ),
        (
            '[[step]]\njob = "flag"\ndata = "${STREAMMIX_NOT_SET_ANYWHERE}"\nmodel = "m"\n'
            'output = "o"\n',
            "STREAMMIX_NOT_SET_ANYWHERE.*not set",
        ),
        ('[pipeline]\nname = "x"\n', "no steps"),
        ("[clusters]\n", "unknown table"),
        ("[[step]\n", "not valid TOML"),
    ],
)
def test_invalid_pipelines_are_refused_with_the_step(tmp_path, text, match):
    with pytest.raises(PipelineError, match=match):
        load_pipeline(write(tmp_path, text))


def test_paths_are_relative_to_the_file_and_env_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELS", "/srv/models")
    p = load_pipeline(
        write(
            tmp_path,
            '[[step]]\njob = "info"\nmodel = "${MODELS}/current"\n'
            '[[step]]\njob = "info"\nmodel = "sub/m"\n',
        )
    )
    assert p.steps[0].options["model"] == "/srv/models/current"
    assert p.steps[1].options["model"] == str(tmp_path / "sub" / "m")


def test_shipped_pipelines_validate():
    for name in ("demo.toml", "nightly-scoring.toml", "weekly-refit.toml"):
        env = {"STREAMMIX_DATA": "d", "STREAMMIX_MODELS": "m", "STREAMMIX_OUT": "o"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            assert load_pipeline(REPO / "pipelines" / name).steps
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def test_publish_switches_atomically_and_keeps_versions(tmp_path):
    models = tmp_path / "models"
    for i in range(4):
        sm.GaussianMixture.from_parameters([1.0], [[float(i)]], [[[1.0]]]).save(models / "staging")
        summary = publish(str(models / "staging"), str(models / "current"), keep=2, version=f"v{i}")
        assert summary["version"] == f"v{i}"
        assert sm.load(models / "current").means_[0, 0] == float(i)
        assert not (models / "staging").exists()
    assert sorted(p.name for p in (models / "versions").iterdir()) == ["v2", "v3"]
    pointer = json.loads((models / "current").read_text())
    assert pointer == {"streammix_pointer": 1, "version": "versions/v3"}


def test_readers_never_see_half_a_model_while_publishing(tmp_path):
    models = tmp_path / "models"
    sm.GaussianMixture.from_parameters([1.0], [[0.0]], [[[1.0]]]).save(models / "staging")
    publish(str(models / "staging"), str(models / "current"), version="v000")
    stop, errors = threading.Event(), []

    def reader():
        while not stop.is_set():
            try:
                m = sm.load(models / "current")
                assert m.means_[0, 0] == m.covariances_[0, 0, 0] - 1.0
            except Exception as err:
                errors.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 40):
            sm.GaussianMixture.from_parameters([1.0], [[float(i)]], [[[i + 1.0]]]).save(
                models / "staging"
            )
            publish(str(models / "staging"), str(models / "current"), version=f"v{i:03d}", keep=3)
    finally:
        stop.set()
        thread.join()
    assert errors == []


def test_weekly_refit_then_nightly_scoring(tmp_path, monkeypatch):
    data = tmp_path / "events.zarr"
    generate(data, 20_000, n_features=3, n_components=2, outlier_fraction=0.01, chunk_rows=5_000)
    monkeypatch.setenv("STREAMMIX_DATA", str(data))
    monkeypatch.setenv("STREAMMIX_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("STREAMMIX_OUT", str(tmp_path / "out"))
    local = ClusterOptions(n_workers=1, threads_per_worker=2)
    weekly = load_pipeline(REPO / "pipelines" / "weekly-refit.toml")
    nightly = load_pipeline(REPO / "pipelines" / "nightly-scoring.toml")
    results = run_pipeline(weekly, local)
    assert results[1]["job"] == "publish" and (tmp_path / "models" / "current").is_file()
    first = run_pipeline(nightly, local)
    assert first[0]["chunks_written"] == 4 and first[1]["threshold"]["method"] == "model"
    X = zarr.open_group(str(data), mode="r+")["X"]
    X.resize((25_000, 3))
    X[20_000:] = X[:5_000]
    second = run_pipeline(nightly, local)
    assert second[0]["chunks_written"] == 1 and second[0]["rows"] == 25_000
    scores = zarr.open_group(str(tmp_path / "out" / "scores.zarr"), mode="r")
    assert scores.attrs["complete"] is True
    assert (scores["log_likelihood"][20_000:] == scores["log_likelihood"][:5_000]).all()


def test_run_command_checks_and_reports_bad_files(tmp_path):
    good = write(tmp_path, '[[step]]\njob = "info"\nmodel = "m"\n')
    _, out, _ = run("run", good, "--check")
    assert "info" in out
    bad = write(tmp_path, '[[step]]\njob = "info"\nmodl = "m"\n', "bad.toml")
    code, _, err = run("run", bad, check=False)
    assert_one_line_error(code, err, 2, "unknown key 'modl'")
