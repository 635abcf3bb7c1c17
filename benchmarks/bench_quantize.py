"""Colour quantisation side by side: ``segment quantize`` against pngquant and Pillow.

Every tool runs as a whole command in a fresh process (Python start-up, imports, decoding,
writing the PNG: the wall time a user waits), once, on the same PNG input (pngquant reads
only PNG, so every photo is first converted to a lossless RGB PNG). For K = 16, 64, 256:

- ``ours`` / ``ours-dither``: ``segment quantize IN -k K -o OUT`` (``--dither LEVEL``);
- ``pngquant-nofs`` / ``pngquant``: ``pngquant K --nofs`` / ``pngquant K`` (it dithers by
  default), ``--speed`` at its default (4) unless ``--pngquant-speed`` is given;
- ``pillow``: ``Image.quantize(K)`` (median cut, no dithering) and ``save`` in a
  ``python -c`` process.

Figures against the input, over all pixels: PSNR (dB), PSNR after a Gaussian blur of
σ = 1 px of both images (what the eye integrates: dithering trades plain PSNR for it),
SSIM (scikit-image, ``channel_axis=-1``), wall seconds of the whole command, its CPU
seconds (user + system of the child process: less disturbed by other work on a shared
machine), output bytes. The table gives the mean
over the photos per size class, and the ratios of our time to pngquant's.

pngquant is a benchmark tool only (``pip install pngquant-cli``), not a dependency.

With ``--repeat N`` each command runs N times in a row and the least wall time is kept
(the machine is shared: the least time is the one least disturbed by other work).

Usage::

    python benchmarks/bench_quantize.py [PATH ...] [--megapixels 12] [--k 16 64 256]
        [--dither 1.0] [--ours-args "--speed 4"] [--repeat 3] [--json out.json]

PATH: image files or folders (default: the bundled ``images/``); ``--megapixels M`` adds
the synthetic M-MP photo of ``benchmarks/photos.py``.
"""

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _measure import print_table
from PIL import Image

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "images"
SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
SUFFIXES_UP = SUFFIXES | {s.upper() for s in SUFFIXES}


def _inputs(paths):
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix in SUFFIXES_UP)
        else:
            out.append(p)
    return out


def _rgb(path):
    with Image.open(path) as im:
        from PIL import ImageOps

        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _figures(a, b):
    from scipy.ndimage import gaussian_filter
    from skimage.metrics import structural_similarity

    a = a.astype(np.float32) / 255.0
    b = b.astype(np.float32) / 255.0

    def psnr(x, y):
        mse = float(np.mean((x.astype(np.float64) - y) ** 2))
        return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)

    blur = [gaussian_filter(x, sigma=(1.0, 1.0, 0.0)) for x in (a, b)]
    return {
        "psnr": psnr(a, b),
        "blur_psnr": psnr(*blur),
        "ssim": float(structural_similarity(a, b, channel_axis=-1, data_range=1.0)),
    }


def _commands(src, out, k, args):
    py = sys.executable
    ours = [py, "-m", "segment", "quantize", str(src), "-k", str(k), "-o", str(out)]
    ours += ["--overwrite", "--quiet", *shlex.split(args.ours_args)]
    pq = [args.pngquant, str(k), "--force", "--output", str(out)]
    if args.pngquant_speed is not None:
        pq += ["--speed", str(args.pngquant_speed)]
    pillow = (
        "import sys; from PIL import Image; "
        "Image.open(sys.argv[1]).convert('RGB').quantize(int(sys.argv[3]))"
        ".save(sys.argv[2])"
    )
    return {
        "ours": ours,
        "ours-dither": [*ours, "--dither", str(args.dither)],
        "pngquant-nofs": [*pq, "--nofs", str(src)],
        "pngquant": [*pq, str(src)],
        "pillow": [py, "-c", pillow, str(src), str(out), str(k)],
    }


