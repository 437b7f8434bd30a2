"""Findings of a red team of the command line, each replayed the way it was found:
damaged model metadata, non-strict JSON, empty pipeline variables, Ctrl-C and SIGTERM,
overlapping runs, destinations checked late, exit codes, symbolic links in model
directories, and in-memory inputs taken for one another."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.cli.commands import COMMAND_JOBS, _options
from streammix.cli.ui import JsonFormatter, to_json
from streammix.datasets import generate, true_mixture
from streammix.errors import OutputConflictError
from streammix.io.lease import lease_location
from streammix.io.location import as_location
from streammix.io.modelfile import CHECKSUM_KEY, META_FILE
from streammix.io.modelmeta import check_model_files
from streammix.jobs import fit_job, score_jobs
from streammix.jobs.kinds import NUMBER, WORD_OR_NUMBER

from .conftest import blobs, write_zarr
from .test_cli import EXE, assert_one_line_error, run
from .test_jobs import tree_digest


def strict_json(text: str):
    """``json.loads`` that refuses ``NaN`` and ``Infinity``, which JSON does not have."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small dataset and a calibrated model fitted on it by the CLI."""
    root = tmp_path_factory.mktemp("red")
    write_zarr(root / "d.zarr", blobs(3000, d=3, k=2, seed=4), 500)
    run(
        "fit",
        root / "d.zarr",
        "--model",
        root / "model",
        "--n-components",
        2,
        "--contamination",
        0.02,
        "--n-workers",
        1,
    )
    return root


def edited_copy(root: Path, name: str, edit, *, keep_checksum: bool = False) -> Path:
    """A copy of the model with ``model.json`` edited as text (by ``edit(text)``), its
    metadata checksum dropped (as in a model written before checksums) unless kept."""
    dest = root / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(root / "model", dest)
    meta = json.loads((dest / META_FILE).read_text())
    if not keep_checksum:
        del meta[CHECKSUM_KEY]
    text = edit(json.dumps(meta, indent=1, sort_keys=True))
    (dest / META_FILE).write_text(text)
    return dest


THRESHOLD = '"threshold": '


def set_threshold(literal: str):
    def edit(text: str) -> str:
        start = text.index(THRESHOLD) + len(THRESHOLD)
        end = text.index("\n", start)
        return text[:start] + literal + text[end:]

    return edit


# ------------------------------------------------- 1. model metadata checked
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "true", '"-10"', "null"])
@pytest.mark.parametrize("keep_checksum", [False, True], ids=["legacy", "checksummed"])
def test_an_edited_threshold_is_refused_by_flag_and_info(small, literal, keep_checksum):
    model = edited_copy(
        small, f"thr-{uuid.uuid4().hex[:6]}", set_threshold(literal), keep_checksum=keep_checksum
    )
    out = small / f"flags-{model.name}.zarr"
    code, stdout, err = run(
        "flag", small / "d.zarr", "--model", model, "--output", out, "--json", check=False
    )
    assert_one_line_error(code, err, 3, "model.json")
    assert stdout == "" and not out.exists()
    code, stdout, err = run("info", model, "--json", check=False)
    assert_one_line_error(code, err, 3, "model.json")
    assert stdout == ""


def test_a_history_that_is_not_one_is_refused_with_exit_3(small):
    model = edited_copy(small, "fit-x", lambda t: json.dumps({**json.loads(t), "fit": "x"}))
    code, _, err = run("info", model, check=False)
    assert_one_line_error(code, err, 3, "'fit' must be an object; got 'x'")
    assert "AttributeError" not in err


def test_a_valid_looking_edit_is_caught_by_the_metadata_checksum(small):
    model = edited_copy(small, "thr-moved", set_threshold("-100.0"), keep_checksum=True)
    code, _, err = run("info", model, check=False)
    assert_one_line_error(code, err, 3, "model.json does not match its checksum")
    # the same edit in a manifest without a checksum is a valid model (of a legacy writer)
    legacy = edited_copy(small, "thr-moved-legacy", set_threshold("-100.0"))
    assert sm.load(legacy).threshold_ == -100.0


def test_models_written_before_metadata_checksums_still_load(small):
    legacy = edited_copy(small, "legacy", lambda t: t)
    assert CHECKSUM_KEY not in json.loads((legacy / META_FILE).read_text())
    a, b = sm.load(small / "model"), sm.load(legacy)
    np.testing.assert_array_equal(a.means_, b.means_)
    assert a.threshold_ == b.threshold_


