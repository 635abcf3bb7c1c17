"""Performance suite (issue 5): one command, a table, a JSON.

For real photos of 0.25, 2, 12 and 24 MP (built from the sample photos by ``photos.py``:
resized to a common height, laid side by side, tiled with mirroring, Lanczos-resized to the
size) it measures, each in a fresh process so that peak memory is its own:

- ``exp+pass``: one float32 ``exp`` over N×8 values plus one copy of the pixels (the
  machine's limit for an EM iteration), timed right after each of our EM iterations;
- ``ours_it``: our EM iteration over all N pixels (K=8, full, float32, no deduplication);
  ``it/limit`` the median over 8 iterations of each iteration's time over the limit timed
  after it, ``it/limit_max`` the worst of them; ``ours_it_MB`` the memory above the data
  of the same fit run alone (``bench_em.py``);
- ``estep_1thr`` / ``estep_2thr``: one E-step pass with 1 and 2 Python threads;
- ``sk_it``: scikit-learn's GaussianMixture iteration from the same start (float32 input);
- ``ours_fit``: our fit to convergence (tol 1e-3, kmeans init) over all pixels;
- ``km_it``: scikit-learn's KMeans (Lloyd) iteration from the same centres;
- ``pil_q``: Pillow's ``quantize(8)`` (median cut) of the image;
- ``e2e``: ``segment image`` end to end on the JPEG (defaults: all outputs and plots);
  ``e2e_rgb``: the same with ``--xy 0`` (fit on distinct colours); peak RSS of each.

scikit-learn is run to at most 3 iterations (its time per iteration does not depend on
convergence); its fit+predict to convergence is estimated as (our iterations + 1) × its
iteration time + one E-step, stated as such in the table.

``--stages`` instead times the stages of ``segment image`` (defaults, all outputs) in one
process per size: imports, decode, features (with the fitting sample), EM fit, labels,
plots, other outputs, and the whole (``e2e/(fit+decode)``: the whole over EM fit + decode);
also the process's CPU seconds of the labels, the plots and the whole, and the whole's CPU
over that of EM fit + decode (``cpu/(fit+decode)``: steadier than wall time on a shared
machine). The plots are drawn by the plot worker (``segment.outputs.plot_process``) while
the labels are made: ``plot_specs`` is what the main process computes for them (histograms
of the fitted rows), ``plots_wait`` how long it waits for the worker after the labels,
``worker_cpu`` and ``worker_peak_mb`` the worker's CPU seconds (its imports included) and
peak memory, ``all_cpu`` both processes' CPU seconds; with ``SEGMENT_PLOT_WORKER=0`` in
the environment the plots are drawn in ``plots_wait``. ``--repeat N`` runs each size N
times and keeps the least of each column.
``cli_wall``/``cli_peak_mb``: the command itself in its own interpreter (``/usr/bin/time``).
``floor``: what no implementation avoids (``startup``: a fresh interpreter importing
numpy, scipy.ndimage, Pillow and skimage.color; decode; the EM fit; writing the images
that are not plots), against ``2x(fit+decode)``, the issue's target for the whole.

Usage: python benchmarks/bench_perf.py [--sizes 0.25 2 12 24] [--skip-sklearn] [--json F]
       python benchmarks/bench_perf.py --stages [--sizes 2 12 24] [--repeat N]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _measure import common_start, print_table, run_isolated

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
K = 8


def _files(mp):
    from photos import photo

    DATA.mkdir(exist_ok=True)
    jpg, npy = DATA / f"photo_{mp:g}mp.jpg", DATA / f"pixels_{mp:g}mp.npy"
    if not jpg.exists() or not npy.exists():
        from PIL import Image

        img = photo(mp)
        Image.fromarray(img).save(jpg, quality=92)
        np.save(npy, img.reshape(-1, 3).astype(np.float32) / 255)
    return jpg, npy


def machine_limit(mp, iters=9):
    """EM iterations and the machine's limit, paired: after each EM iteration (in the fit's
    callback) one float32 exp over N×8 values plus one copy of the pixels is timed, so each
    iteration is compared with a limit measured under the same conditions."""
    import gmm

    X = np.load(DATA / f"pixels_{mp:g}mp.npy")
    a = np.random.default_rng(0).standard_normal((len(X), K)).astype(np.float32)
    out = np.empty_like(a)
    Y = np.empty_like(X)
    marks, limits = [], []

    def limit(i, value):
        t0 = time.perf_counter()
        np.exp(a, out=out)
        np.copyto(Y, X)
        t1 = time.perf_counter()
        marks.append((t0, t1))
        limits.append(t1 - t0)

    w0, m0, p0 = common_start(X, K)
    model = gmm.GaussianMixture(
        K,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        max_iter=iters,
        tol=0,
        callback=limit,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    # iteration i runs from the end of callback i-1 to the start of callback i
    its = np.array([marks[i][0] - marks[i - 1][1] for i in range(1, len(marks))])
    ratios = its / np.array(limits[1:])
    return {
        "limit_s": float(np.median(limits)),
        "it_s": float(np.median(its)),
        "ratio": float(np.median(ratios)),
        "ratio_max": float(ratios.max()),
    }


def ours_fit(mp):
    import gmm

    X = np.load(DATA / f"pixels_{mp:g}mp.npy")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = gmm.GaussianMixture(K, random_state=0).fit(X)
        m.predict(X)
    return {"fit_predict_s": time.perf_counter() - t0, "n_iter": int(m.n_iter_)}


def threads(mp, n_threads=2, repeat=3):
    """One E-step pass over all pixels with 1 and with ``n_threads`` Python threads, each
    with its own kernel, blocks handed out in order and the sums added in block order."""
    import threading

    import gmm
    from gmm import ArraySource

    X = np.load(DATA / f"pixels_{mp:g}mp.npy")
    w0, m0, p0 = common_start(X, K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = gmm.GaussianMixture(
            K, weights_init=w0, means_init=m0, precisions_init=p0, max_iter=1, tol=0
        ).fit(X[:1000])
    source = ArraySource(X)

    def run(t):
        kernels = [model.kernel() for _ in range(t)]
        blocks = list(source.chunks(kernels[0].rows))
        sums = [None] * len(blocks)

        def work(i0, kernel):
            for i in range(i0, len(blocks), t):
                L, phi = kernel.logits(blocks[i][0])
                kernel.normalize(L)
                sums[i] = L @ phi.T

        workers = [threading.Thread(target=work, args=(i, k)) for i, k in enumerate(kernels)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        total = np.sum(np.stack(sums).astype(np.float64), axis=0)
        return time.perf_counter() - t0, total

    one = min(run(1)[0] for _ in range(repeat))
    two = min(run(n_threads)[0] for _ in range(repeat))
    return {"one_s": one, "two_s": two}


def kmeans_iteration(mp, iters=5):
    from sklearn.cluster import KMeans

    X = np.load(DATA / f"pixels_{mp:g}mp.npy")
    _, m0, _ = common_start(X, K)
    km = KMeans(K, init=m0, n_init=1, max_iter=iters, tol=0, algorithm="lloyd")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km.fit(X)
    return {"it_s": (time.perf_counter() - t0) / max(km.n_iter_, 1)}


def pillow_quantize(mp):
    from PIL import Image

    im = Image.open(DATA / f"photo_{mp:g}mp.jpg").convert("RGB")
    t0 = time.perf_counter()
    im.quantize(K, method=Image.Quantize.MEDIANCUT)
    return {"s": time.perf_counter() - t0}


def end_to_end(mp, *extra):
    jpg = DATA / f"photo_{mp:g}mp.jpg"
    out = DATA / f"out_{mp:g}"
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "segment",
        "image",
        str(jpg),
        "-o",
        str(out),
        "--overwrite",
        "-q",
        *extra,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    rss = [ln for ln in r.stderr.splitlines() if "Maximum resident" in ln]
    peak = int(rss[0].split(":")[1]) / 1024 if rss else float("nan")
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return {"s": wall, "peak_mb": peak}


def stages(mp):
    """``segment image`` (defaults, all outputs) in this process, its stages timed by
    wrapping the functions the pipeline calls: imports, decode, features (with the fitting
    sample), EM fit (with the polish passes), labels (smoothing, small regions), the two
    plots, the rest of the outputs; and the whole run."""
    import functools

    t0, c0 = time.perf_counter(), time.process_time()
    from segment.cli import main as cli_main

    imports = time.perf_counter() - t0
    imports_cpu = time.process_time() - c0
    import contextlib
    import resource

    import segment.fit as fit
    import segment.outputs.plot_process as plot_process
    import segment.pipeline as pipeline

    spent, cpu = {}, {}

    def timed(owner, name, label):
        f = getattr(owner, name)

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            try:
                return f(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
                cpu[label] = cpu.get(label, 0.0) + time.process_time() - c

        setattr(owner, name, wrapper)

    timed(pipeline, "load_image", "decode")
    timed(pipeline, "pixel_data", "features")
    timed(fit, "fit_rows", "em_fit")
    timed(fit.Segmentation, "label_image", "labels")
    timed(pipeline, "start_plots", "plot_specs")
    timed(plot_process.PlotJob, "pngs", "plots_wait")
    timed(pipeline, "write_segmentation", "outputs")
    worker_peak = [0.0]
    close = plot_process.PlotWorker.close

    def close_and_measure(self, **kwargs):
        with contextlib.suppress(OSError, AttributeError):
            status = Path(f"/proc/{self.pid}/status").read_text()
            kib = [ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM")]
            worker_peak[0] = int(kib[0]) / 1024
        return close(self, **kwargs)

    plot_process.PlotWorker.close = close_and_measure
    jpg = DATA / f"photo_{mp:g}mp.jpg"
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        cli_main(["image", str(jpg), "-o", str(DATA / f"out_{mp:g}"), "--overwrite", "-q"])
    except SystemExit as exit_:
        if exit_.code:
            raise RuntimeError(f"segment image failed with status {exit_.code}") from None
    run = time.perf_counter() - t0
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime
    plots = spent.get("plots_wait", 0.0)
    total_cpu = imports_cpu + time.process_time() - c0
    return {
        "imports": imports,
        **spent,
        "other_outputs": spent.get("outputs", 0.0) - plots,
        "run": run,
        "total": imports + run,
        # CPU seconds of this process: less sensitive than wall time to other jobs
        "labels_cpu": cpu.get("labels", 0.0),
        "plots_cpu": cpu.get("plot_specs", 0.0) + cpu.get("plots_wait", 0.0),
        "worker_cpu": worker_cpu,
        "worker_peak_mb": worker_peak[0],
        "total_cpu": total_cpu,
        "all_cpu": total_cpu + worker_cpu,
        "cpu/(fit+decode)": total_cpu / (cpu.get("em_fit", 0.0) + cpu.get("decode", 0.0)),
    }


def startup():
    """A fresh interpreter importing the libraries every ``segment image`` run needs before
    it can decode (numpy, scipy.ndimage, Pillow, skimage.color; not matplotlib, which the
    plots alone need): wall seconds, best of three."""
    code = "import numpy, scipy.ndimage, PIL.Image, skimage.color"
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def _floor_columns(r, start):
    """What no implementation of ``segment image`` avoids: start-up with its libraries,
    decode, the EM fit and writing the images that are not plots; against the target
    of twice the EM fit + decode. A floor above the target leaves nothing for the labels
    (smoothing, regions) and plots."""
    r["startup"] = start
    r["floor"] = start + r["decode"] + r["em_fit"] + r["other_outputs"]
    r["2x(fit+decode)"] = 2 * (r["em_fit"] + r["decode"])
    r["floor/target"] = r["floor"] / r["2x(fit+decode)"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 2, 12, 24])
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--json", default=str(HERE / "results" / "bench_perf.json"))
    ap.add_argument(
        "--stages", action="store_true", help="only the stages of segment image (a table)"
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="--stages: runs per size, least time of each"
    )
    args = ap.parse_args()
    if args.stages:
        rows = []
        start = startup()
        for mp in args.sizes:
            _files(mp)
            runs = [run_isolated("bench_perf", "stages", mp) for _ in range(args.repeat)]
            r = {k: min(run[k] for run in runs) for k in runs[0]}
            r["MP"] = mp
            r["e2e/(fit+decode)"] = r["total"] / (r["em_fit"] + r["decode"])
            cli = [end_to_end(mp) for _ in range(args.repeat)]
            # the command as a user runs it: its own interpreter, peak of its process
            r["cli_wall"] = min(c["s"] for c in cli)
            r["cli_peak_mb"] = max(c["peak_mb"] for c in cli)
            _floor_columns(r, start)
            rows.append(r)
            print_table([r], list(r))
        print_table(rows, list(dict.fromkeys(c for r in rows for c in r)))
        return
    rows = []
    for mp in args.sizes:
        _files(mp)
        row = {"MP": mp}
        lim = run_isolated("bench_perf", "machine_limit", mp)
        it = run_isolated("bench_em", "ours", mp, 5)  # the same measurement as bench_em
        fit = run_isolated("bench_perf", "ours_fit", mp)
        thr = run_isolated("bench_perf", "threads", mp)
        row.update({"estep_1thr": thr["one_s"], "estep_2thr": thr["two_s"]})
        row.update(
            {
                "N": int(mp * 1e6),
                "exp+pass": lim["limit_s"],
                "ours_it": lim["it_s"],
                "it/limit": lim["ratio"],
                "it/limit_max": lim["ratio_max"],
                "ours_it_MB": it["peak_rss_mb"] - it["base_rss_mb"],
                "ours_fit+pred": fit["fit_predict_s"],
                "iters": fit["n_iter"],
            }
        )
        if not args.skip_sklearn:
            sk = run_isolated("bench_em", "sklearn", mp, 3)
            km = run_isolated("bench_perf", "kmeans_iteration", mp)
            sk_total = (fit["n_iter"] + 2) * sk["s_per_iter"]
            row.update(
                {
                    "sk_it": sk["s_per_iter"],
                    "sk/ours_it": sk["s_per_iter"] / it["s_per_iter"],
                    "sk_MB": sk["peak_rss_mb"] - it["base_rss_mb"],
                    "km_it": km["it_s"],
                    "sk_fit+pred(est)": sk_total,
                }
            )
        row["pil_q"] = run_isolated("bench_perf", "pillow_quantize", mp)["s"]
        e2e = end_to_end(mp)
        rgb = end_to_end(mp, "--xy", "0")
        row.update(
            {
                "e2e": e2e["s"],
                "e2e_MB": e2e["peak_mb"],
                "e2e_rgb": rgb["s"],
                "e2e_rgb_MB": rgb["peak_mb"],
            }
        )
        if "sk_fit+pred(est)" in row:
            row["sk_est/e2e"] = row["sk_fit+pred(est)"] / e2e["s"]
        rows.append(row)
        print_table([row], list(row))
        print(flush=True)
    cols = list(dict.fromkeys(c for r in rows for c in r))
    print_table(rows, cols)
    Path(args.json).parent.mkdir(exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