def run(args):
    inputs = _inputs(args.paths or [IMAGES])
    tmp = Path(tempfile.mkdtemp(prefix="bench-quantize-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    rows = []
    try:
        sources = []
        for p in inputs:
            src = tmp / f"{p.stem}.png"
            Image.fromarray(_rgb(p)).save(src, compress_level=1)
            sources.append((p.name, src))
        for mp in args.megapixels:
            sys.path.insert(0, str(HERE))
            from photos import photo

            src = tmp / f"synthetic-{mp:g}MP.png"
            Image.fromarray(photo(mp)).save(src, compress_level=1)
            sources.append((src.name, src))
        for name, src in sources:
            ref = _rgb(src)
            mp = ref.shape[0] * ref.shape[1] / 1e6
            for k in args.k:
                for method, cmd in _commands(src, tmp / "out.png", k, args).items():
                    if method not in args.methods:
                        continue
                    out = tmp / "out.png"
                    out.unlink(missing_ok=True)
                    seconds = cpu = float("inf")
                    for _ in range(args.repeat):
                        u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                        t0 = time.perf_counter()
                        r = subprocess.run(
                            cmd, env=env, capture_output=True, text=True, check=False
                        )
                        seconds = min(seconds, time.perf_counter() - t0)
                        u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                        used = u1.ru_utime - u0.ru_utime + u1.ru_stime - u0.ru_stime
                        cpu = min(cpu, used)
                    if r.returncode != 0 or not out.exists():
                        print(f"{method} failed on {name}: {r.stderr.strip()[-300:]}")
                        continue
                    row = {"image": name, "mp": round(mp, 2), "k": k, "method": method}
                    row.update(_figures(ref, _rgb(out)))
                    row["seconds"] = seconds
                    row["cpu_s"] = cpu
                    row["bytes"] = out.stat().st_size
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def summary(rows):
    """Mean figures per (size class, k, method), and our time over pngquant's."""

    def size_class(mp):
        return "<1 MP" if mp < 1 else ("1-3 MP" if mp < 3 else f"{round(mp)} MP")

    groups = {}
    for r in rows:
        groups.setdefault((size_class(r["mp"]), r["k"], r["method"]), []).append(r)
    table = []
    for (cls, k, method), rs in groups.items():
        row = {"size": cls, "k": k, "method": method, "n": len(rs)}
        for c in ("psnr", "blur_psnr", "ssim", "seconds", "cpu_s", "bytes"):
            row[c] = float(np.mean([r[c] for r in rs]))
        table.append(row)
    by = {(t["size"], t["k"], t["method"]): t for t in table}
    for t in table:
        ref = by.get(
            (t["size"], t["k"], "pngquant-nofs" if "dither" not in t["method"] else "pngquant")
        )
        if t["method"].startswith("ours") and ref:
            t["time_ratio"] = t["seconds"] / ref["seconds"]
            t["cpu_ratio"] = t["cpu_s"] / ref["cpu_s"]
            t["dpsnr"] = t["psnr"] - ref["psnr"]
            t["dblur"] = t["blur_psnr"] - ref["blur_psnr"]
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="image files or folders (default: images/)")
    ap.add_argument("--k", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--megapixels", type=float, nargs="*", default=[])
    ap.add_argument("--dither", type=float, default=0.5, help="our --dither LEVEL")
    ap.add_argument("--ours-args", default="", help="extra arguments of segment quantize")
    ap.add_argument("--pngquant", default=shutil.which("pngquant") or "pngquant")
    ap.add_argument("--pngquant-speed", type=int, default=None)
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["ours", "ours-dither", "pngquant-nofs", "pngquant", "pillow"],
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of each command; the least time is kept"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = run(args)
    table = summary(rows)
    print()
    print_table(
        table,
        [
            "size",
            "k",
            "method",
            "n",
            "psnr",
            "blur_psnr",
            "ssim",
            "seconds",
            "cpu_s",
            "bytes",
            "time_ratio",
            "cpu_ratio",
            "dpsnr",
            "dblur",
        ],
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "table": table}, indent=1))


if __name__ == "__main__":
    main()