def _gm_files():
    gm = sm.GaussianMixture(2, random_state=0).fit(blobs(600, d=2, k=2, seed=1))
    gm.calibrate(blobs(600, d=2, k=2, seed=1), 0.05)
    return gm.to_files()


def _online_files():
    om = sm.OnlineGaussianMixture(2, max_epochs=2, random_state=0)
    return om.fit(blobs(2000, d=2, k=2, seed=1)).to_files()


def _kde_files():
    return sm.KernelDensity().fit(blobs(200, d=2, k=2, seed=1)).to_files()


@pytest.mark.parametrize(
    ("make", "edit", "match"),
    [
        (_gm_files, lambda m, a: m.update(kind="Pickle"), "'kind' must be one of"),
        (_gm_files, lambda m, a: m.update(extra=1), "unknown field 'extra'"),
        (
            _gm_files,
            lambda m, a: (m.update(n_components=3), m["hyperparameters"].update(n_components=3)),
            "'weights' has shape",
        ),
        (_gm_files, lambda m, a: m.update(n_features=True), "'n_features' must be an integer"),
        (_gm_files, lambda m, a: m.update(covariance_type="ful"), "'covariance_type' must be"),
        (
            _gm_files,
            lambda m, a: m["fit"].update(n_iter=-1),
            "'fit.n_iter' must be an integer >= 0",
        ),
        (_gm_files, lambda m, a: m["fit"].update(lower_bounds=["x"]), "lower_bounds"),
        (_gm_files, lambda m, a: m["hyperparameters"].update(tol={"a": 1}), "tol"),
        (_gm_files, lambda m, a: m["hyperparameters"].update(n_components=5), "n_components"),
        (
            _gm_files,
            lambda m, a: m["calibration"].update(contamination=0.9),
            "calibration.contamination",
        ),
        (_gm_files, lambda m, a: m["calibration"].update(threshold=float("inf")), "threshold"),
        (_gm_files, lambda m, a: a.update(extra=np.zeros(2)), "unknown array 'extra'"),
        (_gm_files, lambda m, a: a.update(weights=np.array([1, 0])), "floating-point"),
        (_gm_files, lambda m, a: a.pop("means"), "'means' is missing"),
        (_online_files, lambda m, a: m.pop("online"), "has no field 'online'"),
        (_online_files, lambda m, a: m["online"].update(n_rows=-5), "online.n_rows"),
        (_online_files, lambda m, a: m["online"].update(stats_n=float("nan")), "stats_n"),
        (_online_files, lambda m, a: a.update(state_frame_shift=np.zeros(5)), "frame_shift"),
        (_kde_files, lambda m, a: m.update(factor=-1.0), "'factor' must be a finite number"),
        (_kde_files, lambda m, a: m["hyperparameters"].update(bandwidth="sott"), "bandwidth"),
        (_kde_files, lambda m, a: m.update(n_samples=5), "'reference' has shape"),
        (
            _kde_files,
            lambda m, a: (m["reference"].update(stored=False, path=None), a.pop("reference")),
            "reference.path",
        ),
    ],
)
def test_every_field_of_the_metadata_is_checked(make, edit, match):
    meta, arrays = make()
    check_model_files(meta, arrays)  # as written: valid
    meta = json.loads(json.dumps(meta, default=float))
    edit(meta, arrays)
    with pytest.raises(sm.InvalidInputError, match=match):
        check_model_files(meta, arrays)


def test_nan_in_a_manifest_is_not_json(tmp_path):
    sm.GaussianMixture.from_parameters([1.0], [[0.0]], [[[1.0]]]).save(tmp_path / "m")
    text = (tmp_path / "m" / META_FILE).read_text()
    assert '"lower_bound": null' in text  # a model from parameters has no bound
    (tmp_path / "m" / META_FILE).write_text(
        text.replace('"lower_bound": null', '"lower_bound": NaN')
    )
    with pytest.raises(sm.ModelFileError, match="unreadable.*NaN is not a JSON value"):
        sm.load(tmp_path / "m")


# ------------------------------------------------------ 2. strict JSON output
def test_json_summaries_and_logs_never_hold_nan(small, tmp_path):
    sm.GaussianMixture.from_parameters([1.0], [[0.0, 0.0]], [np.eye(2)]).save(tmp_path / "m")
    _, out, _ = run("info", tmp_path / "m", "--json")
    assert strict_json(out)["lower_bound"] is None
    assert to_json({"a": float("nan"), "b": [np.float32("inf"), np.int64(3)]}) == (
        '{"a": null, "b": [null, 3]}'
    )
    record = logging.LogRecord("streammix", logging.INFO, __file__, 1, "m", None, None)
    record.fields = {"bound": float("-inf")}
    assert strict_json(JsonFormatter().format(record))["bound"] is None


