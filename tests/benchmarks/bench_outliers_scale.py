"""OutlierDetector out of core: fit and flag a 10,000,000-row Zarr store.

Run by hand: ``python tests/benchmarks/bench_outliers_scale.py [--rows N] [--dir DIR]``.
Writes an ``N x 8`` float64 store (chunks of 250,000 rows; three normal modes and
1 % scattered anomalies) chunk by chunk, then, on the embedded local cluster,
runs the ``fit`` job with ``--method detector`` (the defaults) and the ``flag``
job with the fitted model, and prints each job's wall time, the peak resident
memory of any worker (sampled every 0.5 s) and the recall of the anomalies.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zarr

from streammix.cluster import connect
from streammix.jobs.fit_job import fit, make_estimator
from streammix.jobs.score_jobs import flag

CHUNK = 250_000
D = 8


def write_store(path: Path, rows: int) -> None:
    centres = np.random.default_rng(0).normal(0, 4, (3, D))
    z = zarr.create_array(str(path), shape=(rows, D), chunks=(CHUNK, D), dtype="f8")
    for start in range(0, rows, CHUNK):
        rng = np.random.default_rng(start)
        n = min(CHUNK, rows - start)
        X = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, D))
        k = n // 100  # the first 1 % of every chunk: scattered anomalies
        X[:k] = rng.uniform(-20, 20, (k, D))
        z[start : start + n] = X


def truth(rows: int) -> np.ndarray:
    t = np.zeros(rows, dtype=bool)
    for start in range(0, rows, CHUNK):
        t[start : start + min(CHUNK, rows - start) // 100] = True
    return t


class PeakMemory:
    """The largest resident set of any worker, sampled in a background thread."""

    def __init__(self, client: object) -> None:
        self.client, self.peak, self._stop = client, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            rss = self.client.run(lambda: psutil.Process().memory_info().rss)  # type: ignore[attr-defined]
            self.peak = max(self.peak, *rss.values())
            self._stop.wait(0.5)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dir", default="")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp())
    data = root / f"x{args.rows}.zarr"
    if not data.exists():
        t = time.perf_counter()
        write_store(data, args.rows)
        print(
            f"wrote {args.rows:,} x {D} ({args.rows * D * 8 / 2**30:.2f} GiB) in "
            f"{time.perf_counter() - t:.1f} s"
        )
    with connect() as client:
        workers = client.scheduler_info()["workers"]
        limit = max(w["memory_limit"] for w in workers.values())
        print(f"{len(workers)} workers, memory limit {limit / 2**30:.1f} GiB each")
        with PeakMemory(client) as mem:
            t = time.perf_counter()
            summary = fit(data, root / "model", make_estimator("detector", contamination=0.01))
            fit_s = time.perf_counter() - t
        print(
            f"fit: {fit_s:.1f} s, {summary['n_iter']} trimmed steps, "
            f"peak worker RSS {mem.peak / 2**30:.2f} GiB"
        )
        with PeakMemory(client) as mem:
            t = time.perf_counter()
            flag(data, root / "model", root / "flags.zarr", overwrite=True)
            flag_s = time.perf_counter() - t
        print(f"flag: {flag_s:.1f} s, peak worker RSS {mem.peak / 2**30:.2f} GiB")
    flags = zarr.open_group(str(root / "flags.zarr"), mode="r")["flag"][:] == 1
    t = truth(args.rows)
    print(f"recall {flags[t].mean():.3f}, precision {t[flags].mean():.3f}")


if __name__ == "__main__":
    main()
