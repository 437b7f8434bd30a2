"""Seconds per iteration of the Bayesian mixture and of weighted fits, against the
plain ``GaussianMixture`` iteration and scikit-learn, measured in the same run.

Run by hand: ``python tests/benchmarks/bench_weights.py [--n N --d D --k K]``; not
collected by the test suite. Per-iteration time is differenced as in
``bench_em.py`` (fits with ``max_iter=a`` and ``b`` from the same start, best of
``--repeats``), so initialisation cancels. Weights are integers 1-3 (every row
kept, so the arithmetic is the same as without weights), in memory for numpy
data and in a Zarr array beside the data for Zarr input. The Bayesian mixture
has a Dirichlet-process prior and k-means initialisation (scikit-learn's
defaults), the same for both libraries.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr
from sklearn.mixture import BayesianGaussianMixture as SklearnBGM
from sklearn.mixture import GaussianMixture as SklearnGM

import streammix as sm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_em import make_data, per_iteration, start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--iters", default="2,7")
    args = ap.parse_args()
    a, b = (int(v) for v in args.iters.split(","))
    X = make_data(args.n, args.d, args.k)
    w = np.random.default_rng(5).integers(1, 4, size=args.n).astype(np.float64)
    tmp = tempfile.mkdtemp()
    try:
        xz = os.path.join(tmp, "x.zarr")
        wz = os.path.join(tmp, "w.zarr")
        zarr.create_array(xz, shape=X.shape, chunks=(args.chunk_rows, args.d), dtype="f8")[:] = X
        zarr.create_array(wz, shape=w.shape, chunks=(args.chunk_rows,), dtype="f8")[:] = w
        print(
            f"N={args.n:,} D={args.d} K={args.k}, float64; seconds per "
            f"iteration from max_iter={a} and {b}, best of {args.repeats}; {os.cpu_count()} cores"
        )
        for cov in ("full", "diag"):
            given = {**start(X, args.k, cov), "covariance_type": cov, "tol": 0.0}
            bayes = {
                "n_components": args.k,
                "covariance_type": cov,
                "tol": 0.0,
                "random_state": 0,
            }
            gm, bgm = (sm.GaussianMixture, given), (sm.BayesianGaussianMixture, bayes)
            weighted, zarr_weighted = {"sample_weight": w}, {"sample_weight": wz}
            rows = {
                "gm": ("GaussianMixture, numpy", *gm, X, None),
                "gm_w": ("  weighted", *gm, X, weighted),
                "gmz": ("GaussianMixture, Zarr", *gm, xz, None),
                "gmz_w": ("  weighted (Zarr weights)", *gm, xz, zarr_weighted),
                "bgm": ("BayesianGaussianMixture, numpy", *bgm, X, None),
                "bgm_w": ("  weighted", *bgm, X, weighted),
                "bgmz": ("BayesianGaussianMixture, Zarr", *bgm, xz, None),
                "sk_gm": ("scikit-learn GaussianMixture", SklearnGM, given, X, None),
                "sk_bgm": ("scikit-learn BayesianGaussianMixture", SklearnBGM, bayes, X, None),
            }
            t = {}
            print(f"\n{cov} covariances")
            for key, (label, cls, kwargs, data, fit_kwargs) in rows.items():
                kw = dict(kwargs)
                if kwargs is given:
                    kw["n_components"] = args.k
                t[key] = per_iteration(cls, kw, data, (a, b), args.repeats, fit_kwargs)
                print(f"  {label:40s} {t[key]:8.3f} s/it", flush=True)
            print(
                f"  Bayesian / GaussianMixture: numpy {t['bgm'] / t['gm']:.2f}, "
                f"Zarr {t['bgmz'] / t['gmz']:.2f} (target <= 1.2)"
            )
            print(
                f"  weighted / unweighted: GaussianMixture numpy {t['gm_w'] / t['gm']:.2f}, "
                f"Zarr {t['gmz_w'] / t['gmz']:.2f}; Bayesian numpy {t['bgm_w'] / t['bgm']:.2f} "
                "(target <= 1.1)"
            )
            print(
                f"  scikit-learn / streammix (numpy): GaussianMixture {t['sk_gm'] / t['gm']:.1f}x, "
                f"BayesianGaussianMixture {t['sk_bgm'] / t['bgm']:.1f}x"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
