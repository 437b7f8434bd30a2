"""Score, flag and fit jobs and their output contract (library level, no cluster)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.datasets import generate
from streammix.engine.quantile import quantile
from streammix.errors import OutputConflictError
from streammix.io.outputs import NOT_WRITTEN, is_complete
from streammix.jobs import fit_job, score_jobs


def tree_digest(path: Path) -> str:
    """A digest of every file's bytes under ``path`` (names included)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def fitted(tmp_path):
    data = tmp_path / "d.zarr"
    generate(
        data, 30_000, n_features=3, n_components=2, outlier_fraction=0.02, chunk_rows=4_000, seed=1
    )
    est = fit_job.make_estimator(n_components=2, random_state=0)
    fit_job.fit(str(data), tmp_path / "m", est, contamination=0.02)
    return tmp_path, str(data), str(tmp_path / "m")


def test_score_output_contract(fitted):
    root, data, model = fitted
    out = root / "s.zarr"
    summary = score_jobs.score(data, model, out)
    assert summary["complete"] and is_complete(out)
    g = zarr.open_group(str(out), mode="r")
    X = zarr.open_group(data, mode="r")["X"][:]
    loaded = sm.load(model)
    np.testing.assert_array_equal(g["log_likelihood"][:], loaded.score_samples(X))
    np.testing.assert_array_equal(g["component"][:], loaded.predict(X))
    assert g["log_likelihood"].chunks == (4_000,)
    assert g.attrs["job"]["model_sha256"] == score_jobs.model_checksum(model)
    before = tree_digest(out)
    again = score_jobs.score(data, model, out)
    assert again["chunks_written"] == 0 and tree_digest(out) == before


def test_interrupted_score_is_finished_by_a_rerun(fitted):
    root, data, model = fitted
    full = root / "full.zarr"
    score_jobs.score(data, model, full)
    partial = root / "partial.zarr"
    shutil.copytree(full, partial)
    g = zarr.open_group(str(partial), mode="r+")
    # As a run killed after writing some chunks leaves it: chunks 3.. never written.
    g.attrs["complete"] = False
    g["_done/log_likelihood"][3:] = 0
    g["_done/component"][3:] = 0
    for name in ("log_likelihood", "component"):
        for f in (partial / name / "c").iterdir():
            if int(f.name) >= 3:
                f.unlink()
    assert np.isnan(g["log_likelihood"][20_000])
    assert g["component"][20_000] == NOT_WRITTEN
    assert not is_complete(partial)
    # and the temporaries of Zarr writes the kill interrupted (renamed when complete)
    (partial / "log_likelihood" / "c" / f"4.{'a' * 32}.partial").write_bytes(b"half")
    (partial / "_done" / "component" / f"zarr.{'0' * 32}.partial").write_bytes(b"{")
    # and the temporary of one of streammix's own renamed writes
    (partial / f".zarr.json.tmp-{'b' * 32}").write_bytes(b"{")
    summary = score_jobs.score(data, model, partial)
    assert summary["chunks_written"] == 5
    assert tree_digest(partial) == tree_digest(full)


def test_incremental_scoring_equals_a_full_rescore(fitted):
    root, data, model = fitted
    out = root / "inc.zarr"
    score_jobs.score(data, model, out)
    X = zarr.open_group(data, mode="r+")["X"]
    extra = np.random.default_rng(5).normal(size=(6_500, 3))
    X.resize((36_500, 3))
    X[30_000:] = extra
    with pytest.raises(OutputConflictError, match="grew from 30000 to 36500.*--incremental"):
        score_jobs.score(data, model, out)
    summary = score_jobs.score(data, model, out, incremental=True)
    # the previously partial chunk 7 (rows 28,000-32,000) and the new chunks 8 and 9
    assert summary["chunks_written"] == 3
    full = root / "full.zarr"
    score_jobs.score(data, model, full)
    a, b = zarr.open_group(str(out)), zarr.open_group(str(full))
    for name in ("log_likelihood", "component"):
        np.testing.assert_array_equal(a[name][:], b[name][:])
    assert a.attrs["n_rows"] == 36_500 and a.attrs["complete"] is True


def test_another_model_needs_overwrite(fitted):
    root, data, model = fitted
    out = root / "s.zarr"
    score_jobs.score(data, model, out)
    est = fit_job.make_estimator(n_components=3, random_state=0)
    fit_job.fit(data, root / "m3", est)
    with pytest.raises(OutputConflictError, match="another job.*--overwrite"):
        score_jobs.score(data, root / "m3", out)
    score_jobs.score(data, root / "m3", out, overwrite=True)
    assert zarr.open_group(str(out)).attrs["job"]["model_sha256"] == score_jobs.model_checksum(
        root / "m3"
    )


def test_flag_by_contamination_records_the_threshold(fitted):
    root, data, model = fitted
    out = root / "f.zarr"
    summary = score_jobs.flag(data, model, out, contamination=0.02, truth=f"{data}/is_outlier")
    g = zarr.open_group(str(out), mode="r")
    ll = g["log_likelihood"][:]
    assert g.attrs["threshold"]["method"] == "contamination"
    assert g.attrs["threshold"]["threshold"] == np.quantile(ll, 0.02)
    flags = g["flag"][:]
    np.testing.assert_array_equal(flags, (ll < np.quantile(ll, 0.02)).astype(np.int8))
    assert summary["flagged"] == int(flags.sum())
    assert summary["precision"] > 0.7 and summary["recall"] > 0.7


