"""Bad input through the CLI: non-zero exit, one line on stderr, no traceback, nothing
written that looks like a result. Degenerate but valid data follow the documented policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

import streammix as sm

from .test_cli import assert_one_line_error, run


def _array(path: Path, values, chunks=None) -> Path:
    values = np.asarray(values)
    arr = zarr.create_array(
        str(path), shape=values.shape, dtype=values.dtype, chunks=chunks or values.shape or (1,)
    )
    if values.size:
        arr[...] = values
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    good = rng.normal(size=(2000, 3))
    nan, inf = good.copy(), good.copy()
    nan[1234, 1] = np.nan
    inf[777, 2] = np.inf
    p = {
        "good": _array(root / "good.zarr", good, (500, 3)),
        "nan": _array(root / "nan.zarr", nan, (500, 3)),
        "inf": _array(root / "inf.zarr", inf, (500, 3)),
        "one_d": _array(root / "1d.zarr", good[:, 0], (500,)),
        "three_d": _array(root / "3d.zarr", good.reshape(500, 4, 3), (100, 4, 3)),
        "zero_rows": _array(root / "empty.zarr", np.zeros((0, 3)), (10, 3)),
        "few_rows": _array(root / "few.zarr", good[:2], (2, 3)),
        "columns": _array(root / "cols.zarr", good, (500, 1)),
        "two_features": _array(root / "two.zarr", good[:, :2], (500, 2)),
    }
    strings = zarr.create_array(str(root / "str.zarr"), shape=(4, 2), chunks=(2, 2), dtype=str)
    strings[:] = np.array([["a", "b"]] * 4)
    p["strings"] = root / "str.zarr"
    group = zarr.open_group(str(root / "group.zarr"), mode="w")
    group.create_array("other", shape=(10, 3), chunks=(5, 3), dtype="f8")
    p["group_without_X"] = root / "group.zarr"
    _array(root / "corrupt.zarr", good, (500, 3))
    chunk = root / "corrupt.zarr" / "c" / "2" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    p["corrupt"] = root / "corrupt.zarr"
    v2 = zarr.create_array(
        str(root / "v2.zarr"), shape=(10, 3), chunks=(5, 3), dtype="f8", zarr_format=2
    )
    v2[:] = 1.0
    meta = json.loads((root / "v2.zarr" / ".zarray").read_text())
    meta["filters"] = [{"id": "pickle", "protocol": 5}]
    (root / "v2.zarr" / ".zarray").write_text(json.dumps(meta))
    p["pickle_codec"] = root / "v2.zarr"
    run("fit", p["good"], "--model", root / "model", "--n-components", 2)
    p["model"] = root / "model"
    p["root"] = root
    return p


def _damaged_model(inputs, how: str) -> Path:
    import shutil

    dest = inputs["root"] / f"model-{how}"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(inputs["model"], dest)
    if how == "schema":
        meta = json.loads((dest / "model.json").read_text())
        meta["schema_version"] = 99
        (dest / "model.json").write_text(json.dumps(meta))
    else:
        meta = json.loads((dest / "model.json").read_text())
        f = dest / meta["arrays"]["means"]["file"]
        f.write_bytes(f.read_bytes()[:-8])
    return dest


CASES = {
    # name: (argv builder, exit code, message part)
    "nan in data": (lambda p: ["fit", p["nan"], "--n-components", 2], 3, "row 1234"),
    "inf in data": (lambda p: ["fit", p["inf"], "--n-components", 2], 3, "row 777"),
    "1-D array": (lambda p: ["fit", p["one_d"], "--n-components", 2], 3, "got 1D array"),
    "3-D array": (lambda p: ["fit", p["three_d"], "--n-components", 2], 3, "got 3D array"),
    "strings": (lambda p: ["fit", p["strings"], "--n-components", 2], 3, "non-numeric dtype"),
    "zero rows": (lambda p: ["fit", p["zero_rows"], "--n-components", 2], 3, "0 sample(s)"),
    "too few rows": (
        lambda p: ["fit", p["few_rows"], "--n-components", 3],
        3,
        "n_samples >= n_components",
    ),
    "column chunks": (
        lambda p: ["fit", p["columns"], "--n-components", 2],
        3,
        "chunked along columns",
    ),
    "missing path": (
        lambda p: ["fit", p["root"] / "nowhere.zarr", "--n-components", 2],
        3,
        "does not exist",
    ),
    "group without array": (
        lambda p: ["fit", p["group_without_X"], "--n-components", 2],
        3,
        "has no array 'X'",
    ),
    "corrupted chunk": (
        lambda p: ["fit", p["corrupt"], "--n-components", 2],
        3,
        "cannot read rows 1000-1500",
    ),
    "pickle codec": (
        lambda p: ["fit", p["pickle_codec"], "--n-components", 2],
        3,
        "codec(s) pickle",
    ),
    "negative components": (
        lambda p: ["fit", p["good"], "--n-components", -1],
        2,
        "--n-components",
    ),
    "feature mismatch": (
        lambda p: ["score", p["two_features"], "--model", p["model"]],
        3,
        "X has 2 features, but GaussianMixture is expecting 3",
    ),
    "missing model": (
        lambda p: ["score", p["good"], "--model", p["root"] / "no-model"],
        3,
        "No model at",
    ),
    "damaged model": (
        lambda p: ["score", p["good"], "--model", _damaged_model(p, "trunc")],
        3,
        "does not match its checksum",
    ),
    "unknown schema": (
        lambda p: ["score", p["good"], "--model", _damaged_model(p, "schema")],
        3,
        "schema version 99",
    ),
    "nan to score": (lambda p: ["score", p["nan"], "--model", p["model"]], 3, "row 1234"),
    "contamination 1.5": (
        lambda p: ["flag", p["good"], "--model", p["model"], "--contamination", 1.5],
        2,
        "not in (0, 0.5]",
    ),
    "contamination 0": (
        lambda p: ["flag", p["good"], "--model", p["model"], "--contamination", 0],
        2,
        "not in (0, 0.5]",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(inputs, case):
    build, code, match = CASES[case]
    argv = [str(a) for a in build(inputs)]
    out = inputs["root"] / f"out-{case.replace(' ', '-')}"
    argv += ["--model", out] if argv[0] == "fit" else ["--output", out]
    rc, stdout, stderr = run(*argv, check=False)
    assert_one_line_error(rc, stderr, code, match)
    assert stdout == ""
    assert not out.exists()


def test_nan_rows_can_be_skipped_or_flagged_when_scoring(inputs):
    out = inputs["root"] / "skipped.zarr"
    run(
        "flag",
        inputs["nan"],
        "--model",
        inputs["model"],
        "--output",
        out,
        "--contamination",
        0.01,
        "--on-invalid",
        "skip",
    )
    flags = zarr.open_group(str(out), mode="r")["flag"][:]
    assert flags[1234] == -1 and np.count_nonzero(flags == -1) == 1


@pytest.mark.parametrize(
    ("make", "check"),
    [
        ("zero_variance", lambda m: m.covariances_[:, 1, 1] == pytest.approx(1e-6, rel=1e-3)),
        ("identical", lambda m: np.allclose(m.covariances_[0], 1e-6 * np.eye(3))),
        ("huge", lambda m: np.allclose(m.means_[0], 1e300)),
    ],
)
def test_degenerate_data_follow_the_policy(inputs, make, check):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 3))
    if make == "zero_variance":
        X[:, 1] = 4.0
    elif make == "identical":
        X[:] = [1.0, 2.0, 3.0]
    else:
        X[:] = 1e300
    path = _array(inputs["root"] / f"{make}.zarr", X, (1000, 3))
    k = 2 if make == "zero_variance" else 1
    model = inputs["root"] / f"{make}-model"
    run("fit", path, "--model", model, "--n-components", k)
    fitted = sm.load(model)
    assert check(fitted)
    out = inputs["root"] / f"{make}-scores.zarr"
    run("score", path, "--model", model, "--output", out)
    assert np.all(np.isfinite(zarr.open_group(str(out), mode="r")["log_likelihood"][:]))
