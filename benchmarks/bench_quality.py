"""Quantisation quality: our palette against Pillow's and k-means', at the same K.

For each sample photo in ``images/`` and K = 4, 8, 16, 32, the palettes of

- ``gmm``: the mixture's means as fitted (``segment quantize`` before the palette polish),
- ``ours``: those means Lloyd-polished in RGB (the mixture palette),
- ``histogram``: the histogram palette of ``segment quantize -k K`` (variance splits and
  Lloyd iterations on the binned colour histogram, default ``--speed 4``),
- ``mediancut`` / ``octree``: Pillow's ``Image.quantize(K, method=MEDIANCUT / FASTOCTREE)``,
- ``kmeans``: scikit-learn's ``KMeans(K, n_init=4)`` on the same pixels (distinct colours
  weighted by their counts, which is k-means on all pixels),

are rounded to 8 bits and every pixel is mapped to its nearest palette colour (Euclidean
RGB, the same mapping for all, no dithering). PSNR (dB, higher is better) and mean CIEDE2000
ΔE (lower is better) are computed over all pixels (exactly, from the distinct colours and
their counts), with the seconds each palette took.

Usage: python benchmarks/bench_quality.py [--k 4 8 16 32] [--json out.json]
"""

import argparse
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _measure import print_table
from PIL import Image

from segment.features import pixel_data, rgb_to_uint8
from segment.imageio import load_image
from segment.metrics import row_figures
from segment.quantize.mapping import nearest_palette
from segment.quantize.palette import fit_palette
from segment.quantize.quantizer import Histogram
from segment.quantize.quantizer import fit_palette as histogram_palette

IMAGES = Path(__file__).resolve().parent.parent / "images"
METHODS = ("gmm", "ours", "histogram", "mediancut", "octree", "kmeans")


def _pillow(path, k, method):
    im = Image.open(path).convert("RGB")
    q = im.quantize(colors=k, method=method, dither=Image.Dither.NONE)
    n = len(np.unique(np.asarray(q)))
    pal = np.array(q.getpalette()[: 3 * 256], dtype=np.uint8).reshape(-1, 3)
    return pal[: max(n, int(np.asarray(q).max()) + 1)]


def _kmeans(data, k, seed):
    from sklearn.cluster import KMeans

    km = KMeans(k, n_init=4, random_state=seed).fit(data.rgb, sample_weight=data.weight)
    return rgb_to_uint8(km.cluster_centers_)


def palettes(path, data, k, seed=0):
    """Yield (method, palette uint8 (P, 3), seconds)."""
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = fit_palette(data, k, seed=seed, lloyd=False)
    t_gmm = time.perf_counter() - t
    yield "gmm", raw.palette, t_gmm
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fit_palette(data, k, seed=seed)
    yield "ours", ours.palette, time.perf_counter() - t
    t = time.perf_counter()
    pixels8 = np.asarray(Image.open(path).convert("RGB"))
    hist = Histogram.of(pixels8)
    yield "histogram", histogram_palette(hist, k, seed=seed), time.perf_counter() - t
    for name, method in (
        ("mediancut", Image.Quantize.MEDIANCUT),
        ("octree", Image.Quantize.FASTOCTREE),
    ):
        t = time.perf_counter()
        pal = _pillow(path, k, method)
        yield name, pal, time.perf_counter() - t
    t = time.perf_counter()
    pal = _kmeans(data, k, seed)
    yield "kmeans", pal, time.perf_counter() - t


def run(ks, seed=0):
    rows = []
    for path in sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".png", ".jpg")):
        data = pixel_data(load_image(path))
        for k in ks:
            row = {"image": path.name, "k": k}
            for name, pal, seconds in palettes(path, data, k, seed):
                f = row_figures(data.rgb, data.weight, pal[nearest_palette(data.rgb, pal)])
                row[f"{name}_psnr"] = f["psnr_db"]
                row[f"{name}_de"] = f["delta_e"]
                row[f"{name}_s"] = seconds
                row[f"{name}_colours"] = len(pal)
            rows.append(row)
            print(
                f"{path.name:14s} k={k:<3d} "
                + "  ".join(f"{m} {row[f'{m}_psnr']:.2f} dB/{row[f'{m}_de']:.2f}" for m in METHODS),
                flush=True,
            )
    return rows


def summarise(rows, ks):
    mean = []
    for k in ks:
        sel = [r for r in rows if r["k"] == k]
        m = {"image": "mean", "k": k}
        for key in sel[0]:
            if key not in ("image", "k"):
                m[key] = float(np.mean([r[key] for r in sel]))
        mean.append(m)
    return mean


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = run(args.k, args.seed)
    allrows = rows + summarise(rows, args.k)
    print("\nPSNR (dB, higher is better)")
    print_table(allrows, ["image", "k", *(f"{m}_psnr" for m in METHODS)])
    print("\nmean ΔE2000 (lower is better)")
    print_table(allrows, ["image", "k", *(f"{m}_de" for m in METHODS)])
    print("\nseconds per palette")
    print_table(allrows, ["image", "k", *(f"{m}_s" for m in METHODS)])
    beats = all(r["ours_psnr"] > r["mediancut_psnr"] for r in rows)
    gap = max(r["kmeans_psnr"] - r["ours_psnr"] for r in rows)
    print(
        f"\nours beats median cut (PSNR) on every image and k: {beats}; largest shortfall "
        f"against k-means: {gap:.2f} dB"
    )
    if args.json:
        args.json.write_text(json.dumps(allrows, indent=1))


if __name__ == "__main__":
    main()
