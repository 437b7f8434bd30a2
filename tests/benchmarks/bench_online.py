"""Online EM against batch EM: held-out log-likelihood and wall time, one run.

Run by hand (``python tests/benchmarks/bench_online.py``). Writes 2,000,000 x
16 rows from a 10-component full-covariance mixture to a Zarr array of 100
chunks (component means drawn with standard deviation 1, so that components
overlap and EM has work to do), starts both methods from the same parameters (k-means over the
chunks), and prints the held-out mean log-likelihood and wall time of batch EM
to convergence (``tol=1e-4``), of one batch iteration, and of one and two
online epochs; scikit-learn's GaussianMixture on the same in-memory rows and
start is printed as the peer.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings

import numpy as np
import zarr
from sklearn.mixture import GaussianMixture as SklearnGM

import streammix as sm
from streammix.core.sampling import sample
from streammix.datasets import true_mixture


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-rows", type=int, default=2_000_000)
    ap.add_argument("--n-features", type=int, default=16)
    ap.add_argument("--n-components", type=int, default=10)
    ap.add_argument("--n-chunks", type=int, default=100)
    ap.add_argument("--held-out", type=int, default=200_000)
    ap.add_argument(
        "--spread",
        type=float,
        default=1.0,
        help="standard deviation of the true means (1: overlapping components)",
    )
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()
    n, d, k = args.n_rows, args.n_features, args.n_components
    truth = true_mixture(d, k, seed=7, spread=args.spread)
    X, _ = sample(truth, n + args.held_out, np.random.default_rng(0))
    train, test = X[:n], X[n:]
    tmp = tempfile.mkdtemp(prefix="bench-online-")
    try:
        path = f"{tmp}/x.zarr"
        z = zarr.create_array(path, shape=train.shape, chunks=(n // args.n_chunks, d), dtype="f8")
        z[:] = train
        start_model, t_init = timed(
            lambda: sm.GaussianMixture(k, max_iter=0, random_state=0).fit(path)
        )
        start = dict(
            weights_init=start_model.weights_,
            means_init=start_model.means_,
            precisions_init=start_model.precisions_,
        )
        print(
            f"{n:,} x {d} rows, {k} components, {args.n_chunks} Zarr chunks; common start "
            f"from k-means over the chunks ({t_init:.1f} s)"
        )
        _, t_one = timed(lambda: _quiet(sm.GaussianMixture(k, max_iter=1, **start).fit, path))
        batch, t_batch = timed(
            lambda: sm.GaussianMixture(k, tol=1e-4, max_iter=500, **start).fit(path)
        )
        ll_batch = batch.score(test)
        print(
            f"batch EM   : {batch.n_iter_:3d} iterations {t_batch:7.2f} s "
            f"({t_one:.2f} s for one iteration)  held-out {ll_batch:.5f}"
        )
        for epochs in (1, 2):
            online, t_on = timed(
                lambda e=epochs: sm.OnlineGaussianMixture(
                    k, max_epochs=e, random_state=0, **start
                ).fit(path)
            )
            ll = online.score(test)
            print(
                f"online x{epochs} : {online.n_updates_:3d} updates    {t_on:7.2f} s "
                f"({t_on / t_one:.2f}x one batch iteration, {t_batch / t_on:.1f}x faster than "
                f"batch to convergence)  held-out {ll:.5f} ({ll - ll_batch:+.5f} vs batch)"
            )
        if not args.skip_sklearn:
            sk, t_sk = timed(lambda: SklearnGM(k, tol=1e-4, max_iter=500, **start).fit(train))
            ll_sk = sk.score(test)
            print(
                f"sklearn    : {sk.n_iter_:3d} iterations {t_sk:7.2f} s (in memory)  held-out "
                f"{ll_sk:.5f}; batch streammix {t_sk / t_batch:.1f}x faster"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _quiet(fn, *a):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a)


if __name__ == "__main__":
    main()
