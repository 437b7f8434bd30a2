"""Model directories: exact round trips, no pickle, damage refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

import streammix as sm
from streammix.core.families import FAMILY_NAMES
from streammix.io.modelfile import META_FILE, SCHEMA_VERSION

from .conftest import blobs

X = blobs(1500, d=3, k=3, seed=12)


def array_file(path, name: str):
    """The file of array ``name`` in a model directory (named by its checksum)."""
    return path / json.loads((path / META_FILE).read_text())["arrays"][name]["file"]


@pytest.fixture(params=FAMILY_NAMES)
def saved(request, tmp_path):
    gm = sm.GaussianMixture(3, covariance_type=request.param, random_state=0).fit(X)
    path = tmp_path / "model"
    gm.save(path)
    return gm, path


def test_round_trip_gives_identical_scores(saved):
    gm, path = saved
    loaded = sm.load(path)
    assert type(loaded) is sm.GaussianMixture
    np.testing.assert_array_equal(loaded.score_samples(X), gm.score_samples(X))
    np.testing.assert_array_equal(loaded.predict(X), gm.predict(X))
    assert loaded.get_params() == {**gm.get_params(), "random_state": None}
    assert loaded.lower_bounds_ == gm.lower_bounds_
    assert loaded.n_iter_ == gm.n_iter_ and loaded.converged_ == gm.converged_


def test_files_hold_no_pickle(saved):
    _, path = saved
    meta = json.loads((path / META_FILE).read_text())
    assert meta["schema_version"] == SCHEMA_VERSION
    for entry in meta["arrays"].values():
        raw = (path / entry["file"]).read_bytes()
        assert raw.startswith(b"\x93NUMPY")
        assert b"pickle" not in raw.lower()
        np.load(path / entry["file"], allow_pickle=False)  # raises on object arrays
    files = {p.name for p in path.iterdir()}
    assert files == {META_FILE} | {e["file"] for e in meta["arrays"].values()}


def test_unknown_schema_version_is_refused(saved):
    _, path = saved
    meta = json.loads((path / META_FILE).read_text())
    meta["schema_version"] = SCHEMA_VERSION + 1
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(sm.ModelFileError, match="schema version 2.*reads version 1"):
        sm.load(path)


def test_truncated_array_is_refused(saved):
    _, path = saved
    f = array_file(path, "covariances")
    f.write_bytes(f.read_bytes()[:-16])
    with pytest.raises(sm.ModelFileError, match="damaged.*covariances.*npy.*checksum"):
        sm.load(path)


def test_damaged_metadata_and_missing_files_are_refused(saved, tmp_path):
    _, path = saved
    with pytest.raises(sm.ModelFileError, match="does not exist"):
        sm.load(tmp_path / "nowhere")
    array_file(path, "means").unlink()
    with pytest.raises(sm.ModelFileError, match=r"means\.\w+\.npy is missing"):
        sm.load(path)
    (path / META_FILE).write_text("{not json")
    with pytest.raises(sm.ModelFileError, match="damaged"):
        sm.load(path)
    (path / META_FILE).unlink()
    with pytest.raises(sm.ModelFileError, match="not a streammix model directory"):
        sm.load(path)


def test_invalid_parameters_are_refused_even_with_good_checksums(tmp_path):
    from streammix.io.modelfile import write_model_dir

    gm = sm.GaussianMixture.from_parameters([0.5, 0.5], [[0.0], [1.0]], [[[1.0]], [[1.0]]])
    meta, arrays = gm.to_files()
    arrays["covariances"] = np.array([[[1.0]], [[-1.0]]])
    write_model_dir(tmp_path / "neg", meta, arrays)
    with pytest.raises(sm.ModelFileError, match="positive-definite"):
        sm.load(tmp_path / "neg")
    arrays["covariances"] = np.array([[[1.0]], [[np.nan]]])
    write_model_dir(tmp_path / "nan", meta, arrays)
    with pytest.raises(sm.ModelFileError, match="NaN"):
        sm.load(tmp_path / "nan")
    arrays["covariances"] = np.ones((3, 1, 1))
    write_model_dir(tmp_path / "shape", meta, arrays)
    with pytest.raises(sm.ModelFileError, match="shape"):
        sm.load(tmp_path / "shape")


def test_saving_replaces_a_model_atomically_and_never_a_foreign_directory(tmp_path):
    a = sm.GaussianMixture.from_parameters([1.0], [[0.0]], [[[1.0]]])
    b = sm.GaussianMixture.from_parameters([1.0], [[5.0]], [[[1.0]]])
    a.save(tmp_path / "m")
    b.save(tmp_path / "m")
    assert sm.load(tmp_path / "m").means_[0, 0] == 5.0
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(sm.ModelFileError, match="not a streammix model directory"):
        a.save(tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").exists()


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(sm.NotFittedError):
        sm.GaussianMixture().save(tmp_path / "m")
