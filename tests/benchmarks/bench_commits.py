"""Committing job outputs on an object store: streammix's done-markers against Icechunk.

Run by hand (``python tests/benchmarks/bench_commits.py``; the Icechunk half needs
``pip install icechunk``); not collected by the test suite. Starts an S3 server on
loopback (moto's server mode, as the tests do) behind a proxy that counts
requests, then writes the same float64 column chunk by chunk, each chunk
durable on its own (what makes a killed job resumable):

* streammix: the output's arrays opened once, then per chunk one write of its rows
  and one of its progress mark (:class:`streammix.io.outputs.OutputArrays`);
* Icechunk: a writable session per chunk, the chunk written, the session committed.

Prints milliseconds and requests per committed chunk, and the requests of one read
pass over all chunks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

import streammix as sm
from streammix.io.outputs import ArraySpec, RowOutput

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3_server import CountingProxy, S3Server


def ours(s3: S3Server, proxy: CountingProxy, X: np.ndarray, rows: int) -> tuple[float, float, int]:
    loc = sm.location(
        "s3://bench/out.zarr", key=s3.key_id, secret=s3.secret, endpoint_url=proxy.url
    )
    out, _ = RowOutput.prepare(loc, [ArraySpec("v", "float64")], {"kind": "bench"}, len(X), rows)
    arrays = out.arrays()
    n = len(X) // rows
    proxy.reset()
    t = time.perf_counter()
    for c in range(n):
        arrays.write("v", c, c * rows, X[c * rows : (c + 1) * rows])
    seconds = (time.perf_counter() - t) / n
    writes = sum(proxy.counts.values()) / n
    proxy.reset()
    assert np.array_equal(arrays.read("v", 0, len(X)), X)
    return seconds, writes, sum(proxy.counts.values())


def icechunk_commits(
    s3: S3Server, proxy: CountingProxy, X: np.ndarray, rows: int
) -> tuple[float, float, int]:
    import icechunk

    storage = icechunk.s3_storage(
        bucket="bench",
        prefix="icechunk",
        endpoint_url=proxy.url,
        allow_http=True,
        access_key_id=s3.key_id,
        secret_access_key=s3.secret,
        region="us-east-1",
        force_path_style=True,
    )
    repo = icechunk.Repository.create(storage)
    session = repo.writable_session("main")
    zarr.group(store=session.store).create_array(
        "v", shape=X.shape, chunks=(rows,), dtype="f8", fill_value=np.nan
    )
    session.commit("create")
    n = len(X) // rows
    proxy.reset()
    t = time.perf_counter()
    for c in range(n):
        session = repo.writable_session("main")
        arr = zarr.open_array(store=session.store, path="v", mode="r+")
        arr[c * rows : (c + 1) * rows] = X[c * rows : (c + 1) * rows]
        session.commit(f"chunk {c}")
    seconds = (time.perf_counter() - t) / n
    writes = sum(proxy.counts.values()) / n
    proxy.reset()
    session = repo.readonly_session("main")
    assert np.array_equal(zarr.open_array(store=session.store, path="v", mode="r")[:], X)
    return seconds, writes, sum(proxy.counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=15_000, help="rows per chunk")
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    X = np.random.default_rng(0).normal(size=args.rows * args.chunks)
    print(f"{args.chunks} chunks of {args.rows} float64 rows, S3 server on loopback")
    with tempfile.TemporaryDirectory() as tmp, S3Server(Path(tmp)) as s3:
        s3.filesystem().mkdir("bench")
        with CountingProxy(s3.url) as proxy:
            results = {"streammix done-markers": ours(s3, proxy, X, args.rows)}
            try:
                results["icechunk commit per chunk"] = icechunk_commits(s3, proxy, X, args.rows)
            except ImportError:
                print("icechunk is not installed: pip install icechunk")
    for name, (seconds, writes, reads) in results.items():
        print(
            f"{name:27s} {seconds * 1000:7.1f} ms and {writes:4.1f} requests per committed "
            f"chunk; {reads} requests to read {args.chunks} chunks"
        )


if __name__ == "__main__":
    main()
