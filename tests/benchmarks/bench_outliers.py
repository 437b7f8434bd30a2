"""The ADBench protocol for streammix's OutlierDetector, IsolationForest and one Gaussian.

Run by hand: ``python tests/benchmarks/bench_outliers.py`` (the shared ADBench
files are looked for in ``../shared`` beside the repository, or in
``$STREAMMIX_SHARED``). Runs ``tools/adbench_eval.py`` on every dataset of
``data/adbench`` with the three detectors in one run (seeds 1, 2, 3; 70/30
stratified splits; MinMax scaling; training on contaminated rows) and prints the
per-dataset ROC AUC table, the means, and the detector's margin over
IsolationForest. Also times one fit on 10,000 rows of the widest dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def shared_dir() -> Path:
    return Path(os.environ.get("STREAMMIX_SHARED", HERE.parents[2] / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated dataset names")
    args = ap.parse_args()
    shared = shared_dir()
    tools, data = shared / "tools", shared / "data" / "adbench"
    if not (tools / "adbench_eval.py").is_file():
        sys.exit(f"adbench_eval.py not found under {tools}; set STREAMMIX_SHARED")
    out = Path(tempfile.mkdtemp()) / "adbench.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(tools)])}
    cmd = [
        sys.executable,
        str(tools / "adbench_eval.py"),
        str(data),
        "streammix=adbench_detectors:streammix_detector",
        "iforest",
        "gmm1",
        "--json",
        str(out),
    ]
    if args.only:
        cmd += ["--only", args.only]
    subprocess.run(cmd, check=True, env=env)
    result = json.loads(out.read_text())
    means = result["means"]
    print(
        f"\nstreammix - IsolationForest: {means['streammix'] - means['iforest']:+.2f} "
        "ROC AUC points "
        f"(means {means['streammix']:.2f} vs {means['iforest']:.2f}; one Gaussian "
        f"{means['gmm1']:.2f})"
    )
    wins = sum(r["streammix"][0] > r["iforest"][0] for r in result["rows"].values())
    print(f"streammix ahead on {wins} of {len(result['rows'])} datasets")

    sys.path.insert(0, str(HERE))
    import streammix as sm

    widest = max(
        data.glob("*.npz"),
        key=lambda p: np.load(p)["X"].shape[1] if np.load(p)["X"].shape[0] >= 10_000 else 0,
    )
    X = np.load(widest)["X"][:10_000].astype(np.float64)
    X = (X - X.min(0)) / np.maximum(np.ptp(X, axis=0), 1e-12)
    t = time.perf_counter()
    sm.OutlierDetector(random_state=0).fit(X)
    print(
        f"fit on {X.shape[0]:,} x {X.shape[1]} rows of {widest.stem}: "
        f"{time.perf_counter() - t:.2f} s"
    )


if __name__ == "__main__":
    main()
