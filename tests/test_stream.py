"""update and stream: an online model that follows a growing input, exactly once.

Real processes throughout: the CLI as installed, a writer process appending chunks
while a follower runs, SIGKILL and SIGTERM sent to the follower."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.engine.data import ChunkedData
from streammix.jobs import stream_job

from .test_cli import EXE, assert_one_line_error, run
from .test_jobs import tree_digest

D, CHUNK = 3, 500


def rows(n: int, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """Two well-separated blobs (plus ``shift`` on every feature)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-4.0] * D, [4.0] * D])
    return centres[rng.integers(0, 2, n)] + rng.normal(size=(n, D)) + shift


def write_store(path: Path, X: np.ndarray) -> None:
    a = zarr.create_array(str(path), shape=(0, D), chunks=(CHUNK, D), dtype="f8")
    a.append(X)


def append(path: Path, X: np.ndarray) -> None:
    zarr.open_array(str(path), mode="r+").append(X)


def start_model(path: Path) -> None:
    """An online model fitted elsewhere (it has consumed nothing of the followed store)."""
    est = sm.OnlineGaussianMixture(2, batch_size=1000, random_state=0).fit(rows(4000, seed=99))
    est.save(path)


# ------------------------------------------------------------------- update
@pytest.fixture
def fitted_online(tmp_path):
    X = rows(12 * CHUNK, seed=1)
    write_store(tmp_path / "d.zarr", X[: 6 * CHUNK])
    run("fit", tmp_path / "d.zarr", "--model", tmp_path / "m", "--method", "online",
        "--n-components", 2, "--seed", 0, "--n-workers", 1)  # fmt: skip
    return tmp_path, X


def test_update_learns_exactly_the_appended_rows_and_then_nothing(fitted_online):
    root, X = fitted_online
    before = sm.load(root / "m")
    assert before.consumed_["rows"] == 6 * CHUNK
    _, out, _ = run("update", root / "d.zarr", "--model", root / "m", "--json")
    assert json.loads(out)["updated"] is False  # nothing appended yet
    append(root / "d.zarr", X[6 * CHUNK :])
    _, out, _ = run("update", root / "d.zarr", "--model", root / "m", "--json")
    summary = json.loads(out)
    assert summary["rows_learned"] == 6 * CHUNK and summary["rows_consumed"] == 12 * CHUNK
    digest = tree_digest(root / "m")
    _, out, _ = run("update", root / "d.zarr", "--model", root / "m", "--json")
    assert json.loads(out)["updated"] is False
    assert tree_digest(root / "m") == digest  # the second update changes nothing

    # the same as partial_fit by hand over the new rows, one update per chunk
    by_hand = before
    by_hand.partial_fit(ChunkedData.from_numpy(X[6 * CHUNK :], CHUNK))
    after = sm.load(root / "m")
    np.testing.assert_array_equal(after.means_, by_hand.means_)
    np.testing.assert_array_equal(after.covariances_, by_hand.covariances_)
    assert after.n_rows_seen_ == 12 * CHUNK


def test_update_of_a_published_model_writes_a_new_version(fitted_online):
    root, X = fitted_online
    run("publish", root / "m", "--target", root / "current")
    old = (root / "current").read_text()
    append(root / "d.zarr", X[6 * CHUNK :])
    run("update", root / "d.zarr", "--model", root / "current")
    assert (root / "current").read_text() != old
    assert sm.load(root / "current").consumed_["rows"] == 12 * CHUNK
    assert len(list((root / "versions").iterdir())) == 2  # the old version is still whole


def test_update_killed_at_any_point_then_rerun_equals_an_uninterrupted_update(tmp_path):
    X = rows(40 * CHUNK, seed=2)
    store = tmp_path / "d.zarr"
    write_store(store, X[: 4 * CHUNK])
    run("fit", store, "--model", tmp_path / "fitted", "--method", "online",
        "--n-components", 2, "--seed", 0, "--n-workers", 1)  # fmt: skip
    append(store, X[4 * CHUNK :])
    shutil.copytree(tmp_path / "fitted", tmp_path / "reference")
    run("update", store, "--model", tmp_path / "reference")  # uninterrupted
    reference = tree_digest(tmp_path / "reference")
    for delay in (0.2, 0.6, 1.2):
        dest = tmp_path / f"killed-{delay}"
        shutil.copytree(tmp_path / "fitted", dest)
        proc = subprocess.Popen([EXE, "update", str(store), "--model", str(dest)])
        time.sleep(delay)
        proc.kill()
        proc.wait()
        run("update", store, "--model", dest)
        assert tree_digest(dest) == reference


