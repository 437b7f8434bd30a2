"""The demo job: generate data, fit, score and flag on an embedded local cluster.

Run with ``python -m streammix.demo [OUTPUT_DIR]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from distributed import Client, LocalCluster

from .datasets import generate
from .mixture import GaussianMixture


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="streammix-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data.zarr"
    t0 = time.perf_counter()
    summary = generate(
        data,
        200_000,
        n_features=6,
        n_components=4,
        outlier_fraction=0.01,
        chunk_rows=20_000,
        seed=0,
        overwrite=True,
    )
    print(
        f"generated {summary['n_samples']} rows x {summary['n_features']} in "
        f"{summary['n_chunks']} chunks at {data}"
    )
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        gm = GaussianMixture(n_components=4, random_state=0).fit(str(data))
        print(
            f"fitted: {gm.n_iter_} iterations, converged={gm.converged_}, "
            f"mean log-likelihood {gm.lower_bound_:.4f}"
        )
        ll = np.asarray(gm.score_samples(str(data)).compute())
    threshold = float(np.quantile(ll, 0.01))
    flagged = ll <= threshold
    truth = np.asarray(zarr.open_array(str(data / "is_outlier"), mode="r")[:]).astype(bool)
    tp = int(np.sum(flagged & truth))
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    print(
        f"flagged {int(flagged.sum())} rows (threshold {threshold:.3f}); "
        f"precision {precision:.3f}, recall {recall:.3f}"
    )
    gm.save(out / "model")
    print(f"model saved to {out / 'model'}; total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
