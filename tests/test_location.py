"""Locations: parsing, structure, storage options, redaction; model files, outputs and
publishing through fsspec's in-memory filesystem (``memory://``) and local paths."""

from __future__ import annotations

import json
import os

import dask
import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.errors import InvalidParameterError
from streammix.io.location import Location, parse_storage_options, redact
from streammix.io.modelfile import META_FILE, publish, read_model_dir, write_model_dir
from streammix.io.outputs import ArraySpec, RowOutput, is_complete
from streammix.jobs import score_jobs

from .conftest import blobs


@pytest.fixture
def memory():
    """A fresh folder of fsspec's in-memory filesystem."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"memory://t{os.getpid()}-{np.random.default_rng().integers(1 << 40)}"
    yield root
    if fs.exists(root.split("://", 1)[1]):
        fs.rm(root.split("://", 1)[1], recursive=True)


def test_paths_and_urls_parse_to_canonical_locations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Location.of("data/x.zarr").url == str(tmp_path / "data" / "x.zarr")
    assert Location.of(f"file://{tmp_path}/y").url == str(tmp_path / "y")
    s3 = Location.of("s3://bucket/a/b.zarr/", {"anon": True})
    assert s3.url == "s3://bucket/a/b.zarr" and s3.protocol == "s3" and not s3.is_local
    assert s3.path == "bucket/a/b.zarr" and s3.name == "b.zarr"
    assert (
        str(s3.parent) == "s3://bucket/a" and str(s3.child("X", "c")) == "s3://bucket/a/b.zarr/X/c"
    )
    assert str(s3.parent.parent.parent) == "s3://bucket"
    assert s3.parent.parent.is_root and not s3.is_root
    assert Location.of("/").is_root
    assert s3 == Location.of("s3://bucket/a/b.zarr") and "anon" not in repr(s3)
    with pytest.raises(InvalidParameterError, match="names no bucket"):
        Location.of("s3://")
    with pytest.raises(InvalidParameterError, match="not a name inside"):
        s3.child("..")


def test_relative_references_stay_on_their_filesystem(tmp_path):
    models = Location.of("s3://b/models")
    version = Location.of("s3://b/models/versions/v1")
    assert models.relative(version) == "versions/v1"
    assert str(models.resolve("versions/v1")) == "s3://b/models/versions/v1"
    assert str(models.resolve("../other")) == "s3://b/other"
    assert models.relative(Location.of("s3://c/v")) == "s3://c/v"
    assert models.relative(Location.of(str(tmp_path))) == str(tmp_path)
    local = Location.of(str(tmp_path / "m"))
    assert str(local.resolve("versions/v2")) == str(tmp_path / "m" / "versions" / "v2")


def test_storage_options_per_protocol_and_never_shown(monkeypatch):
    opts = {"s3": {"key": "AKIAEXAMPLEKEY", "secret": "s3cr3t-value"}, "gs": {"token": "anon"}}
    assert Location.of("s3://b/x", opts).storage_options == opts["s3"]
    assert Location.of("gs://b/x", opts).storage_options == {"token": "anon"}
    flat = {"endpoint_url": "http://127.0.0.1:9000", "secret": "flat-secret-value"}
    assert Location.of("s3://b/x", flat).storage_options == flat
    assert redact("failed with s3cr3t-value and flat-secret-value") == "failed with *** and ***"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-environment")
    assert redact("x from-the-environment y") == "x *** y"
    assert parse_storage_options('{"anon": true}', "--storage-options") == {"anon": True}
    with pytest.raises(InvalidParameterError, match="JSON object") as err:
        parse_storage_options('{"secret": "abc" oops', "--storage-options")
    assert "abc" not in str(err.value)
    with pytest.raises(InvalidParameterError, match="JSON object"):
        parse_storage_options("[1]", "--storage-options")


def test_unknown_schemes_and_missing_packages_are_named():
    with pytest.raises(InvalidParameterError, match="no filesystem for 'nosuch://'"):
        Location.of("nosuch://x/y").exists()
    with pytest.raises(sm.StorageError, match=r"pip install 'streammix\[gcs\]'"):
        Location.of("gs://bucket/x").exists()


def test_models_round_trip_through_memory(memory):
    X = blobs(600, d=2, k=2, seed=1)
    gm = sm.GaussianMixture(2, random_state=0).fit(X)
    where = sm.location(f"{memory}/model")
    assert gm.save(where) == f"{memory}/model"
    loaded = sm.load(f"{memory}/model")
    np.testing.assert_array_equal(loaded.score_samples(X), gm.score_samples(X))
    meta, _ = read_model_dir(where)
    names = where.listdir()
    assert set(names) == {META_FILE} | {e["file"] for e in meta["arrays"].values()}


def test_rewriting_a_model_keeps_the_old_one_loadable_until_the_manifest(tmp_path, monkeypatch):
    a = sm.GaussianMixture.from_parameters([1.0], [[0.0]], [[[1.0]]])
    a.save(tmp_path / "m")
    meta, arrays = a.to_files()
    arrays["means"] = np.array([[7.0]])
    # a writer killed after its array files, before its manifest: the old model stands
    real = Location.write_bytes

    def die_on_manifest(self, data):
        if self.name == META_FILE:
            raise KeyboardInterrupt
        real(self, data)

    with monkeypatch.context() as m:
        m.setattr(Location, "write_bytes", die_on_manifest)
        with pytest.raises(KeyboardInterrupt):
            write_model_dir(tmp_path / "m", meta, arrays)
    assert sm.load(tmp_path / "m").means_[0, 0] == 0.0
    write_model_dir(tmp_path / "m", meta, arrays)
    assert sm.load(tmp_path / "m").means_[0, 0] == 7.0
    files = {p.name for p in (tmp_path / "m").iterdir()}
    listed = json.loads((tmp_path / "m" / META_FILE).read_text())["arrays"]
    assert files == {META_FILE} | {e["file"] for e in listed.values()}


def test_publish_on_memory_and_over_a_link_of_an_older_release(memory, tmp_path):
    for i in range(3):
        sm.GaussianMixture.from_parameters([1.0], [[float(i)]], [[[1.0]]]).save(f"{memory}/stage")
        publish(f"{memory}/stage", f"{memory}/current", version=f"v{i}", keep=2)
    assert sm.load(f"{memory}/current").means_[0, 0] == 2.0
    assert Location.of(f"{memory}/versions").listdir() == ["v1", "v2"]
    # models/current as a symbolic link (how earlier releases published): still loads,
    # and the next publish turns it into a pointer
    models = tmp_path / "models"
    sm.GaussianMixture.from_parameters([1.0], [[5.0]], [[[1.0]]]).save(models / "versions" / "old")
    os.symlink("versions/old", models / "current")
    assert sm.load(models / "current").means_[0, 0] == 5.0
    sm.GaussianMixture.from_parameters([1.0], [[6.0]], [[[1.0]]]).save(models / "stage")
    publish(str(models / "stage"), str(models / "current"), version="new")
    assert not (models / "current").is_symlink()
    assert sm.load(models / "current").means_[0, 0] == 6.0


def test_a_pointer_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "current").write_text('{"something": "else"}')
    with pytest.raises(sm.ModelFileError, match="not a streammix pointer"):
        sm.load(tmp_path / "current")
    with pytest.raises(sm.ModelFileError, match="is a file"):
        sm.GaussianMixture.from_parameters([1.0], [[0.0]], [[[1.0]]]).save(tmp_path / "current")


def test_score_job_output_on_memory(memory):
    X = blobs(5000, d=3, k=2, seed=2)
    src = zarr.create_array(
        store=sm.location(f"{memory}/x.zarr").zarr_store(False),
        shape=X.shape,
        chunks=(1000, 3),
        dtype="f8",
    )
    src[:] = X
    sm.GaussianMixture(2, random_state=0).fit(X).save(f"{memory}/m")
    with dask.config.set(scheduler="threads"):
        summary = score_jobs.score(f"{memory}/x.zarr", f"{memory}/m", f"{memory}/s.zarr")
    assert summary["complete"] and is_complete(f"{memory}/s.zarr")
    ll = zarr.open_group(store=sm.location(f"{memory}/s.zarr").zarr_store(), mode="r")
    expected = sm.load(f"{memory}/m").score_samples(X)
    np.testing.assert_allclose(ll["log_likelihood"][:], expected, rtol=1e-12)


def test_outputs_refuse_roots_and_missing_buckets(tmp_path):
    spec = [ArraySpec("v", "float64")]
    with pytest.raises(InvalidParameterError, match="filesystem root"):
        RowOutput.prepare("/", spec, {"kind": "t"}, 10, 5)
    (tmp_path / "file").write_text("x")
    with pytest.raises(sm.InvalidInputError, match="is a file"):
        RowOutput.prepare(tmp_path / "file" / "out.zarr", spec, {"kind": "t"}, 10, 5)
