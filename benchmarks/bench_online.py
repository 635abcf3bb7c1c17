"""Online (stepwise) EM against batch EM on a stream too large to hold: passes, time,
memory and the mean log-likelihood reached.

``python benchmarks/bench_online.py --rows 100000000``

The stream is a 5-component mixture in 3-D (like RGB pixels) generated chunk by chunk from
a counter-based generator (chunk i always holds the same rows), so no method ever holds more
than one chunk; batch EM re-generates the stream at every pass. Each method runs in its own
child process, whose peak resident memory (``ru_maxrss``) is reported. The log-likelihood is
the mean over a held-out million rows of the same mixture.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

import gmm

MEANS = np.array(
    [[0.2, 0.2, 0.2], [0.8, 0.3, 0.3], [0.3, 0.7, 0.4], [0.5, 0.5, 0.9], [0.9, 0.9, 0.8]]
)
SCALES = np.array([0.05, 0.08, 0.06, 0.1, 0.04])
WEIGHTS = np.array([0.3, 0.25, 0.2, 0.15, 0.1])


def make_chunk(seed, index, n, spread=1.0):
    rng = np.random.Generator(np.random.Philox(key=seed, counter=[index, 0, 0, 0]))
    z = rng.choice(5, size=n, p=WEIGHTS)
    x = MEANS[z] + rng.standard_normal((n, 3)) * (spread * SCALES[z, None])
    return x.astype(np.float32)


class Stream(gmm.ChunkSource):
    """``rows`` rows in chunks of ``chunk`` rows, generated on demand, re-iterable."""

    def __init__(self, rows, chunk, spread, seed=1):
        self.rows, self.chunk, self.seed, self.spread = rows, chunk, seed, spread
        self.n_features = 3
        self.passes = 0

    def chunks(self, max_rows):
        self.passes += 1
        for i, start in enumerate(range(0, self.rows, self.chunk)):
            x = make_chunk(self.seed, i, min(self.chunk, self.rows - start), self.spread)
            for a in range(0, x.shape[0], max_rows):
                yield x[a : a + max_rows], None


def child(method, rows, chunk, alpha, spread, tol):
    stream = Stream(rows, chunk, spread)
    model = gmm.GaussianMixture(
        5, random_state=0, online_alpha=alpha, online_batch_rows=65536, max_iter=300, tol=tol
    )
    t = time.perf_counter()
    if method == "online":
        model.fit(stream, online=True)
    else:
        model.fit(stream)
    seconds = time.perf_counter() - t
    held_out = make_chunk(2, 0, 1_000_000, spread)
    return {
        "method": method,
        "rows": rows,
        "passes": stream.passes,
        "em_iterations": int(model.n_iter_),
        "seconds": seconds,
        "loglik": float(model.score(held_out)),
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--methods", nargs="+", default=["batch", "online"])
    parser.add_argument(
        "--spread", type=float, default=1.0, help="scale the components' spreads (overlap)"
    )
    parser.add_argument("--tol", type=float, default=1e-3, help="batch EM's tol")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "ROWS"))
    args = parser.parse_args()
    if args.child:
        result = child(
            args.child[0], int(args.child[1]), args.chunk, args.alpha, args.spread, args.tol
        )
        print(json.dumps(result))
        return
    print(
        f"5 Gaussians in 3-D (spread x{args.spread:g}), chunks of {args.chunk:,} rows, "
        f"online_alpha={args.alpha}, batch tol={args.tol:g}"
    )
    print(
        f"{'rows':>12} | {'method':>6} | {'passes':>6} | {'EM it.':>6} | {'seconds':>8} | "
        f"{'held-out loglik':>15} | {'vs batch':>8} | {'maxrss MiB':>10}"
    )
    for rows in args.rows:
        results = {}
        for method in args.methods:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--chunk",
                    str(args.chunk),
                    "--alpha",
                    str(args.alpha),
                    "--spread",
                    str(args.spread),
                    "--tol",
                    str(args.tol),
                    "--child",
                    method,
                    str(rows),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[method] = r = json.loads(out.strip().splitlines()[-1])
            ref = results.get("batch")
            rel = (
                ""
                if ref is None or method == "batch"
                else (f"{100 * (r['loglik'] - ref['loglik']) / abs(ref['loglik']):+.3f}%")
            )
            print(
                f"{rows:>12,} | {method:>6} | {r['passes']:>6} | {r['em_iterations']:>6} | "
                f"{r['seconds']:8.1f} | {r['loglik']:15.5f} | {rel:>8} | {r['maxrss_mib']:10.1f}",
                flush=True,
            )
        if "online" in results and "batch" in results:
            o, b = results["online"], results["batch"]
            diff = o["loglik"] - b["loglik"]
            gap = 100 * diff / abs(b["loglik"])
            print(
                f"{'':>12}   online vs batch: loglik {diff:+.5f} nats/row ({gap:+.3f}%), time "
                f"x{o['seconds'] / b['seconds']:.3f}, passes saved {b['passes'] - o['passes']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