# ------------------------------------------------- 3. empty pipeline variables
def test_an_empty_variable_in_a_pipeline_is_refused_and_nothing_is_written(small, tmp_path):
    name = f"streammix-red-team-{uuid.uuid4().hex}.zarr"
    pipeline = tmp_path / "nightly.toml"
    pipeline.write_text(
        '[[step]]\njob = "score"\ndata = "${STREAMMIX_DATA}"\nmodel = "${STREAMMIX_MODELS}"\n'
        f'output = "${{STREAMMIX_OUT}}/{name}"\n'
    )
    env = {"STREAMMIX_DATA": str(small / "d.zarr"), "STREAMMIX_MODELS": str(small / "model")}
    try:
        code, _, err = run("run", pipeline, env={**env, "STREAMMIX_OUT": ""}, check=False)
        assert_one_line_error(code, err, 2, "${STREAMMIX_OUT} is empty")
        assert not Path("/", name).exists()
    finally:
        shutil.rmtree(Path("/", name), ignore_errors=True)


ROOT_DESTINATIONS = {
    "score --output": ["score", "DATA", "--model", "MODEL", "--output", "/"],
    "flag --output": ["flag", "DATA", "--model", "MODEL", "--output", "/"],
    "fit --model": ["fit", "DATA", "--model", "/", "--n-components", "2"],
    "fit --checkpoint": [
        "fit",
        "DATA",
        "--model",
        "M2",
        "--n-components",
        "2",
        "--checkpoint",
        "/",
    ],
    "select --model": ["select", "DATA", "--model", "/"],
    "sample --output": ["sample", "MODEL", "--output", "/", "--n-samples", "10"],
    "impute --output": ["impute", "DATA", "--model", "MODEL", "--output", "/"],
    "kde --output": ["kde", "DATA", "--output", "/"],
    "generate OUT": ["generate", "/", "--n-samples", "10"],
    "plot --output": ["plot", "MODEL", "--output", "/"],
    "publish --target": ["publish", "MODEL", "--target", "/"],
    "publish --versions": ["publish", "MODEL", "--target", "T", "--versions", "/"],
}


@pytest.mark.parametrize("case", list(ROOT_DESTINATIONS))
def test_no_job_writes_a_filesystem_root(small, tmp_path, case):
    shutil.copytree(small / "model", tmp_path / "model")  # publish would move it
    subs = {
        "DATA": str(small / "d.zarr"),
        "MODEL": str(tmp_path / "model"),
        "M2": str(tmp_path / "m2"),
        "T": str(tmp_path / "current"),
    }
    argv = [subs.get(a, a) for a in ROOT_DESTINATIONS[case]]
    code, _, err = run(*argv, check=False)
    assert_one_line_error(code, err, 2, "filesystem root")
    assert (tmp_path / "model" / META_FILE).exists()  # publish did not move it


# --------------------------------------- 4. Ctrl-C and SIGTERM, 5. overlapping runs
@pytest.fixture(scope="module")
def long_job(tmp_path_factory):
    """Data and a model that take a few seconds to score on one worker, and the output
    of an uninterrupted run to compare with."""
    root = tmp_path_factory.mktemp("long")
    generate(root / "d.zarr", 1_200_000, n_features=10, n_components=8, chunk_rows=2_000, seed=3)
    truth = true_mixture(10, 8, 3)
    sm.GaussianMixture.from_parameters(truth.weights, truth.means, truth.covariances).save(
        root / "model"
    )
    reference = root / "reference.zarr"
    run(*score_argv(root, reference))
    return root, tree_digest(reference)


def score_argv(root: Path, output: Path) -> list:
    return [
        "score",
        root / "d.zarr",
        "--model",
        root / "model",
        "--output",
        output,
        "--n-workers",
        1,
        "--threads-per-worker",
        1,
    ]


