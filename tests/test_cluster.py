"""Jobs on a real multi-process Dask cluster: same results as the embedded default,
surviving killed workers and clients, and TLS."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.core.families import get_family
from streammix.datasets import generate

from .dask_cluster import DaskCluster
from .test_cli import EXE, assert_one_line_error, run
from .test_jobs import tree_digest

pytestmark = pytest.mark.cluster

FIT = ["--n-components", 8, "--max-iter", 40, "--tol", 0, "--seed", 0]


class Background:
    """A CLI process whose stderr lines are collected while it runs."""

    def __init__(self, *args) -> None:
        self.proc = subprocess.Popen(
            [EXE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, predicate, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError("process ended early:\n" + "".join(self.lines))
            time.sleep(0.05)
        raise AssertionError("timed out:\n" + "".join(self.lines))

    def seen(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return code


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster-data") / "x.zarr"
    generate(path, 1_000_000, n_features=8, n_components=8, chunk_rows=25_000, seed=4)
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with DaskCluster(tmp_path_factory.mktemp("dask"), n_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def local_fit(data, tmp_path_factory) -> sm.GaussianMixture:
    model = tmp_path_factory.mktemp("local") / "model"
    run("fit", data, "--model", model, *FIT)
    return sm.load(model)


def assert_same_model(a, b):
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=0)
    assert a.n_iter_ == b.n_iter_ == 40


def test_fit_on_the_cluster_equals_the_embedded_fit(data, cluster, local_fit, tmp_path):
    run("fit", data, "--model", tmp_path / "m", "--scheduler-address", cluster.address, *FIT)
    assert_same_model(sm.load(tmp_path / "m"), local_fit)


def test_score_and_flag_do_not_depend_on_the_cluster(data, cluster, local_fit, tmp_path):
    local_fit.save(tmp_path / "m")
    for where, extra in (("local", []), ("remote", ["--scheduler-address", cluster.address])):
        run(
            "score",
            data,
            "--model",
            tmp_path / "m",
            "--output",
            tmp_path / f"s-{where}.zarr",
            *extra,
        )
        run(
            "flag",
            data,
            "--model",
            tmp_path / "m",
            "--output",
            tmp_path / f"f-{where}.zarr",
            "--contamination",
            0.01,
            *extra,
        )
    assert tree_digest(tmp_path / "s-local.zarr") == tree_digest(tmp_path / "s-remote.zarr")
    assert tree_digest(tmp_path / "f-local.zarr") == tree_digest(tmp_path / "f-remote.zarr")


def test_fit_survives_a_worker_killed_mid_fit(data, cluster, local_fit, tmp_path):
    job = Background(
        "fit", data, "--model", tmp_path / "m", "--scheduler-address", cluster.address, *FIT
    )
    job.wait_for(lambda: job.seen("iteration   10"))
    os.kill(cluster.worker_pids()[0], signal.SIGKILL)
    assert job.finish() == 0, "".join(job.lines)
    assert_same_model(sm.load(tmp_path / "m"), local_fit)
    with cluster.client() as c:  # the nanny restarted the worker
        c.wait_for_workers(2, timeout=60)


def test_fit_killed_with_its_client_resumes_from_the_checkpoint(data, cluster, local_fit, tmp_path):
    args = [
        "fit",
        data,
        "--model",
        tmp_path / "m",
        "--checkpoint",
        tmp_path / "ckpt",
        "--scheduler-address",
        cluster.address,
        *FIT,
    ]
    job = Background(*args)
    job.wait_for(lambda: job.seen("iteration   15"))
    job.proc.send_signal(signal.SIGKILL)
    job.finish()
    assert (tmp_path / "ckpt").exists() and not (tmp_path / "m").exists()
    _, _, err = run(*args, "--resume")
    assert "resuming from iteration" in err
    assert_same_model(sm.load(tmp_path / "m"), local_fit)


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory) -> Path:
    """A model with many components, so that scoring a chunk takes a while."""
    rng = np.random.default_rng(0)
    k, d = 1500, 8
    path = tmp_path_factory.mktemp("slow") / "model"
    cov = np.broadcast_to(np.eye(d), (k, d, d)).copy()
    sm.GaussianMixture.from_parameters(
        np.full(k, 1.0 / k), rng.normal(0, 4, (k, d)), cov, covariance_type=get_family("full").name
    ).save(path)
    return path


@pytest.fixture(scope="module")
def slow_reference(data, slow_model, tmp_path_factory) -> str:
    """The uninterrupted score of ``data`` with ``slow_model`` (embedded cluster)."""
    out = tmp_path_factory.mktemp("slow-ref") / "ref.zarr"
    run("score", data, "--model", slow_model, "--output", out)
    return tree_digest(out)


def _done_chunks(out: Path) -> int:
    try:
        return int(np.count_nonzero(zarr.open_group(str(out), mode="r")["_done/log_likelihood"][:]))
    except Exception:
        return 0


def test_score_survives_a_worker_killed_mid_job(
    data, cluster, slow_model, slow_reference, tmp_path
):
    out = tmp_path / "s.zarr"
    job = Background(
        "score",
        data,
        "--model",
        slow_model,
        "--output",
        out,
        "--scheduler-address",
        cluster.address,
    )
    job.wait_for(lambda: _done_chunks(out) >= 2)
    os.kill(cluster.worker_pids()[1], signal.SIGKILL)
    assert job.finish() == 0, "".join(job.lines)
    assert tree_digest(out) == slow_reference
    with cluster.client() as c:
        c.wait_for_workers(2, timeout=60)


def test_score_job_killed_mid_run_is_finished_by_a_rerun(
    data, cluster, slow_model, slow_reference, tmp_path
):
    out = tmp_path / "s.zarr"
    args = [
        "score",
        data,
        "--model",
        slow_model,
        "--output",
        out,
        "--scheduler-address",
        cluster.address,
    ]
    job = Background(*args)
    job.wait_for(lambda: _done_chunks(out) >= 2)
    job.proc.send_signal(signal.SIGKILL)
    job.finish()
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["complete"] is False
    assert 2 <= _done_chunks(out) < 40
    run(*args)
    assert tree_digest(out) == slow_reference


# ---------------------------------------------------------------------- TLS
def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=streammix-test-ca",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    return {"ca": str(d / "ca.pem"), "cert": str(d / "node.pem"), "key": str(d / "node.key")}


def test_tls_only_scheduler(tmp_path, certificates):
    small = tmp_path / "small.zarr"
    generate(small, 20_000, n_features=3, n_components=2, chunk_rows=5_000)
    with DaskCluster(tmp_path / "tls-cluster", n_workers=1, tls=certificates) as c:
        assert c.address.startswith("tls://")
        tls = [
            "--tls-ca-file",
            certificates["ca"],
            "--tls-cert",
            certificates["cert"],
            "--tls-key",
            certificates["key"],
        ]
        run(
            "fit",
            small,
            "--model",
            tmp_path / "m",
            "--n-components",
            2,
            "--scheduler-address",
            c.address,
            *tls,
        )
        assert sm.load(tmp_path / "m").converged_
        code, _, err = run(
            "fit",
            small,
            "--model",
            tmp_path / "m2",
            "--n-components",
            2,
            "--scheduler-address",
            c.address,
            check=False,
        )
        assert_one_line_error(code, err, 1, "Cannot connect to the Dask scheduler")
        assert not (tmp_path / "m2").exists()
