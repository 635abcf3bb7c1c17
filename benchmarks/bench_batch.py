"""Throughput of ``segment batch``: images per second with 1 and 2 worker processes and on a
Dask LocalCluster (``--scheduler local``), on a folder of 100 photos of about 0.5 MP.

The photos are crops of one 2 MP photo built by ``photos.py`` (random windows of 0.5 MP,
half of them mirrored, a quarter upside down), saved once as JPEG (quality 90) in
``benchmarks/data/batch_photos/``: same content statistics, different pixels and colour sets.
Each configuration runs the real command in a fresh process into an empty output folder, so
the times include the start of the workers (process pool or Dask cluster) and the writing of
every output; images/s = images / wall-clock seconds. "cpu s/image" is the user + system
time of the command and its workers per image, which other load on the machine does not
change: it shows what the engines cost on top of the work itself.

With ``--repeat R`` every configuration runs R times, the configurations taking turns, and
the best run is kept: on a shared machine other load only ever slows a run down. The load
average at the start is printed; the table means little when it is above the number of
cores.

Usage: python benchmarks/bench_batch.py [--images 100] [--k 8] [--plots] [--repeat 1]
       [--modes w1 w2 dask] [--json out.json]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _measure import print_table
from PIL import Image

DATA = Path(__file__).resolve().parent / "data" / "batch_photos"
MODES = {
    "w1": ("--workers 1", ["--workers", "1"]),
    "w2": ("--workers 2", ["--workers", "2"]),
    "dask": ("--scheduler local (2 workers)", ["--scheduler", "local", "--workers", "2"]),
}


def photo_folder(n, megapixels=0.5, seed=0):
    """``n`` JPEG crops of about ``megapixels`` of one 2 MP photo (made once, then reused)."""
    folder = DATA / f"{n}x{megapixels:g}mp"
    if len(list(folder.glob("*.jpg"))) == n:
        return folder
    from photos import photo

    folder.mkdir(parents=True, exist_ok=True)
    big = photo(2.0)
    H, W = big.shape[:2]
    h = round(np.sqrt(megapixels * 1e6 / 1.5))
    w = round(h * 1.5)
    rng = np.random.default_rng(seed)
    for i in range(n):
        y, x = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
        crop = big[y : y + h, x : x + w]
        if i % 2:
            crop = crop[:, ::-1]
        if i % 4 == 3:
            crop = crop[::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"photo{i:03d}.jpg", quality=90)
    return folder


def _cpu_seconds():
    # Children's user + system time: the command, and its pool or Dask worker processes
    # once they have been waited for.
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(folder, mode, k, plots):
    """One batch run in a fresh process: its wall-clock and CPU seconds, report counts."""
    out = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    cmd = [
        sys.executable,
        "-m",
        "segment",
        "batch",
        str(folder),
        "-o",
        str(out),
        "-k",
        str(k),
        "--quiet",
        *MODES[mode][1],
        *([] if plots else ["--no-plots"]),
    ]
    try:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        counts = json.loads((out / "report.json").read_text())["counts"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return seconds, cpu, counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--plots", action="store_true", help="also write the plots (default: off)")
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode; the best is kept")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    folder = photo_folder(args.images)
    with Image.open(next(folder.glob("*.jpg"))) as im:
        size = f"{im.width}x{im.height}"
    load = os.getloadavg()[0]
    print(
        f"{args.images} photos of {size} px, k={args.k}, plots {'on' if args.plots else 'off'}, "
        f"{os.cpu_count()} cores, load average {load:.2f}"
    )
    best = {}
    for _ in range(args.repeat):
        for mode in args.modes:
            result = run(folder, mode, args.k, args.plots)
            if mode not in best or result[0] < best[mode][0]:
                best[mode] = result
    rows = []
    for mode in args.modes:
        seconds, cpu, counts = best[mode]
        rows.append(
            {
                "engine": MODES[mode][0],
                "images": counts["ok"],
                "seconds": round(seconds, 1),
                "images/s": round(counts["ok"] / seconds, 2),
                "cpu s/image": round(cpu / counts["ok"], 2),
            }
        )
    base = rows[0]["images/s"]
    for r in rows:
        r["speed-up"] = round(r["images/s"] / base, 2)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print_table(rows, ["engine", "images", "seconds", "images/s", "speed-up", "cpu s/image"])
    if args.json:
        doc = {"size": size, "k": args.k, "plots": args.plots, "load_average": load, "rows": rows}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