def start(argv: list) -> subprocess.Popen:
    """The CLI as a terminal starts it: in a process group of its own, the foreground job."""
    return subprocess.Popen(
        [EXE, *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def committed(marks: Path) -> int:
    """Chunks whose done-marker exists (a marker being written is a ``.partial`` file
    beside them until it is renamed)."""
    return sum(1 for m in marks.iterdir() if m.name.isdigit()) if marks.is_dir() else 0


def settled(marks: Path, quiet: float = 1.0) -> int:
    """``committed(marks)`` once it has not changed for ``quiet`` seconds."""
    count, since = committed(marks), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = committed(marks)
        if now != count:
            count, since = now, time.monotonic()
    return count


def wait_for_chunks(proc: subprocess.Popen, marks: Path, at_least: int) -> None:
    deadline = time.monotonic() + 120
    while committed(marks) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no chunk written in time"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("sig", "group", "code"),
    [
        (signal.SIGINT, True, 130),  # Ctrl-C: the terminal signals the whole process group
        (signal.SIGTERM, False, 143),  # Kubernetes: the container's main process only
        (signal.SIGKILL, False, -signal.SIGKILL),
    ],
    ids=["ctrl-c", "sigterm", "sigkill"],
)
def test_a_stopped_run_keeps_its_chunks_and_a_rerun_finishes_them(long_job, sig, group, code):
    root, reference = long_job
    out = root / f"stopped-{sig.name}.zarr"
    proc = start(score_argv(root, out))
    wait_for_chunks(proc, out / "_done" / "log_likelihood" / "c", 5)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    if sig != signal.SIGKILL:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "running the job again finishes it" in lines[0]
    group_ = zarr.open_group(str(out), mode="r")
    # a worker of the killed job may still be finishing its chunk: count once it is still
    done = settled(out / "_done" / "log_likelihood" / "c")
    assert group_.attrs["complete"] is False and 5 <= done < 600
    _, stdout, _ = run(*score_argv(root, out), "--json")
    assert json.loads(stdout)["chunks_written"] == 600 - done
    assert tree_digest(out) == reference
    assert not lease_location(as_location(out)).exists()


def test_a_fit_stopped_by_sigterm_resumes_from_its_checkpoint(tmp_path):
    data = tmp_path / "d.zarr"
    generate(data, 150_000, n_features=6, n_components=4, chunk_rows=3_000, seed=5)
    common = ["--n-components", 4, "--tol", 0, "--max-iter", 12, "--n-workers", 1]
    run("fit", data, "--model", tmp_path / "straight", *common)
    ckpt = tmp_path / "ckpt"
    proc = start(["fit", data, "--model", tmp_path / "m", "--checkpoint", ckpt, *common])
    deadline = time.monotonic() + 120
    while not (ckpt / META_FILE).exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert_one_line_error(proc.returncode, err, 143, "terminated (SIGTERM)")
    assert (ckpt / META_FILE).exists()
    assert not (tmp_path / "m").exists()
    run("fit", data, "--model", tmp_path / "m", "--checkpoint", ckpt, "--resume", *common)
    a, b = sm.load(tmp_path / "straight"), sm.load(tmp_path / "m")
    np.testing.assert_array_equal(a.means_, b.means_)
    assert a.lower_bounds_ == b.lower_bounds_


def test_two_runs_started_together_on_one_output_both_succeed(long_job):
    root, reference = long_job
    out = root / "together.zarr"
    procs = [start([*score_argv(root, out), "--json"]) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "not a streammix output" not in err
    written = sorted(json.loads(stdout)["chunks_written"] for stdout, _ in results)
    assert written == [0, 600]  # the second waited for the first, then had nothing to do
    assert any("is writing" in err and "waiting for it" in err for _, err in results)
    assert tree_digest(out) == reference


# ------------------------------------- 6. destinations before any data is read
DESTINATIONS = {
    # the data do not exist: a destination error proves it was checked first
    "fit --model a file": ["fit", "NODATA", "--model", "FILE", "--n-components", "2"],
    "fit --model below a file": ["fit", "NODATA", "--model", "FILE/sub", "--n-components", "2"],
    "fit --checkpoint a file": [
        "fit",
        "NODATA",
        "--model",
        "NEW",
        "--n-components",
        "2",
        "--checkpoint",
        "FILE",
    ],
    "fit --model a foreign directory": ["fit", "NODATA", "--model", "DIR", "--n-components", "2"],
    "select --model a file": ["select", "NODATA", "--model", "FILE"],
    "score --output a file": ["score", "NODATA", "--model", "MODEL", "--output", "FILE"],
    "score --output a foreign directory": [
        "score",
        "NODATA",
        "--model",
        "MODEL",
        "--output",
        "DIR",
    ],
    "flag --output a file": ["flag", "NODATA", "--model", "MODEL", "--output", "FILE"],
    "flag detector beside a file": ["flag", "NODATA", "--output", "DETECTOR"],
    "impute --output a file": ["impute", "NODATA", "--model", "MODEL", "--output", "FILE"],
    "kde --output a file": ["kde", "NODATA", "--output", "FILE"],
    "sample --output a file": ["sample", "NOMODEL", "--output", "FILE", "--n-samples", "9"],
    "generate into a file": ["generate", "FILE", "--n-samples", "10", "--overwrite"],
    "plot --output a directory": ["plot", "NOMODEL", "--output", "DIR"],
}


@pytest.mark.parametrize("case", list(DESTINATIONS))
def test_destinations_are_checked_before_any_data_is_read(small, tmp_path, case):
    (tmp_path / "afile").write_text("not a model")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "notes.txt").write_text("mine")
    (tmp_path / "flags.zarr.detector").write_text("in the way")
    subs = {
        "NODATA": str(tmp_path / "nowhere.zarr"),
        "NOMODEL": str(tmp_path / "no-model"),
        "MODEL": str(small / "model"),
        "FILE": str(tmp_path / "afile"),
        "FILE/sub": str(tmp_path / "afile" / "sub"),
        "DIR": str(tmp_path / "adir"),
        "NEW": str(tmp_path / "new-model"),
        "DETECTOR": str(tmp_path / "flags.zarr"),
    }
    argv = [subs.get(a, a) for a in DESTINATIONS[case]]
    code, stdout, err = run(*argv, check=False)
    assert_one_line_error(code, err, 3, "")
    assert stdout == ""
    assert "nowhere.zarr" not in err and "no-model" not in err, err
    assert (tmp_path / "afile").read_text() == "not a model"
    assert [p.name for p in (tmp_path / "adir").iterdir()] == ["notes.txt"]


# -------------------------------------------------------------- 7. exit codes
def test_reg_covar_inf_and_an_all_nan_input_exit_2_and_3(small, tmp_path):
    code, _, err = run(
        "fit", small / "d.zarr", "--model", tmp_path / "m", "--reg-covar", "inf", check=False
    )
    assert_one_line_error(code, err, 2, "'inf' is not a finite number")
    nan = np.full((1000, 3), np.nan)
    write_zarr(tmp_path / "nan.zarr", nan, 500)
    code, _, err = run(
        "flag",
        tmp_path / "nan.zarr",
        "--model",
        small / "model",
        "--output",
        tmp_path / "f.zarr",
        "--on-invalid",
        "skip",
        "--contamination",
        0.01,
        "--n-workers",
        1,
        check=False,
    )
    assert_one_line_error(code, err, 3, "No row of the input could be scored")
    assert not (tmp_path / "f.zarr").exists()


NUMBER_OPTIONS = [
    (command, option.name)
    for command, job in COMMAND_JOBS.items()
    for option in _options(job)
    if option.kind in (NUMBER, WORD_OR_NUMBER)
]


@pytest.mark.parametrize(("command", "option"), NUMBER_OPTIONS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_no_option_takes_a_non_finite_number(command, option, value, capsys):
    from streammix.cli import cli

    args = [command, "x", "--" + option.replace("_", "-"), value]
    with pytest.raises(SystemExit) as exit_:
        cli.main(args, prog_name="streammix")
    err = capsys.readouterr().err
    assert_one_line_error(exit_.value.code, err, 2, f"--{option.replace('_', '-')}")


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "x", "--model", "m", "--n-components", 2, "--random-state", -1],
        ["flag", "x", "--output", "o", "--random-state", -1],
        ["select", "x", "--model", "m", "--seed", -1],
        ["generate", "x", "--seed", -1],
        ["sample", "m", "--output", "o", "--n-samples", 5, "--seed", -1],
    ],
    ids=lambda a: f"{a[0]} {a[-2]}",
)
def test_negative_seeds_are_usage_errors(argv, capsys):
    from streammix.cli import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main([str(a) for a in argv], prog_name="streammix")
    assert_one_line_error(exit_.value.code, capsys.readouterr().err, 2, "-1 is not in [0, inf)")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["fit", "x", "--model", "m", "--n-components", 2, "--n-init", 10**26], "--n-init"),
        (["fit", "x", "--model", "m", "--n-components", 2, "--averaging", 10**26], "averaging"),
        (["score", "x", "--model", "m", "--output", "o", "--n-workers", 10**6], "--n-workers"),
        (["score", "x", "--model", "m", "--output", "o", "--threads-per-worker", 10**9], "thread"),
        (["score", "x", "--model", "m", "--output", "o", "--memory-limit", "abc"], "memory"),
        (["score", "x", "--model", "m", "--output", "o", "--memory-limit", "-5"], "memory"),
        (["kde", "x", "--output", "o", "--bandwidth", "inf"], "--bandwidth"),
    ],
    ids=lambda a: " ".join(map(str, a[-2:])) if isinstance(a, list) else None,
)
def test_values_that_used_to_reach_the_cluster_or_numpy_are_usage_errors(argv, match, capsys):
    from streammix.cli import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main([str(a) for a in argv], prog_name="streammix")
    assert_one_line_error(exit_.value.code, capsys.readouterr().err, 2, match)