@pytest.mark.parametrize("change", ["shrunk", "replaced"])
def test_update_and_stream_refuse_an_input_that_shrank_or_was_replaced(fitted_online, change):
    root, _ = fitted_online
    store = root / "d.zarr"
    arr = zarr.open_array(str(store), mode="r+")
    if change == "shrunk":
        arr.resize((4 * CHUNK, D))
        what = "shrank or was replaced"
    else:
        arr[5 * CHUNK + 3] = 100.0  # a row the model has learned
        what = "was replaced or rewritten"
    code, _, err = run("update", store, "--model", root / "m", check=False)
    assert_one_line_error(code, err, 3, what)
    code, _, err = run("stream", store, "--model", root / "m", "--output", root / "o.zarr",
                       "--once", "--threshold", -10, check=False)  # fmt: skip
    assert_one_line_error(code, err, 3, what)


# ------------------------------------------------------------------- stream
WRITER = """
import sys, time
import numpy as np, zarr
X = np.load(sys.argv[2])
a = zarr.open_array(sys.argv[1], mode="r+")
step = int(sys.argv[3])
for start in range(a.shape[0], X.shape[0], step):
    a.append(X[start:start + step])
    time.sleep(float(sys.argv[4]))
"""


def follower(root: Path, out: str, *extra) -> list:
    return [EXE, "stream", str(root / "d.zarr"), "--model", str(root / "start"),
            "--output", str(root / out), "--threshold", "-9", "--interval", "0.05",
            *map(str, extra)]  # fmt: skip


def wait_for_batches(path: Path, at_least: int, proc: subprocess.Popen, limit: float = 120):
    marks = path / "_done" / "flag" / "c"
    deadline = time.monotonic() + limit
    while not (marks.is_dir() and len(list(marks.iterdir())) >= at_least):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no batch processed in time"
        time.sleep(0.02)


