"""EM speed and memory: ours against scikit-learn on real photo pixels.

K=8 full covariances on N = 0.25 M, 2 M and 12 M pixels (RGB in [0, 1], float32) of the
photos built by ``photos.py``; both fits start from the same parameters (one k-means++ pass,
given as weights_init / means_init / precisions_init) and run a fixed number of iterations
(tol=0). Every measurement runs in a fresh process so that its peak resident memory is its
own. Time per iteration: ours the median of the gaps between callback timestamps;
scikit-learn's as its fit time divided by (iterations + 1), since it ends with an extra
E-step (this favours it slightly).

Usage: python benchmarks/bench_em.py [--sizes 0.25 2 12] [--iters 10] [--json out.json]
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from _measure import common_start, print_table, rss_mb, run_isolated

DATA = Path(__file__).resolve().parent / "data"


def _data_file(mp):
    """Build the pixels once per size (in this process) and keep them as .npy for the
    measuring processes, whose peak memory then starts from the loaded data."""
    from photos import photo_pixels

    path = DATA / f"pixels_{mp:g}mp.npy"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        np.save(path, photo_pixels(mp))
    return path


def _data(mp):
    return np.load(DATA / f"pixels_{mp:g}mp.npy")


def ours(mp, iters, chunk_mib=64):
    import gmm

    X = _data(mp)
    base = rss_mb()
    w0, m0, p0 = common_start(X, 8)
    stamps = []
    model = gmm.GaussianMixture(
        8,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        max_iter=iters,
        tol=0,
        chunk_mib=chunk_mib,
        callback=lambda i, v: stamps.append(time.perf_counter()),
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    total = time.perf_counter() - t0
    per_iter = float(np.median(np.diff(stamps)))  # robust to one disturbed iteration
    return {
        "impl": "ours",
        "N": len(X),
        "iters": len(stamps),
        "s_per_iter": per_iter,
        "fit_s": total,
        "base_rss_mb": base,
        "loglik": float(model.lower_bound_),
    }


def sklearn(mp, iters):
    from sklearn.mixture import GaussianMixture

    X = _data(mp)
    base = rss_mb()
    w0, m0, p0 = common_start(X, 8)
    model = GaussianMixture(
        8,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        max_iter=iters,
        tol=0,
        init_params="random_from_data",
        random_state=0,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    total = time.perf_counter() - t0
    return {
        "impl": "sklearn",
        "N": len(X),
        "iters": int(model.n_iter_),
        "s_per_iter": total / (model.n_iter_ + 1),
        "fit_s": total,
        "base_rss_mb": base,
        "loglik": float(model.lower_bound_),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 2, 12])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for mp in args.sizes:
        _data_file(mp)
        a = run_isolated("bench_em", "ours", mp, args.iters)
        b = None if args.skip_sklearn else run_isolated("bench_em", "sklearn", mp, args.iters)
        row = {
            "MP": mp,
            "N": a["N"],
            "ours_s/it": a["s_per_iter"],
            "ours_peak_MB": a["peak_rss_mb"],
            "ours_over_data_MB": a["peak_rss_mb"] - a["base_rss_mb"],
        }
        if b:
            row.update(
                {
                    "sk_s/it": b["s_per_iter"],
                    "sk_peak_MB": b["peak_rss_mb"],
                    "speedup": b["s_per_iter"] / a["s_per_iter"],
                    "mem_ratio": b["peak_rss_mb"] / a["peak_rss_mb"],
                    "loglik_diff": a["loglik"] - b["loglik"],
                }
            )
        rows.append(row)
        print_table(rows[-1:], list(row))
    print()
    cols = [
        "MP",
        "N",
        "ours_s/it",
        "sk_s/it",
        "speedup",
        "ours_peak_MB",
        "sk_peak_MB",
        "mem_ratio",
        "ours_over_data_MB",
        "loglik_diff",
    ]
    print_table(rows, cols)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
