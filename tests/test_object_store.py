"""Every location an s3:// URL: the installed CLI against a real S3 server (moto's
server mode, started here on loopback, with authentication), compared with the
same jobs on local copies; on the embedded cluster and on a real ``dask
scheduler`` + 2 ``dask worker`` processes that read and write the bucket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr

import streammix as sm
from streammix.datasets import generate

from .dask_cluster import DaskCluster
from .s3_server import CountingProxy, S3Server, environ_with, upload
from .test_cli import EXE, assert_one_line_error, run

pytestmark = [pytest.mark.s3, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[1]
ROWS, CHUNK, D = 120_000, 15_000, 5
FIT = ["--n-components", 3, "--seed", 0, "--max-iter", 30, "--tol", 0]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server(tmp_path_factory.mktemp("moto")) as server:
        fs = server.filesystem()
        for bucket in ("data", "work"):
            fs.mkdir(bucket)
        yield server


@pytest.fixture(scope="module")
def env(s3) -> dict[str, str]:
    return s3.env()


@pytest.fixture(scope="module")
def fs(s3):
    return s3.filesystem()


@pytest.fixture(scope="module")
def local(tmp_path_factory, s3, fs) -> Path:
    """The same data locally and in the bucket: a Zarr group and a Parquet dataset."""
    root = tmp_path_factory.mktemp("local")
    generate(
        root / "events.zarr",
        ROWS,
        n_features=D,
        n_components=3,
        outlier_fraction=0.01,
        chunk_rows=CHUNK,
        seed=3,
    )
    upload(fs, root / "events.zarr", "s3://data/events.zarr")
    X = np.asarray(zarr.open_group(str(root / "events.zarr"), mode="r")["X"][:])
    (root / "events.parquet").mkdir()
    for i, (a, b) in enumerate(((0, 60_000), (60_000, ROWS))):
        table = pa.table({**{f"f{j}": X[a:b, j] for j in range(D)}, "tag": ["x"] * (b - a)})
        pq.write_table(table, root / "events.parquet" / f"part-{i}.parquet", row_group_size=CHUNK)
    upload(fs, root / "events.parquet", "s3://data/events.parquet")
    return root


def cli(env, *args, check=True):
    return run(*args, env=env, check=check)


def model_equal(a, b, rtol=1e-9):
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=0)


def remote(s3, url: str):
    return sm.location(url, key=s3.key_id, secret=s3.secret, endpoint_url=s3.url)


def object_bytes(fs, url: str) -> dict[str, bytes]:
    """Every object under ``url`` by relative key (``zarr.json`` without the input path)."""
    base = url.split("://", 1)[1]
    fs.invalidate_cache()
    return {p[len(base) + 1 :]: _stable(p, fs.cat_file(p)) for p in sorted(fs.find(base))}


def local_bytes(path: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(path).as_posix()): _stable(str(f), f.read_bytes())
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def _stable(name: str, raw: bytes) -> bytes:
    if not name.endswith("zarr.json"):
        return raw
    doc = json.loads(raw)
    job = (doc.get("attributes") or {}).get("job")
    if isinstance(job, dict):
        job.pop("input", None)
    return json.dumps(doc, sort_keys=True).encode()


# ------------------------------------------------------------------------------ jobs
@pytest.fixture(scope="module")
def fitted(local, env, s3, fs):
    """fit (with a checkpoint and a calibrated threshold) locally and on S3."""
    cli(
        env,
        "fit",
        local / "events.zarr",
        "--model",
        local / "model",
        "--checkpoint",
        local / "ckpt",
        "--contamination",
        0.01,
        *FIT,
    )
    cli(
        env,
        "fit",
        "s3://data/events.zarr",
        "--model",
        "s3://work/model",
        "--checkpoint",
        "s3://work/ckpt",
        "--contamination",
        0.01,
        *FIT,
    )
    return sm.load(local / "model"), sm.load(remote(s3, "s3://work/model"))


def test_fit_on_s3_equals_the_local_fit(fitted, fs):
    here, there = fitted
    model_equal(there, here)
    assert there.threshold_ == here.threshold_
    assert not fs.exists("work/ckpt"), "the checkpoint is removed after a finished fit"


def test_score_and_flag_on_s3_are_byte_identical_to_local(fitted, local, env, fs):
    for job, extra in (("score", []), ("flag", ["--contamination", 0.01, "--explain"])):
        cli(
            env,
            job,
            local / "events.zarr",
            "--model",
            local / "model",
            "--output",
            local / f"{job}.zarr",
            *extra,
        )
        _, out, _ = cli(
            env,
            job,
            "s3://data/events.zarr",
            "--model",
            "s3://work/model",
            "--output",
            f"s3://work/{job}.zarr",
            "--json",
            *extra,
        )
        assert json.loads(out)["complete"] is True
        there = object_bytes(fs, f"s3://work/{job}.zarr")
        assert there == local_bytes(local / f"{job}.zarr")
        assert len(there) > 20


def test_publish_switches_a_pointer_on_s3(fitted, local, env, s3, fs):
    for version in ("v1", "v2"):
        cli(env, "fit", "s3://data/events.zarr", "--model", "s3://work/staging", *FIT)
        _, out, _ = cli(
            env,
            "publish",
            "s3://work/staging",
            "--target",
            "s3://work/models/current",
            "--version",
            version,
            "--keep",
            1,
            "--json",
        )
        assert json.loads(out)["version"] == version
        assert not fs.exists("work/staging")
    pointer = json.loads(fs.cat_file("work/models/current"))
    assert pointer == {"streammix_pointer": 1, "version": "versions/v2"}
    assert fs.ls("work/models/versions", detail=False) == ["work/models/versions/v2"]
    _, out, _ = cli(env, "info", "s3://work/models/current", "--json")
    info = json.loads(out)
    assert info["version"] == "s3://work/models/versions/v2" and info["n_components"] == 3
    model_equal(sm.load(remote(s3, "s3://work/models/current")), fitted[0])


def test_incremental_scoring_after_rows_are_appended_on_s3(fitted, local, env, s3, fs, tmp_path):
    upload(fs, local / "events.zarr", "s3://data/growing.zarr")
    cli(
        env,
        "score",
        "s3://data/growing.zarr",
        "--model",
        "s3://work/model",
        "--output",
        "s3://work/growing-scores.zarr",
    )
    group = zarr.open_group(store=remote(s3, "s3://data/growing.zarr").zarr_store(False), mode="r+")
    X = group["X"]
    X.resize((ROWS + 20_000, D))
    X[ROWS:] = X[:20_000]
    _, out, _ = cli(
        env,
        "score",
        "s3://data/growing.zarr",
        "--model",
        "s3://work/model",
        "--output",
        "s3://work/growing-scores.zarr",
        "--incremental",
        "--json",
    )
    assert json.loads(out)["chunks_written"] == 2
    cli(
        env,
        "score",
        "s3://data/growing.zarr",
        "--model",
        "s3://work/model",
        "--output",
        "s3://work/full-scores.zarr",
    )
    grown = object_bytes(fs, "s3://work/growing-scores.zarr")
    assert grown == object_bytes(fs, "s3://work/full-scores.zarr")


def test_each_chunk_is_one_request_per_pass(fitted, env, s3):
    n_chunks = ROWS // CHUNK
    with CountingProxy(s3.url) as proxy:
        via = {**env, "AWS_ENDPOINT_URL": proxy.url}
        cli(
            via,
            "score",
            "s3://data/events.zarr",
            "--model",
            "s3://work/model",
            "--output",
            "s3://work/counted.zarr",
        )
        reads = proxy.requests("/data/events.zarr/X/c/")
        assert len(reads) == n_chunks and set(reads.values()) == {1}, reads
        assert {method for method, _ in reads} == {"GET"}
        for name in ("log_likelihood", "component", "_done/log_likelihood", "_done/component"):
            writes = proxy.requests(f"/work/counted.zarr/{name}/c/")
            assert len(writes) == n_chunks and set(writes.values()) == {1}, writes
            assert {method for method, _ in writes} == {"PUT"}
        proxy.reset()
        cli(
            via,
            "fit",
            "s3://data/events.zarr",
            "--model",
            "s3://work/counted-model",
            "--n-components",
            3,
            "--seed",
            0,
            "--max-iter",
            4,
            "--tol",
            0,
            "--init",
            "random_from_data",
        )
        reads = proxy.requests("/data/events.zarr/X/c/")
        assert len(reads) == n_chunks and {m for m, _ in reads} == {"GET"}
        # four EM passes and the start's sample of rows read every chunk once each; the
        # chunks holding the rows chosen as starting means are read once more
        assert set(reads.values()) <= {5, 6} and min(reads.values()) == 5, reads


def test_a_killed_score_is_finished_by_a_rerun_with_identical_bytes(fitted, local, env, s3, fs):
    # the killed run's lease expires after 6 s instead of a minute
    env = {**env, "STREAMMIX_LEASE_TTL": "6"}
    with CountingProxy(s3.url, put_delay=0.5) as proxy:
        via = {**env, "AWS_ENDPOINT_URL": proxy.url}
        args = [
            "score",
            "s3://data/events.zarr",
            "--model",
            "s3://work/model",
            "--output",
            "s3://work/killed.zarr",
        ]
        proc = subprocess.Popen(
            [EXE, *map(str, args)],
            env=environ_with(via),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.time() + 120
        while not fs.find("work/killed.zarr/_done/log_likelihood/c"):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    group = zarr.open_group(store=remote(s3, "s3://work/killed.zarr").zarr_store(), mode="r")
    assert group.attrs["complete"] is False
    assert np.count_nonzero(group["_done/log_likelihood"][:]) < ROWS // CHUNK
    cli(
        env,
        "score",
        "s3://data/events.zarr",
        "--model",
        "s3://work/model",
        "--output",
        "s3://work/killed.zarr",
    )
    cli(
        env,
        "score",
        local / "events.zarr",
        "--model",
        local / "model",
        "--output",
        local / "reference.zarr",
    )
    assert object_bytes(fs, "s3://work/killed.zarr") == local_bytes(local / "reference.zarr")


def test_a_fit_killed_mid_way_resumes_from_its_checkpoint_on_s3(fitted, env, s3, fs):
    args = [
        "fit",
        "s3://data/events.zarr",
        "--model",
        "s3://work/resumed",
        "--checkpoint",
        "s3://work/resumed.ckpt",
        "--contamination",
        0.01,
        *FIT,
    ]
    proc = subprocess.Popen(
        [EXE, *map(str, args)],
        env=environ_with(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "iteration    5" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert fs.exists("work/resumed.ckpt/model.json") and not fs.exists("work/resumed")
    _, _, err = cli(env, *args, "--resume")
    assert "resuming from iteration" in err
    model_equal(sm.load(remote(s3, "s3://work/resumed")), fitted[0])


def test_shipped_pipelines_run_on_s3_like_on_local_paths(local, env, fs, tmp_path):
    runs = {
        "local": {
            "STREAMMIX_DATA": str(local / "events.zarr"),
            "STREAMMIX_MODELS": str(tmp_path / "models"),
            "STREAMMIX_OUT": str(tmp_path / "out"),
        },
        "s3": {
            "STREAMMIX_DATA": "s3://data/events.zarr",
            "STREAMMIX_MODELS": "s3://work/models2",
            "STREAMMIX_OUT": "s3://work/out2",
        },
    }
    for where in runs.values():
        cli({**env, **where}, "run", REPO / "pipelines" / "weekly-refit.toml")
        cli({**env, **where}, "run", REPO / "pipelines" / "nightly-scoring.toml")
    for name in ("scores.zarr", "flags.zarr"):
        assert object_bytes(fs, f"s3://work/out2/{name}") == local_bytes(tmp_path / "out" / name)


def test_a_real_dask_cluster_reads_and_writes_the_bucket(
    fitted, local, env, fs, tmp_path, monkeypatch
):
    for k, v in env.items():
        monkeypatch.setenv(k, v)  # the workers get the store's standard environment
    with DaskCluster(tmp_path / "dask", n_workers=2) as cluster:
        at = ["--scheduler-address", cluster.address]
        cli(
            env,
            "fit",
            "s3://data/events.zarr",
            "--model",
            "s3://work/cluster-model",
            "--contamination",
            0.01,
            *FIT,
            *at,
        )
        model_equal(sm.load(sm.location("s3://work/cluster-model")), fitted[0])
        cli(
            env,
            "flag",
            "s3://data/events.zarr",
            "--model",
            "s3://work/model",
            "--output",
            "s3://work/cluster-flags.zarr",
            "--contamination",
            0.01,
            *at,
        )
    cli(
        env,
        "flag",
        local / "events.zarr",
        "--model",
        local / "model",
        "--output",
        local / "flags-ref.zarr",
        "--contamination",
        0.01,
    )
    assert object_bytes(fs, "s3://work/cluster-flags.zarr") == local_bytes(local / "flags-ref.zarr")


# --------------------------------------------------------------------------- Parquet
def test_parquet_input_fits_and_scores_like_zarr(fitted, local, env, fs):
    cli(
        env,
        "fit",
        local / "events.parquet",
        "--model",
        local / "pq-model",
        "--contamination",
        0.01,
        *FIT,
    )
    model_equal(sm.load(local / "pq-model"), fitted[0], rtol=1e-9)
    cli(
        env,
        "fit",
        "s3://data/events.parquet",
        "--model",
        "s3://work/pq-model",
        "--contamination",
        0.01,
        "--columns",
        ",".join(f"f{j}" for j in range(D)),
        *FIT,
    )
    model_equal(sm.load(sm.location("s3://work/pq-model", **_opts(env))), fitted[0])
    cli(
        env,
        "score",
        "s3://data/events.parquet",
        "--model",
        "s3://work/model",
        "--output",
        "s3://work/pq-scores.zarr",
    )
    scores = zarr.open_group(
        store=sm.location("s3://work/pq-scores.zarr", **_opts(env)).zarr_store(), mode="r"
    )
    reference = zarr.open_group(str(local / "score.zarr"), mode="r")
    np.testing.assert_array_equal(scores["log_likelihood"][:], reference["log_likelihood"][:])
    np.testing.assert_array_equal(scores["component"][:], reference["component"][:])


def test_parquet_files_appended_to_a_dataset_are_scored_incrementally(fitted, local, env, tmp_path):
    ds = tmp_path / "growing.parquet"
    ds.mkdir()
    X = np.asarray(zarr.open_group(str(local / "events.zarr"), mode="r")["X"][:])
    cols = {f"f{j}": X[:50_000, j] for j in range(D)}
    pq.write_table(pa.table(cols), ds / "2026-11-01.parquet", row_group_size=10_000)
    cli(env, "score", ds, "--model", local / "model", "--output", tmp_path / "s.zarr")
    cols = {f"f{j}": X[50_000:80_000, j] for j in range(D)}
    pq.write_table(pa.table(cols), ds / "2026-11-02.parquet", row_group_size=10_000)
    _, out, _ = cli(
        env,
        "score",
        ds,
        "--model",
        local / "model",
        "--output",
        tmp_path / "s.zarr",
        "--incremental",
        "--json",
    )
    assert json.loads(out)["rows"] == 80_000
    full = np.asarray(zarr.open_group(str(local / "score.zarr"), mode="r")["log_likelihood"][:])
    grown = np.asarray(zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["log_likelihood"][:])
    np.testing.assert_array_equal(grown, full[:80_000])
    # a file inserted before the others moves rows: refused, not misaligned
    pq.write_table(pa.table(cols), ds / "2026-10-31.parquet", row_group_size=10_000)
    code, _, err = cli(
        env,
        "score",
        ds,
        "--model",
        local / "model",
        "--output",
        tmp_path / "s.zarr",
        "--incremental",
        check=False,
    )
    assert_one_line_error(code, err, 1, "files changed")


def test_parquet_nulls_follow_on_invalid(local, env, tmp_path):
    f = tmp_path / "nulls.parquet"
    rng = np.random.default_rng(0)
    a = pa.array(rng.normal(size=1000))
    b = pa.array([None if i == 321 else float(i % 7) for i in range(1000)], pa.float64())
    c = pa.array([None if i == 654 else i % 5 for i in range(1000)], pa.int32())
    pq.write_table(pa.table({"a": a, "b": b, "c": c, "name": ["n"] * 1000}), f)
    model = tmp_path / "m"
    sm.GaussianMixture.from_parameters([1.0], [[0.0, 3.0, 2.0]], [np.eye(3) * 4]).save(model)
    code, _, err = cli(
        env, "score", f, "--model", model, "--output", tmp_path / "o.zarr", check=False
    )
    assert_one_line_error(code, err, 3, "row 321")
    assert not (tmp_path / "o.zarr").exists()
    cli(env, "score", f, "--model", model, "--output", tmp_path / "o.zarr", "--on-invalid", "skip")
    comp = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")["component"][:]
    assert list(np.flatnonzero(comp == -1)) == [321, 654]
    code, _, err = cli(
        env,
        "score",
        f,
        "--model",
        model,
        "--output",
        tmp_path / "p.zarr",
        "--columns",
        "a,name,c",
        check=False,
    )
    assert_one_line_error(code, err, 3, "Column 'name'")
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({"who": ["a", "b"], "when": ["x", "y"]}), text)
    code, _, err = cli(
        env, "fit", text, "--model", tmp_path / "m2", "--n-components", 1, check=False
    )
    assert_one_line_error(code, err, 3, "no numeric column")
    assert str(text) in err


# -------------------------------------------------------------------------- bad input
def _opts(env):
    return {
        "key": env["AWS_ACCESS_KEY_ID"],
        "secret": env["AWS_SECRET_ACCESS_KEY"],
        "endpoint_url": env["AWS_ENDPOINT_URL"],
    }


def test_missing_bucket_or_key_is_one_line_and_writes_nothing(fitted, env, fs):
    before = sorted(fs.find("work"))
    code, _, err = cli(
        env,
        "score",
        "s3://data/events.zarr",
        "--model",
        "s3://work/model",
        "--output",
        "s3://no-such-bucket/s.zarr",
        check=False,
    )
    assert_one_line_error(code, err, 3, "bucket 's3://no-such-bucket' does not exist")
    code, _, err = cli(
        env,
        "fit",
        "s3://data/nothing-here.zarr",
        "--model",
        "s3://work/x",
        "--n-components",
        2,
        check=False,
    )
    assert_one_line_error(code, err, 3, "s3://data/nothing-here.zarr")
    code, _, err = cli(
        env,
        "score",
        "s3://data/events.zarr",
        "--model",
        "s3://work/no-model",
        "--output",
        "s3://work/s.zarr",
        check=False,
    )
    assert_one_line_error(code, err, 3, "s3://work/no-model")
    assert sorted(fs.find("work")) == before


def test_wrong_credentials_unreachable_endpoint_and_missing_packages(fitted, env, s3, fs):
    before = sorted(fs.find("work"))
    wrong = {**env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-do-not-print"}
    code, out, err = cli(
        wrong,
        "score",
        "s3://data/events.zarr",
        "--model",
        "s3://work/model",
        "--output",
        "s3://work/w.zarr",
        check=False,
    )
    assert_one_line_error(code, err, 1, "denied")
    assert "wrong-secret-do-not-print" not in err + out
    opts = json.dumps({"key": "AKIAIDONOTEXIST", "secret": "another-secret-value"})
    code, out, err = cli({}, "info", "s3://work/model", "--storage-options", opts, check=False)
    assert_one_line_error(code, err, 1, "s3://work/model")
    assert "another-secret-value" not in err + out
    code, _, err = cli(
        {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "info", "s3://work/model", check=False
    )
    assert_one_line_error(code, err, 1, "s3://work/model")
    code, _, err = cli(
        env, "fit", "gs://bucket/x.zarr", "--model", "m", "--n-components", 2, check=False
    )
    assert_one_line_error(code, err, 1, "pip install 'streammix[gcs]'")
    code, _, err = cli(
        env,
        "fit",
        "s3://data/events.zarr",
        "--model",
        "s3://work/m",
        "--n-components",
        2,
        "--storage-options",
        "{not json",
        check=False,
    )
    assert_one_line_error(code, err, 2, "JSON object")
    assert sorted(fs.find("work")) == before


def test_credentials_never_reach_files_or_logs(local, env, s3, fs):
    secret_env = {
        k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    opts = json.dumps({"s3": _opts(env)})
    _, out, err = cli(
        secret_env,
        "--log-format",
        "json",
        "-v",
        "fit",
        "s3://data/events.zarr",
        "--model",
        "s3://work/opts-model",
        "--storage-options",
        opts,
        "--contamination",
        0.01,
        "--n-components",
        2,
        "--max-iter",
        3,
        "--json",
    )
    _, out2, err2 = cli(
        secret_env,
        "flag",
        "s3://data/events.zarr",
        "--model",
        "s3://work/opts-model",
        "--output",
        "s3://work/opts-flags.zarr",
        "--storage-options",
        opts,
        "--json",
    )
    for text in (out, err, out2, err2):
        assert s3.secret not in text
    for path in fs.find("work"):
        assert s3.secret.encode() not in fs.cat_file(path), path


def test_a_follower_on_s3_writes_what_it_writes_locally(fitted, local, env, s3, fs, tmp_path):
    follow = ["--threshold", -20, "--once", "--batch-rows", 4 * CHUNK]
    cli(env, "stream", "s3://data/events.zarr", "--model", "s3://work/model",
        "--output", "s3://work/live.zarr", *follow)  # fmt: skip
    cli(env, "stream", local / "events.zarr", "--model", local / "model",
        "--output", tmp_path / "live.zarr", *follow)  # fmt: skip
    remote_out = zarr.open_group(store=remote(s3, "s3://work/live.zarr").zarr_store(), mode="r")
    local_out = zarr.open_group(str(tmp_path / "live.zarr"), mode="r")
    for name in ("log_likelihood", "flag"):
        np.testing.assert_array_equal(remote_out[name][:], local_out[name][:])
    a = sm.load(remote(s3, "s3://work/live.zarr/_stream/current"))
    b = sm.load(tmp_path / "live.zarr" / "_stream" / "current")
    assert a.consumed_["rows"] == b.consumed_["rows"] == ROWS
    np.testing.assert_array_equal(a.means_, b.means_)
