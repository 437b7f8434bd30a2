"""The installed ``streammix`` executable on the embedded local cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import streammix as sm

from .test_jobs import tree_digest

EXE = str(Path(sys.executable).parent / "streammix")


def run(*args, cwd=None, env=None, check=True):
    """Run the CLI; returns (exit code, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(code, stderr, expected_code, match):
    assert code == expected_code, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert match in lines[0], lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def test_generate_fit_score_flag_info_on_the_embedded_cluster(workdir):
    data, model = workdir / "data.zarr", workdir / "model"
    run(
        "generate",
        data,
        "--n-samples",
        200_000,
        "--n-features",
        6,
        "--n-components",
        4,
        "--outlier-fraction",
        0.01,
        "--chunk-rows",
        20_000,
        "--seed",
        0,
    )
    _, _, err = run("fit", data, "--model", model, "--n-components", 4, "--seed", 0)
    iteration_lines = [ln for ln in err.splitlines() if "mean log-likelihood" in ln]
    assert iteration_lines and "iteration    1" in iteration_lines[0]
    assert "change" in iteration_lines[-1] and iteration_lines[-1].endswith(" s")

    _, out, _ = run("score", data, "--model", model, "--output", workdir / "scores.zarr", "--json")
    summary = json.loads(out)
    assert summary["complete"] and summary["rows"] == 200_000
    X = zarr.open_group(str(data), mode="r")["X"][:]
    scores = zarr.open_group(str(workdir / "scores.zarr"), mode="r")
    np.testing.assert_array_equal(scores["log_likelihood"][:], sm.load(model).score_samples(X))
    assert scores.attrs["complete"] is True

    _, out, _ = run(
        "flag",
        data,
        "--model",
        model,
        "--output",
        workdir / "flags.zarr",
        "--contamination",
        0.01,
        "--truth",
        data / "is_outlier",
        "--json",
    )
    flagged = json.loads(out)
    assert 0.005 <= flagged["flagged"] / 200_000 <= 0.02
    assert flagged["precision"] >= 0.7
    attrs = zarr.open_group(str(workdir / "flags.zarr"), mode="r").attrs
    assert attrs["threshold"]["method"] == "contamination"

    _, out, _ = run("info", model, "--json")
    info = json.loads(out)
    assert info["n_components"] == 4 and info["n_features"] == 6 and info["converged"]

    before = tree_digest(workdir / "scores.zarr")
    run("score", data, "--model", model, "--output", workdir / "scores.zarr")
    assert tree_digest(workdir / "scores.zarr") == before

    X_arr = zarr.open_group(str(data), mode="r+")["X"]
    X_arr.resize((230_000, 6))
    X_arr[200_000:] = np.random.default_rng(9).normal(size=(30_000, 6))
    code, _, err = run(
        "score", data, "--model", model, "--output", workdir / "scores.zarr", check=False
    )
    assert_one_line_error(code, err, 1, "--incremental")
    run("score", data, "--model", model, "--output", workdir / "scores.zarr", "--incremental")
    run("score", data, "--model", model, "--output", workdir / "rescore.zarr")
    inc = zarr.open_group(str(workdir / "scores.zarr"), mode="r")
    full = zarr.open_group(str(workdir / "rescore.zarr"), mode="r")
    for name in ("log_likelihood", "component"):
        np.testing.assert_array_equal(inc[name][:], full[name][:])


def test_fit_on_a_missing_path_is_one_line_and_exit_3(workdir):
    code, out, err = run(
        "fit", workdir / "nowhere.zarr", "--model", workdir / "m", "--n-components", 2, check=False
    )
    assert_one_line_error(code, err, 3, "No Zarr array or group")
    assert not (workdir / "m").exists() and out == ""


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (["fit", "x.zarr", "--model", "m", "--n-components", 0], 2, "n-components"),
        (["fit", "x.zarr", "--model", "m"], 2, "Missing option '--n-components'"),
        (
            ["flag", "x.zarr", "--model", "m", "--output", "o", "--contamination", 1.5],
            2,
            "not in (0, 0.5]",
        ),
        (["info", "nowhere"], 3, "No model at"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_usage_and_input_errors_are_one_line(workdir, args, code, match):
    rc, _, err = run(*args, cwd=workdir, check=False)
    assert_one_line_error(rc, err, code, match)


def test_every_command_has_help_with_an_example():
    _, out, _ = run("--help")
    commands = [ln.split()[0] for ln in out.split("Commands:")[1].splitlines() if ln.strip()]
    assert {"generate", "fit", "score", "flag", "info", "plot", "run"} <= set(commands)
    for command in commands:
        _, text, _ = run(command, "--help")
        assert "Example:" in text, command


def test_logs_are_json_on_stderr_and_quiet_silences_them(workdir):
    data = workdir / "small.zarr"
    _, out, _ = run(
        "generate", data, "--n-samples", 5000, "--chunk-rows", 1000, "--n-features", 2, "--json"
    )
    assert json.loads(out)["n_samples"] == 5000
    _, out, err = run(
        "--log-format",
        "json",
        "fit",
        data,
        "--model",
        workdir / "small-model",
        "--n-components",
        2,
        "--max-iter",
        3,
        "--tol",
        0,
        "--json",
    )
    assert json.loads(out)["n_iter"] == 3
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert len(records) >= 4 and all({"time", "level", "message"} <= set(r) for r in records)
    assert records[-1]["level"] == "warning" and "ConvergenceWarning" in records[-1]["message"]
    _, _, err = run("-q", "fit", data, "--model", workdir / "small-model-2", "--n-components", 2)
    assert err == ""


def test_options_from_a_config_file_and_the_environment(workdir):
    data = workdir / "cfg.zarr"
    run("generate", data, "--n-samples", 4000, "--chunk-rows", 1000, "--n-features", 2)
    cfg = workdir / "streammix.toml"
    cfg.write_text(
        '[cluster]\nn-workers = 1\n\n[fit]\nn_components = 3\ncovariance_type = "diag"\n'
    )
    run("--config", cfg, "fit", data, "--model", workdir / "cfg-model")
    model = sm.load(workdir / "cfg-model")
    assert model.covariance_type == "diag" and model.weights_.shape == (3,)
    run(
        "fit",
        data,
        "--model",
        workdir / "env-model",
        env={"STREAMMIX_FIT_N_COMPONENTS": "2", "STREAMMIX_FIT_COVARIANCE_TYPE": "spherical"},
    )
    model = sm.load(workdir / "env-model")
    assert model.covariance_type == "spherical" and model.weights_.shape == (2,)
    cfg.write_text("[fti]\nn_components = 3\n")
    code, _, err = run("--config", cfg, "info", workdir / "cfg-model", check=False)
    assert_one_line_error(code, err, 2, "unknown table(s)")


def test_plot_writes_an_image(workdir):
    data = workdir / "plot.zarr"
    run(
        "generate",
        data,
        "--n-samples",
        6000,
        "--chunk-rows",
        2000,
        "--n-features",
        3,
        "--outlier-fraction",
        0.02,
    )
    run(
        "fit", data, "--model", workdir / "plot-model", "--n-components", 4, "--contamination", 0.02
    )
    run("plot", workdir / "plot-model", "--data", data, "--output", workdir / "fig.png")
    assert (workdir / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
