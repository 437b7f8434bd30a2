"""Scoring time of low-rank + diagonal covariances against full ones, one run.

Run by hand (``python tests/benchmarks/bench_lowrank.py``). For D = 256 and 512,
K = 16 components and rank 8, times ``score_samples`` on 100,000 rows for
``lowrank`` and ``full`` mixtures of the same dimension (single-threaded BLAS per
task, both cores), scikit-learn's full GaussianMixture as the peer, and prints
the ratios. Both streammix models are built with ``from_parameters`` (scoring
does not depend on how the parameters were found).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import streammix as sm


def best_time(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-rows", type=int, default=100_000)
    ap.add_argument("--n-components", type=int, default=16)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--dims", default="256,512")
    args = ap.parse_args()
    k, r, n = args.n_components, args.rank, args.n_rows
    print(f"score_samples on {n:,} rows, K={k}, rank={r}")
    for d in (int(x) for x in args.dims.split(",")):
        rng = np.random.default_rng(d)
        factors = rng.normal(size=(k, d, r)) / np.sqrt(r)
        noise = rng.uniform(0.5, 1.5, (k, d))
        means = rng.normal(size=(k, d))
        weights = np.full(k, 1.0 / k)
        low = sm.GaussianMixture.from_parameters(
            weights, means, np.concatenate([factors, noise[:, :, None]], axis=2), "lowrank"
        )
        dense = low.params_.dense_covariances()
        full = sm.GaussianMixture.from_parameters(weights, means, dense, "full")
        sk = full.to_sklearn()
        X = rng.normal(size=(n, d))
        np.testing.assert_allclose(
            low.score_samples(X[:1000]), full.score_samples(X[:1000]), rtol=1e-8
        )
        t_low = best_time(lambda m=low, x=X: m.score_samples(x))
        t_full = best_time(lambda m=full, x=X: m.score_samples(x))
        t_sk = best_time(lambda m=sk, x=X: m.score_samples(x), repeats=1)
        print(
            f"D={d:4d}: lowrank {t_low:6.2f} s | full {t_full:6.2f} s ({t_full / t_low:5.1f}x "
            f"lowrank) | sklearn full {t_sk:6.2f} s ({t_sk / t_low:5.1f}x lowrank)",
            flush=True,
        )


if __name__ == "__main__":
    main()
