"""Helpers shared by the benchmark scripts: run a job in a fresh process and read its peak
resident memory, so that one measurement cannot inherit another's heap."""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def run_isolated(module, func, *args, timeout=3600):
    """Run ``module.func(*args)`` in a new interpreter; return its dict result.

    The result gets ``peak_rss_mb``: the child's maximum resident set size (ru_maxrss).
    """
    code = (
        f"import json, resource, sys; sys.path.insert(0, {str(HERE)!r}); import {module} as m; "
        f"r = m.{func}(*json.loads(sys.argv[1])); "
        "r['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; "
        "print('RESULT' + json.dumps(r))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(args))],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    raise RuntimeError(f"{module}.{func}{args} failed:\n{out.stderr[-2000:]}")


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def print_table(rows, columns):
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths, strict=True)))


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def common_start(X, K, seed=0):
    """Starting parameters shared by the implementations compared: k-means++ seeds on a
    sample of about 200 000 rows, then one hard-assignment pass (weights, means, precisions)."""
    import warnings

    import gmm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = gmm.GaussianMixture(
            K, init="k-means++", max_iter=1, tol=0, random_state=seed, dtype=np.float64
        ).fit(X[:: max(1, len(X) // 200_000)])
    return m.weights_, m.means_, m.precisions_
