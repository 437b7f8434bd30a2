"""Rows per second of the stream follower, and latency from a chunk's arrival to its flags.

Run by hand (``python tests/benchmarks/bench_stream.py``); not collected by the
test suite. Same data in one run (D=8, K=8, full covariances, float64, a local
Zarr store):

* ``streammix stream --once`` (the library function): each batch scored and
  flagged, written to the output, learned, and committed with the model;
* the same work driven by hand with the public API, nothing written:
  ``score_samples`` then ``partial_fit`` on each chunk;
* scikit-learn's GaussianMixture on the same rows: ``score_samples`` and one
  EM iteration (``warm_start``, ``max_iter=1``), the closest it has to
  score-then-learn (it has no partial fit).

Then the latency: a follower polling every ``--interval`` seconds runs as a
separate process; a writer appends one chunk at a time and the time until that
chunk's flags are stored is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import zarr
from sklearn.mixture import GaussianMixture as SklearnGM

import streammix as sm
from streammix.engine.data import ChunkedData
from streammix.jobs.stream_job import stream


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(k, d))
    return means[rng.integers(k, size=n)] + rng.normal(size=(n, d))


def best_of(repeats: int, fn) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--chunk-rows", type=int, default=250_000)
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--components", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    n, d, k, c = args.rows, args.features, args.components, args.chunk_rows
    root = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    try:
        X = make_data(n, d, k)
        zarr.create_array(str(root / "d.zarr"), data=X, chunks=(c, d))
        start = sm.OnlineGaussianMixture(k, random_state=0, batch_size=c)
        start.fit(make_data(200_000, d, k, seed=1))
        start.save(root / "start")
        threshold = float(np.quantile(start.score_samples(X[:c]), 0.01))
        print(f"rows {n:,}  D={d}  K={k}  full  float64  chunk {c:,} rows  cores {os.cpu_count()}")

        def follow() -> None:
            out = root / "out.zarr"
            if out.exists():
                shutil.rmtree(out)
            stream(root / "d.zarr", root / "start", out, once=True, threshold=threshold)

        def by_hand() -> None:
            est = sm.load(root / "start")
            for s in range(0, n, c):
                part = X[s : s + c]
                flags = est.score_samples(part) < threshold
                flags.sum()
                est.partial_fit(ChunkedData.from_numpy(part, c))

        sk = SklearnGM(
            k,
            covariance_type="full",
            weights_init=start.weights_,
            means_init=start.means_,
            precisions_init=start.precisions_,
            max_iter=1,
            warm_start=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk.fit(X[:c])

            def sklearn_score_and_iteration() -> None:
                sk.score_samples(X)
                sk.fit(X)

        t_follow = best_of(args.repeats, follow)
        t_hand = best_of(args.repeats, by_hand)
        t_sk = best_of(args.repeats, sklearn_score_and_iteration)
        print(f"{'':38s}{'seconds':>10s}{'rows/s':>14s}{'vs follower':>13s}")
        for name, t in (
            ("streammix stream (score, flag, learn)", t_follow),
            ("score_samples + partial_fit by hand", t_hand),
            ("scikit-learn score_samples + 1 EM it", t_sk),
        ):
            print(f"{name:38s}{t:10.3f}{n / t:14,.0f}{t / t_follow:12.2f}x")
        latency(root, X[:c], threshold, args.interval)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def latency(root: Path, chunk: np.ndarray, threshold: float, interval: float) -> None:
    """Seconds from a chunk's append to its flags, with a follower polling every ``interval``."""
    c, d = chunk.shape
    store, out, log = root / "live.zarr", root / "live-out.zarr", root / "follower.log"
    zarr.create_array(str(store), shape=(0, d), chunks=(c, d), dtype="f8")
    exe = str(Path(sys.executable).parent / "streammix")
    waits = []
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [
                exe,
                "stream",
                str(store),
                "--model",
                str(root / "start"),
                "--output",
                str(out),
                "--threshold",
                str(threshold),
                "--interval",
                str(interval),
            ],
            stderr=err,
        )
        try:
            arr = zarr.open_array(str(store), mode="r+")
            for i in range(5):
                time.sleep(interval * (0.37 + 0.11 * i))  # arrivals at varied points of a poll
                t = time.perf_counter()
                arr.append(chunk)
                mark = out / "_done" / "flag" / "c" / str(i)
                while not mark.exists():
                    if proc.poll() is not None:
                        raise RuntimeError(f"the follower stopped; see {log}")
                    time.sleep(0.002)
                waits.append(time.perf_counter() - t)
        finally:
            proc.terminate()
            proc.wait()
    seconds = [json.loads(line)["seconds"] for line in log.read_text().splitlines()
               if line.startswith("{")]  # fmt: skip
    print(
        f"latency, append to flags stored (polling every {interval} s), {len(waits)} chunks: "
        f"median {np.median(waits):.3f} s, max {np.max(waits):.3f} s; a batch's processing "
        f"(score, write, learn, commit): median {np.median(seconds):.3f} s; "
        f"bound interval + processing = {interval + np.max(seconds):.3f} s"
    )


if __name__ == "__main__":
    main()