# -------------------------------------------- 8. symbolic links in model directories
def test_a_file_linked_from_outside_the_model_directory_is_refused(small, tmp_path):
    model = tmp_path / "linked"
    shutil.copytree(small / "model", model)
    meta = json.loads((model / META_FILE).read_text())
    weights = model / meta["arrays"]["weights"]["file"]
    outside = tmp_path / "elsewhere.npy"
    weights.rename(outside)
    weights.symlink_to(outside)
    code, _, err = run("info", model, check=False)
    assert_one_line_error(code, err, 3, "symbolic link to a file outside the model directory")
    # a link inside the directory is harmless
    inside = model / "copy.npy"
    outside.rename(inside)
    weights.unlink()
    weights.symlink_to(inside.name)
    assert sm.load(model).weights_.shape == (2,)
    (model / META_FILE).rename(tmp_path / "outside.json")
    (model / META_FILE).symlink_to(tmp_path / "outside.json")
    with pytest.raises(sm.ModelFileError, match="model.json is a symbolic link"):
        sm.load(model)


# -------------------------------------------- 9. in-memory inputs have a content
def test_another_array_of_the_same_shape_is_another_input(tmp_path):
    X = blobs(4000, d=3, k=2, seed=7)
    model = tmp_path / "m"
    sm.GaussianMixture(2, random_state=0).fit(X).save(model)
    out = tmp_path / "s.zarr"
    score_jobs.score(X, model, out)
    Y = X[::-1].copy()
    with pytest.raises(OutputConflictError, match="another job"):
        score_jobs.score(Y, model, out)
    score_jobs.score(Y, model, out, overwrite=True)
    got = zarr.open_group(str(out), mode="r")["log_likelihood"][:]
    np.testing.assert_array_equal(got, sm.load(model).score_samples(Y))
    again = score_jobs.score(Y.copy(), model, out)  # equal content: the same input
    assert again["chunks_written"] == 0
    lazy = da.from_array(Y, chunks=(1000, 3))
    with pytest.raises(OutputConflictError, match="another job"):
        score_jobs.score(lazy + 1.0, model, out)


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path):
    X = blobs(3000, d=2, k=2, seed=8)

    def stop(*_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_job.fit(
            X,
            tmp_path / "m",
            fit_job.make_estimator(n_components=2),
            checkpoint=tmp_path / "c",
            on_iteration=stop,
        )
    assert (tmp_path / "c" / META_FILE).exists()
    with pytest.raises(sm.ModelFileError, match="another input"):
        fit_job.fit(
            X + 1.0,
            tmp_path / "m",
            fit_job.make_estimator(n_components=2),
            checkpoint=tmp_path / "c",
            resume=True,
        )
    fit_job.fit(
        X.copy(),
        tmp_path / "m",
        fit_job.make_estimator(n_components=2),
        checkpoint=tmp_path / "c",
        resume=True,
    )
    assert sm.load(tmp_path / "m").n_iter_ >= 1


def test_the_object_store_lease_lifetime_comes_from_the_environment(monkeypatch):
    from streammix.errors import InvalidParameterError
    from streammix.io.lease import TTL, lease_ttl

    monkeypatch.delenv("STREAMMIX_LEASE_TTL", raising=False)
    assert lease_ttl() == TTL
    monkeypatch.setenv("STREAMMIX_LEASE_TTL", "6")
    assert lease_ttl() == 6.0
    for bad in ("0.1", "nan", "soon"):
        monkeypatch.setenv("STREAMMIX_LEASE_TTL", bad)
        with pytest.raises(InvalidParameterError, match="STREAMMIX_LEASE_TTL"):
            lease_ttl()
