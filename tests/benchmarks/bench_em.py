"""Seconds per EM iteration: streammix against scikit-learn, same data, same start.

Run by hand (``make bench`` or ``python tests/benchmarks/bench_em.py``); not
collected by the test suite. Prints, for full and diag covariances in float64
and float32, the seconds per iteration of scikit-learn's GaussianMixture and of
streammix on the same in-memory array and on the same data in a Zarr store
(re-read every iteration), their ratio, and the kernel's GFLOP/s against
numpy's GEMM peak measured in the same run.

Per-iteration time is measured as (time of a fit with ``max_iter=b``) minus
(time with ``max_iter=a``), divided by ``b - a``, from the same
``weights_init/means_init/precisions_init``, so set-up costs cancel.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings

import numpy as np
import zarr
from sklearn.mixture import GaussianMixture as SklearnGM

import streammix as sm


def gemm_peak(dtype: type, n: int = 4096, repeats: int = 3) -> float:
    """GFLOP/s of numpy's matrix product with its default threads (all cores)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    a @ b
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 3.0, size=(k, d))
    labels = rng.integers(k, size=n)
    out = np.empty((n, d))
    for j in range(k):
        rows = labels == j
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        out[rows] = means[j] + rng.standard_normal((int(rows.sum()), d)) @ (a + np.eye(d))
    return out


def start(X: np.ndarray, k: int, cov_type: str, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    means = X[rng.choice(len(X), k, replace=False)]
    var = X.var(axis=0).mean()
    prec = {
        "full": np.broadcast_to(np.eye(d) / var, (k, d, d)).copy(),
        "diag": np.full((k, d), 1.0 / var),
    }[cov_type]
    return {"weights_init": np.full(k, 1.0 / k), "means_init": means, "precisions_init": prec}


def per_iteration(
    cls, kwargs: dict, X, iters: tuple[int, int], repeats: int, fit_kwargs: dict | None = None
) -> float:
    """Seconds per iteration: the best of ``repeats`` fits at each ``max_iter``, differenced
    (``fit_kwargs``: more arguments of ``fit``, e.g. ``sample_weight``)."""
    best = []
    for n_iter in iters:
        times = []
        for _ in range(repeats):
            est = cls(max_iter=n_iter, **kwargs)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, **(fit_kwargs or {}))
            times.append(time.perf_counter() - t)
        best.append(min(times))
    return (best[1] - best[0]) / (iters[1] - iters[0])


def kernel_flops(n: int, d: int, k: int, cov_type: str) -> tuple[float, float]:
    """(flops of streammix's two GEMMs, flops of the dense two-GEMM formulation)."""
    if cov_type == "full":
        p = d + d * (d + 1) // 2
        return 2 * 2 * n * k * p, 4 * n * k * d * d
    return 2 * 2 * n * k * 2 * d, 2 * 2 * n * k * 2 * d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-rows", type=int, default=1_000_000)
    ap.add_argument("--n-features", type=int, default=32)
    ap.add_argument("--n-components", type=int, default=16)
    ap.add_argument("--chunk-rows", type=int, default=25_000)
    ap.add_argument("--iters", type=int, nargs=2, default=(1, 3))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--families", default="full,diag")
    ap.add_argument("--dtypes", default="float64,float32")
    args = ap.parse_args()
    n, d, k = args.n_rows, args.n_features, args.n_components
    iters = tuple(args.iters)
    print(
        f"N={n:,} D={d} K={k}, {os.cpu_count()} cores; per-iteration seconds from "
        f"max_iter {iters[0]} vs {iters[1]}"
    )
    peaks = {"float64": gemm_peak(np.float64), "float32": gemm_peak(np.float32)}
    print(
        "numpy GEMM peak (4096^2, all cores): "
        + ", ".join(f"{t} {g:.1f} GFLOP/s" for t, g in peaks.items())
    )
    X64 = make_data(n, d, k)
    tmp = tempfile.mkdtemp(prefix="bench-em-")
    rows = []
    try:
        for dtype_name in args.dtypes.split(","):
            X = X64.astype(dtype_name)
            path = os.path.join(tmp, f"{dtype_name}.zarr")
            z = zarr.create_array(path, shape=X.shape, chunks=(args.chunk_rows, d), dtype=X.dtype)
            z[:] = X
            for cov_type in args.families.split(","):
                init = start(X64, k, cov_type)
                common = dict(n_components=k, covariance_type=cov_type, tol=0.0, **init)
                t_sk = per_iteration(SklearnGM, common, X, iters, args.repeats)
                t_np = per_iteration(sm.GaussianMixture, common, X, iters, args.repeats)
                t_z = per_iteration(sm.GaussianMixture, common, path, iters, args.repeats)
                ours, dense = kernel_flops(n, d, k, cov_type)
                rows.append((cov_type, dtype_name, t_sk, t_np, t_z, ours, dense))
                print(
                    f"{cov_type:5s} {dtype_name}: sklearn {t_sk:7.3f} s/it | streammix numpy "
                    f"{t_np:6.3f} s/it ({t_sk / t_np:5.1f}x) | streammix Zarr {t_z:6.3f} s/it "
                    f"({t_sk / t_z:5.1f}x) | kernel {ours / t_np / 1e9:5.1f} GFLOP/s "
                    f"({100 * ours / t_np / 1e9 / peaks[dtype_name]:4.1f}% of peak), dense-"
                    f"equivalent {dense / t_np / 1e9:5.1f} GFLOP/s "
                    f"({100 * dense / t_np / 1e9 / peaks[dtype_name]:4.1f}%)",
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    by = {(r[0], r[1]): r for r in rows}
    print("\nsummary")
    for cov_type in args.families.split(","):
        if (cov_type, "float64") in by and (cov_type, "float32") in by:
            r64, r32 = by[(cov_type, "float64")], by[(cov_type, "float32")]
            print(
                f"  {cov_type}: float32 / float64 speed-up (numpy input) {r64[3] / r32[3]:.2f}x, "
                f"(Zarr input) {r64[4] / r32[4]:.2f}x"
            )
        for dtype_name in args.dtypes.split(","):
            r = by.get((cov_type, dtype_name))
            if r:
                print(
                    f"  {cov_type} {dtype_name}: streammix / sklearn speed-up "
                    f"{r[2] / r[3]:.1f}x (numpy), {r[2] / r[4]:.1f}x (Zarr)"
                )


if __name__ == "__main__":
    main()