def test_a_follower_killed_mid_stream_and_restarted_equals_an_uninterrupted_one(tmp_path):
    final = rows(60 * CHUNK, seed=3)
    final[7 * CHUNK + 11] = 40.0  # an anomaly
    np.save(tmp_path / "final.npy", final)
    write_store(tmp_path / "d.zarr", final[: 2 * CHUNK])
    start_model(tmp_path / "start")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(tmp_path / "d.zarr"),
            str(tmp_path / "final.npy"),
            str(CHUNK),
            "0.05",
        ]
    )
    try:
        for at_least in (3, 12, 25):
            proc = subprocess.Popen(follower(tmp_path, "a.zarr"), stderr=subprocess.PIPE, text=True)
            wait_for_batches(tmp_path / "a.zarr", at_least, proc)
            proc.kill()  # SIGKILL, at whatever point of a batch it is
            proc.wait()
    finally:
        assert writer.wait(timeout=120) == 0
    run(*follower(tmp_path, "a.zarr", "--once")[1:])
    # one follower, uninterrupted, over the final store
    run(*follower(tmp_path, "b.zarr", "--once")[1:])
    a, b = zarr.open_group(str(tmp_path / "a.zarr")), zarr.open_group(str(tmp_path / "b.zarr"))
    assert a["flag"].shape == (60 * CHUNK,)
    assert a["flag"][7 * CHUNK + 11] == 1
    np.testing.assert_array_equal(a["log_likelihood"][:], b["log_likelihood"][:])
    assert tree_digest(tmp_path / "a.zarr") == tree_digest(tmp_path / "b.zarr")
    ma, mb = (
        sm.load(tmp_path / "a.zarr" / "_stream" / "current"),
        sm.load(tmp_path / "b.zarr" / "_stream" / "current"),
    )
    assert ma.consumed_ == mb.consumed_ and ma.consumed_["rows"] == 60 * CHUNK
    np.testing.assert_array_equal(ma.means_, mb.means_)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_stops_after_the_batch_and_metrics_are_served(tmp_path):
    write_store(tmp_path / "d.zarr", rows(20 * CHUNK, seed=4))
    start_model(tmp_path / "start")
    port = free_port()
    proc = subprocess.Popen(
        follower(tmp_path, "a.zarr", "--metrics-port", port, "--batch-rows", 2 * CHUNK),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    text = ""
    while "streammix_stream_batches_total" not in text:
        assert proc.poll() is None and time.monotonic() < deadline
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        except OSError:
            time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped: stopped by SIGTERM" in out
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines and {"batch", "rows", "mean_log_likelihood", "flagged_share", "step_size",
                      "seconds"} <= set(lines[0])  # fmt: skip
    assert "# TYPE streammix_stream_rows_total counter" in text
    # what it left is a committed state: the rest follows on
    run(*follower(tmp_path, "a.zarr", "--once", "--batch-rows", 2 * CHUNK)[1:])
    run(*follower(tmp_path, "b.zarr", "--once", "--batch-rows", 2 * CHUNK)[1:])
    assert tree_digest(tmp_path / "a.zarr") == tree_digest(tmp_path / "b.zarr")


def flagged_shares(tmp_path: Path, name: str, threshold: float, **options) -> list[float]:
    shares: list[float] = []
    stream_job.stream(
        tmp_path / "d.zarr",
        tmp_path / "mature",
        tmp_path / name,
        once=True,
        threshold=threshold,
        on_batch=lambda r: shares.append(r["flagged_share"]),
        **options,
    )
    return shares


def test_drift_spikes_the_flagged_share_which_returns_with_forgetting_only(tmp_path):
    before = rows(20 * CHUNK, seed=5)
    after = rows(40 * CHUNK, seed=6, shift=2.5)  # the means move halfway
    write_store(tmp_path / "d.zarr", np.concatenate([before, after]))
    # a model that has learned long (200 updates, steps 1/t): it moves slowly by itself
    mature = sm.OnlineGaussianMixture(2, batch_size=1000, learning_decay=1.0, random_state=0)
    mature.fit(rows(200_000, seed=99)).save(tmp_path / "mature")
    contamination = 0.01
    threshold = float(np.quantile(mature.score_samples(rows(100_000, seed=98)), contamination))
    forgetting = flagged_shares(tmp_path, "f.zarr", threshold, half_life=3)
    plain = flagged_shares(tmp_path, "p.zarr", threshold)
    assert len(forgetting) == len(plain) == 60
    assert np.mean(forgetting[:20]) < 3 * contamination  # calm before the move
    assert forgetting[20] > 0.5 and plain[20] > 0.5  # the move is flagged at once
    assert np.mean(forgetting[-20:]) < 3 * contamination  # then learned, with forgetting
    assert np.mean(plain[-20:]) > 5 * np.mean(forgetting[-20:])  # without: still flagged


def test_stream_and_update_are_pipeline_steps_and_plot_draws_a_stream(tmp_path):
    write_store(tmp_path / "d.zarr", rows(6 * CHUNK, seed=7))
    start_model(tmp_path / "start")
    (tmp_path / "p.toml").write_text(
        "[[step]]\n"
        'job = "stream"\ndata = "d.zarr"\nmodel = "start"\noutput = "live.zarr"\n'
        "once = true\nthreshold = -9.0\nhalf_life = 10\n"
        "[[step]]\n"
        'job = "update"\ndata = "d.zarr"\nmodel = "live.zarr/_stream/current"\n'
    )
    run("run", tmp_path / "p.toml", cwd=tmp_path)
    model = sm.load(tmp_path / "live.zarr" / "_stream" / "current")
    assert model.consumed_["rows"] == 6 * CHUNK and len(model.stream_history_["batch"]) == 6
    assert model.forget == pytest.approx(1 - 2 ** (-1 / 10))
    pytest.importorskip("matplotlib")
    run("plot", tmp_path / "live.zarr" / "_stream" / "current", "--output", tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_a_parquet_dataset_is_followed_as_files_are_added(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X = rows(9 * CHUNK, seed=9)
    data = tmp_path / "events.parquet"
    data.mkdir()

    def add(name: str, part: np.ndarray) -> None:
        table = pa.table({f"f{j}": part[:, j] for j in range(D)})
        pq.write_table(table, data / name, row_group_size=CHUNK)

    start_model(tmp_path / "start")
    follow = ["stream", data, "--model", tmp_path / "start", "--threshold", -9,
              "--batch-rows", CHUNK, "--once", "--json"]  # fmt: skip
    add("part-0.parquet", X[: 4 * CHUNK])
    _, out, _ = run(*follow, "--output", tmp_path / "a.zarr")
    assert json.loads(out)["rows_consumed"] == 4 * CHUNK
    add("part-1.parquet", X[4 * CHUNK :])
    _, out, _ = run(*follow, "--output", tmp_path / "a.zarr")
    assert json.loads(out)["batches"] == 5 and json.loads(out)["rows_consumed"] == 9 * CHUNK
    run(*follow, "--output", tmp_path / "b.zarr")  # one follower over the final dataset
    assert tree_digest(tmp_path / "a.zarr") == tree_digest(tmp_path / "b.zarr")
    # a file inserted before the others moves the rows the model has learned: refused
    add("part-00.parquet", X[:CHUNK])
    code, _, err = run(*follow, "--output", tmp_path / "a.zarr", check=False)
    assert_one_line_error(code, err, 3, "changed")
