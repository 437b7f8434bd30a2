"""Seconds per EM iteration reading Zarr from an S3 server against a local path.

Run by hand (``python tests/benchmarks/bench_s3.py``); not collected by the test
suite. Starts an S3-compatible server on loopback (moto's server mode, with
authentication, as the tests do), writes the same Zarr array to a local
directory and to a bucket, and fits the same mixture from the same start on the
embedded local cluster reading either copy every iteration. Per-iteration time
is (time with ``max_iter=b``) minus (time with ``max_iter=a``), divided by
``b - a``; scikit-learn's GaussianMixture on the array in memory is measured in
the same run as the peer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import zarr
from sklearn.mixture import GaussianMixture as SklearnGM

import streammix as sm
from streammix.cluster import ClusterOptions, connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_em import make_data, start
from s3_server import S3Server


def per_iteration(fit, a: int, b: int, repeats: int) -> float:
    def timed(n: int) -> float:
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            fit(n)
            best = min(best, time.perf_counter() - t)
        return best

    return (timed(b) - timed(a)) / (b - a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    X = make_data(args.n, args.d, args.k)
    init = start(X, args.k, "full")
    print(
        f"N={args.n} D={args.d} K={args.k} full float64, chunks of {args.chunk_rows} rows "
        f"({X.nbytes / 1e6:.0f} MB), embedded local cluster"
    )
    with tempfile.TemporaryDirectory() as tmp, S3Server(Path(tmp) / "moto") as s3:
        fs = s3.filesystem()
        fs.mkdir("bench")
        local = str(Path(tmp) / "x.zarr")
        remote = sm.location(
            "s3://bench/x.zarr", key=s3.key_id, secret=s3.secret, endpoint_url=s3.url
        )
        for store in (local, remote.zarr_store(read_only=False)):
            arr = zarr.create_array(
                store, shape=X.shape, chunks=(args.chunk_rows, args.d), dtype="f8"
            )
            arr[:] = X

        def ours(source):
            def fit(n: int) -> None:
                sm.GaussianMixture(args.k, max_iter=n, tol=0, **init).fit(source)

            return fit

        def theirs(n: int) -> None:
            SklearnGM(args.k, max_iter=n, tol=0, **init).fit(X)

        with connect(ClusterOptions()):
            t_local = per_iteration(ours(local), 1, 3, args.repeats)
            t_s3 = per_iteration(ours(remote), 1, 3, args.repeats)
        t_sk = per_iteration(theirs, 1, 3, 1)
    print(f"scikit-learn (in memory)   {t_sk:8.3f} s/iteration")
    for label, t in (("local Zarr", t_local), ("Zarr on S3", t_s3)):
        print(f"streammix, {label:15s} {t:8.3f} s/iteration  ({t_sk / t:5.1f}x sklearn)")
    print(f"S3 / local                 {t_s3 / t_local:8.2f}")


if __name__ == "__main__":
    main()
