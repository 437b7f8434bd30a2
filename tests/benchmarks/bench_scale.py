"""Scaling of batch EM over a local Dask cluster of W single-threaded workers.

Run by hand (``python tests/benchmarks/bench_scale.py``); not collected by the
test suite. It runs unchanged on any machine: W goes 1, 2, 4, ... up to the
cores (``--workers`` to choose). In one run it prints, for the same data:

* strong scaling (the same rows on W workers) and weak scaling (``--rows-per-worker``
  rows per worker): seconds per EM iteration, parallel efficiency
  (``t1 / (W tW)`` strong, ``t1 / tW`` weak), tasks per iteration and the
  first-iteration overhead on a warm cluster (from the call to ``fit`` to the
  end of the first iteration, less one iteration);
* at W = 2 (or the largest W below it): seconds per iteration with the data in
  ``--few`` and in ``--many`` chunks, and their ratio;
* at the same W: seconds of an online EM epoch over the same two stores (one
  update per ``rows / few`` rows) and their ratio;
* the ratio of ``cache="memory"`` to re-reading every iteration;
* scikit-learn's ``GaussianMixture`` seconds per iteration on the same rows in
  memory (all cores), and the ratio.

Every fit starts from the same given parameters (no initialisation pass) with
``tol=0``; seconds per iteration are the median of the per-iteration times a fit
reports, first iteration excluded.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import zarr

import streammix as sm
from streammix.cluster import ClusterOptions, connect
from streammix.engine.batch_em import estep_chunk
from streammix.engine.data import ChunkedData
from streammix.engine.init import params_frame
from streammix.io.inputs import as_chunked


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(k, d))
    labels = rng.integers(k, size=n)
    return means[labels] + rng.standard_normal((n, d))


def write_store(root: str, X: np.ndarray, n_chunks: int) -> str:
    path = os.path.join(root, f"x-{X.shape[0]}-{n_chunks}.zarr")
    if not os.path.exists(path):
        rows = -(-X.shape[0] // n_chunks)
        z = zarr.create_array(path, shape=X.shape, chunks=(rows, X.shape[1]), dtype=X.dtype)
        z[:] = X
    return path


def start(X: np.ndarray, k: int) -> dict[str, Any]:
    d = X.shape[1]
    prec = np.broadcast_to(np.eye(d) / X.var(axis=0).mean(), (k, d, d)).copy()
    return {
        "weights_init": np.full(k, 1.0 / k),
        "means_init": X[:k].copy(),
        "precisions_init": prec,
    }


def timed_fit(path: str, init: dict[str, Any], k: int, iters: int, cache: Any = None) -> dict:
    """Per-iteration seconds (median, first excluded) and first-iteration overhead."""
    marks: list[float] = []
    t0 = time.perf_counter()
    gm = sm.GaussianMixture(k, max_iter=iters, tol=0.0, cache=cache, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(path, on_iteration=lambda r: marks.append(r.seconds))
    total = time.perf_counter() - t0
    per_it = statistics.median(marks[1:]) if len(marks) > 1 else marks[0]
    first = marks[0] + (total - sum(marks))  # set-up before it counts as first-iteration time
    return {"per_it": per_it, "overhead": first - per_it, "means": gm.means_}


def online_epoch(
    path: str, init: dict[str, Any], k: int, batch_rows: int, epochs: int = 3
) -> float:
    """Seconds of an ``OnlineGaussianMixture`` epoch (the fastest after the first; chunks
    in order, ``batch_rows`` rows per update)."""
    marks = [time.perf_counter()]
    online = sm.OnlineGaussianMixture(
        k, batch_size=batch_rows, max_epochs=epochs, shuffle=False, **init
    )
    online.fit(path, on_epoch=lambda epoch, model: marks.append(time.perf_counter()))
    return min(b - a for a, b in itertools.pairwise(marks[1:]))


def tasks_per_iteration(path: str, X: np.ndarray, init: dict[str, Any], k: int, w: int) -> int:
    """Tasks of one EM pass's graph, as a fit builds it for ``w`` worker threads."""
    data = as_chunked(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = sm.GaussianMixture(k, max_iter=1, **init).fit(X[:10_000]).params_
    prep = (p.prepare(params_frame(p, data.dtype), data.dtype),)
    graph = data.reduce_graph(estep_chunk, prep, None, threads=w).__dask_graph__()
    return len(dict(graph))


class UnreadReader:
    """Stands for an input of ``n_rows`` rows: only its shape and dtype are used."""

    def __init__(self, n_rows: int, n_features: int) -> None:
        self.shape, self.dtype, self.ndim = (n_rows, n_features), np.dtype("f8"), 2

    def __getitem__(self, key: Any) -> np.ndarray:
        raise RuntimeError("not read")


def graph_construction(n_chunks: int, chunk_rows: int, d: int, k: int, threads: int) -> tuple:
    """Seconds and peak bytes (tracemalloc) to describe the input and build one EM
    pass's graph over ``n_chunks`` chunks on the client, and its task count."""
    import tracemalloc

    X = make_data(5_000, d, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = sm.GaussianMixture(k, max_iter=2, random_state=0).fit(X).params_
    tracemalloc.start()
    t = time.perf_counter()
    data = ChunkedData.from_reader(
        UnreadReader(n_chunks * chunk_rows, d), chunk_rows, "unread", dtype="f8"
    )
    prep = (p.prepare(params_frame(p, data.dtype), data.dtype),)
    graph = data.reduce_graph(estep_chunk, prep, None, threads=threads)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, len(dict(graph.__dask_graph__()))


def sklearn_per_iteration(X: np.ndarray, init: dict[str, Any], k: int, iters: int) -> float:
    from sklearn.mixture import GaussianMixture as SklearnGM

    times = {}
    for n_iter in (2, iters):
        best = np.inf
        for _ in range(2):
            est = SklearnGM(k, max_iter=n_iter, tol=0.0, **init)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X)
            best = min(best, time.perf_counter() - t)
        times[n_iter] = best
    return (times[iters] - times[2]) / (iters - 2)


def worker_counts(cores: int) -> list[int]:
    out, w = [], 1
    while w < cores:
        out.append(w)
        w *= 2
    return [*out, cores]


def main() -> None:
    cores = os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the strong-scaling data")
    ap.add_argument("--rows-per-worker", type=int, default=500_000, help="weak scaling")
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--components", type=int, default=4)
    ap.add_argument("--chunks", type=int, default=100, help="chunks of the scaling data")
    ap.add_argument("--few", type=int, default=10, help="chunks, overhead comparison")
    ap.add_argument("--many", type=int, default=1000, help="chunks, overhead comparison")
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3, help="fits per figure (best kept)")
    ap.add_argument("--workers", type=str, default=None, help="e.g. 1,2,4 (default: to cores)")
    ap.add_argument("--dir", type=str, default=None, help="where the Zarr stores go")
    ap.add_argument("--graph-chunks", type=int, default=100_000, help="graph construction")
    args = ap.parse_args()

    ws = [int(w) for w in args.workers.split(",")] if args.workers else worker_counts(cores)
    k, d = args.components, args.features
    root = args.dir or tempfile.mkdtemp(prefix="bench-scale-")
    X = make_data(args.rows, d, k)
    init = start(X, k)
    strong = write_store(root, X, args.chunks)
    few, many = write_store(root, X, args.few), write_store(root, X, args.many)
    print(f"cores {cores}; data {args.rows} x {d}, K={k} full, float64 Zarr; store {root}")
    for threads in sorted({2, max(ws)}):
        sec, peak, n_tasks = graph_construction(args.graph_chunks, 10_000, 32, 16, threads)
        print(
            f"client-side graph of one pass over {args.graph_chunks} chunks (10,000 x 32 each, "
            f"K=16 full) for {threads} threads: {sec:.3f} s, peak {peak / 2**20:.1f} MiB "
            f"(tracemalloc), {n_tasks} tasks",
            flush=True,
        )

    def best(path: str, cache: Any = None) -> dict:
        runs = [timed_fit(path, init, k, args.iters, cache) for _ in range(args.repeats)]
        return min(runs, key=lambda r: r["per_it"])

    rows: list[tuple] = []
    extra: dict[str, Any] = {}
    t1_strong = t1_weak = None
    for w in ws:
        weak_X = make_data(args.rows_per_worker * w, d, k, seed=1)
        weak = write_store(
            root, weak_X, max(1, args.chunks * w * args.rows_per_worker // args.rows)
        )
        with connect(ClusterOptions(n_workers=w, threads_per_worker=1)):
            timed_fit(strong, init, k, 2)  # warm the workers
            s = best(strong)
            wk = best(weak)
            tasks = tasks_per_iteration(strong, X, init, k, w)
            if w == min(ws, key=lambda v: abs(v - 2)):
                a, b = best(few), best(many)
                c = best(many, cache="memory")
                extra = {"w": w, "few": a["per_it"], "many": b["per_it"], "cache": c["per_it"]}
                batch = args.rows // args.few
                extra["online"] = [
                    min(online_epoch(p, init, k, batch) for _ in range(args.repeats))
                    for p in (few, many)
                ]
                extra["same"] = float(np.max(np.abs(a["means"] - b["means"])))
        t1_strong = t1_strong or s["per_it"]
        t1_weak = t1_weak or wk["per_it"]
        rows.append(
            (
                w,
                s["per_it"],
                t1_strong / (w * s["per_it"]),
                wk["per_it"],
                t1_weak / wk["per_it"],
                tasks,
                s["overhead"],
            )
        )
        print(
            f"W={w:3d}  strong {s['per_it']:.3f} s/it (eff {rows[-1][2]:.0%})  "
            f"weak {wk['per_it']:.3f} s/it (eff {rows[-1][4]:.0%})  "
            f"tasks/it {tasks}  first-iteration overhead {s['overhead']:.3f} s",
            flush=True,
        )
        shutil.rmtree(weak, ignore_errors=True)
    if extra:
        print(
            f"W={extra['w']}: {args.few} chunks {extra['few']:.3f} s/it, {args.many} chunks "
            f"{extra['many']:.3f} s/it, ratio {extra['many'] / extra['few']:.2f}; "
            f"max |means difference| {extra['same']:.1e}"
        )
        on_few, on_many = extra["online"]
        print(
            f"W={extra['w']}: online EM epoch ({args.rows // args.few} rows per update) over "
            f"{args.few} chunks {on_few:.3f} s, over {args.many} chunks {on_many:.3f} s, "
            f"ratio {on_many / on_few:.2f}"
        )
        print(
            f"W={extra['w']}: cache='memory' {extra['cache']:.3f} s/it against re-reading "
            f"{extra['many']:.3f} s/it ({args.many} chunks), ratio "
            f"{extra['cache'] / extra['many']:.2f}"
        )
    sk = sklearn_per_iteration(X, init, k, args.iters)
    print(
        f"scikit-learn GaussianMixture (in memory, all cores) {sk:.3f} s/it; streammix "
        f"W={rows[-1][0]} ({args.chunks} chunks, Zarr) {rows[-1][1]:.3f} s/it, ratio "
        f"{rows[-1][1] / sk:.2f}"
    )
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