def test_flag_uses_the_model_calibration_or_a_given_threshold(fitted):
    root, data, model = fitted
    loaded = sm.load(model)
    assert loaded.threshold_ == pytest.approx(
        quantile(loaded.score_samples(zarr.open_group(data)["X"][:]), 0.02)
    )
    summary = score_jobs.flag(data, model, root / "f.zarr")
    assert summary["threshold"]["method"] == "model"
    assert summary["threshold"]["threshold"] == loaded.threshold_
    given = score_jobs.flag(data, model, root / "g.zarr", threshold=-5.0)
    assert given["threshold"] == {"method": "given", "threshold": -5.0}


def test_invalid_rows(fitted, tmp_path):
    root, data, model = fitted
    X = zarr.open_group(data, mode="r+")["X"]
    X[12_345, 1] = np.nan
    X[20_001, 0] = np.inf
    with pytest.raises(sm.InvalidInputError, match="row 12345 is the first"):
        score_jobs.score(data, model, root / "bad.zarr")
    assert not (root / "bad.zarr").exists()  # nothing left that looks like a result
    out = score_jobs.flag(data, model, root / "skip.zarr", threshold=-8.0, on_invalid="skip")
    flags = zarr.open_group(str(root / "skip.zarr"))["flag"][:]
    assert flags[12_345] == -1 and flags[20_001] == -1 and out["unscorable"] == 2
    score_jobs.flag(data, model, root / "asout.zarr", threshold=-8.0, on_invalid="flag")
    assert zarr.open_group(str(root / "asout.zarr"))["flag"][12_345] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(contamination=1.5), "contamination must be in \\(0, 0.5\\]"),
        (dict(contamination=0.1, threshold=1.0), "either --contamination or --threshold"),
    ],
)
def test_flag_settings_are_checked_before_any_work(fitted, kwargs, match):
    root, data, model = fitted
    with pytest.raises(sm.InvalidParameterError, match=match):
        score_jobs.flag(data, model, root / "x.zarr", **kwargs)
    assert not (root / "x.zarr").exists()


def test_flag_without_any_threshold_source(tmp_path):
    data = tmp_path / "d.zarr"
    generate(data, 2_000, n_features=2, n_components=1, chunk_rows=500)
    fit_job.fit(str(data), tmp_path / "m", fit_job.make_estimator(n_components=1))
    with pytest.raises(sm.InvalidParameterError, match="No threshold"):
        score_jobs.flag(str(data), tmp_path / "m", tmp_path / "f.zarr")


@pytest.mark.parametrize("method", ["batch", "online"])
def test_fit_resumed_from_a_checkpoint_equals_an_uninterrupted_fit(tmp_path, method):
    data = tmp_path / "d.zarr"
    generate(data, 40_000, n_features=4, n_components=3, chunk_rows=5_000, seed=3)
    opts = {"n_components": 3, "random_state": 0}
    opts.update(
        {"tol": 0.0, "max_iter": 12, "n_init": 2} if method == "batch" else {"max_epochs": 4}
    )
    straight = fit_job.make_estimator(method, **opts)
    with pytest.warns(sm.ConvergenceWarning) if method == "batch" else _nothing():
        fit_job.fit(str(data), tmp_path / "straight", straight)

    ckpt = tmp_path / "ckpt"
    calls = []

    class Killed(Exception):
        pass

    def kill_after_five(i, *_):
        calls.append(i)
        if len(calls) == (5 if method == "batch" else 2):
            raise Killed

    first = fit_job.make_estimator(method, **opts)
    with pytest.raises(Killed):
        fit_job.fit(
            str(data), tmp_path / "resumed", first, checkpoint=ckpt, on_iteration=kill_after_five
        )
    assert ckpt.exists() and not (tmp_path / "resumed").exists()
    second = fit_job.make_estimator(method, **opts)
    with pytest.warns(sm.ConvergenceWarning) if method == "batch" else _nothing():
        fit_job.fit(str(data), tmp_path / "resumed", second, checkpoint=ckpt, resume=True)
    a, b = sm.load(tmp_path / "straight"), sm.load(tmp_path / "resumed")
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.lower_bounds_ == b.lower_bounds_
    assert not ckpt.exists()


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    data = tmp_path / "d.zarr"
    generate(data, 5_000, n_features=2, n_components=2, chunk_rows=1_000)

    def stop(i, *_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_job.fit(
            str(data),
            tmp_path / "m",
            fit_job.make_estimator(n_components=2),
            checkpoint=tmp_path / "c",
            on_iteration=stop,
        )
    with pytest.raises(sm.ModelFileError, match="other settings"):
        fit_job.fit(
            str(data),
            tmp_path / "m",
            fit_job.make_estimator(n_components=3),
            checkpoint=tmp_path / "c",
            resume=True,
        )


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
