"""Segment quality against known regions: a proxy for human segmentations.

Each test image is a BSDS-sized canvas (321 × 481) cut into 5–12 Voronoi cells, every cell
filled with a different crop of the bundled photos (enlarged 2×, so that each cell holds
real texture, shading and edges); the truth is the cell map. Scored like region-based
benchmarks: the label map is split into connected regions, then compared to the truth by
variation of information (VI, lower is better, in nats, scikit-image's two terms summed)
and the probabilistic/adjusted Rand index (here the Rand index against the single truth,
higher is better). Baselines: k-means on colour (the same K), Felzenszwalb and SLIC from
scikit-image.

Usage: python benchmarks/bench_segments.py [--images 12] [--configs default,...] [--json F]
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from scipy import ndimage
from skimage.metrics import variation_of_information

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segment.features import pixel_data
from segment.fit import fit_data
from segment.imageio import Image
from segment.options import FitOptions

IMAGES = Path(__file__).resolve().parent.parent / "images"


def _photos():
    out = []
    for p in sorted(IMAGES.glob("*")):
        if p.suffix.lower() in (".png", ".jpg"):
            im = PILImage.open(p).convert("RGB")
            out.append(np.asarray(im.resize((im.width * 2, im.height * 2), PILImage.BICUBIC)))
    return out


def scene(seed, photos, shape=(321, 481)):
    rng = np.random.default_rng(seed)
    H, W = shape
    n = int(rng.integers(5, 13))
    pts = rng.random((n, 2)) * [H, W]
    yy, xx = np.mgrid[:H, :W]
    truth = np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=2)
    img = np.zeros((H, W, 3), np.uint8)
    for c in range(n):
        src = photos[int(rng.integers(len(photos)))]
        y0 = int(rng.integers(0, src.shape[0] - H))
        x0 = int(rng.integers(0, src.shape[1] - W))
        crop = src[y0 : y0 + H, x0 : x0 + W]
        img[truth == c] = crop[truth == c]
    return img, truth


def connected(labels):
    out = np.zeros(labels.shape, np.int64)
    off = 0
    for k in np.unique(labels):
        lab, n = ndimage.label(labels == k)
        out[labels == k] = lab[labels == k] + off
        off += n
    return out, off


def rand_index(a, b):
    """Rand index of two label maps (pair counting with a contingency table)."""
    a = np.unique(a.ravel(), return_inverse=True)[1]
    b = np.unique(b.ravel(), return_inverse=True)[1]
    n = a.size
    cont = np.bincount(a * (b.max() + 1) + b).astype(np.float64)
    sa = np.bincount(a).astype(np.float64)
    sb = np.bincount(b).astype(np.float64)
    pairs = n * (n - 1) / 2
    same_both = (cont * (cont - 1) / 2).sum()
    same_a = (sa * (sa - 1) / 2).sum()
    same_b = (sb * (sb - 1) / 2).sum()
    return (pairs + 2 * same_both - same_a - same_b) / pairs


def ours(img, merge=None, **opts):
    im = Image(
        pixels=img, alpha=None, path=Path("scene"), format="PNG", mode="RGB", frame=0, n_frames=1
    )
    if merge is not None:
        return _merged(im, merge, **opts)
    options = FitOptions(**opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = fit_data(pixel_data(im, space=options.space, xy=options.xy), options)
    return seg.label_image()


def _merged(im, threshold, min_region=0, **opts):
    from skimage.color import rgb2lab

    from segment.regions import merge_similar_neighbours, merge_small_regions

    options = FitOptions(min_region=0, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = fit_data(pixel_data(im, **options.data_kwargs()), options)
    labels = seg.label_image().copy()
    lab = rgb2lab(seg.quantized_palette[None].astype(np.float64) / 255)[0]
    merge_similar_neighbours(labels, lab, threshold, n_labels=seg.k)
    return merge_small_regions(labels, min_region, n_labels=seg.k)


def kmeans(img, k=8):
    from sklearn.cluster import KMeans

    X = img.reshape(-1, 3).astype(np.float32) / 255
    return KMeans(k, n_init=1, random_state=0).fit_predict(X).reshape(img.shape[:2])


def felzenszwalb(img):
    from skimage.segmentation import felzenszwalb as fz

    return fz(img, scale=300, sigma=0.8, min_size=200)


def slic(img):
    from skimage.segmentation import slic as sl

    return sl(img, n_segments=30, compactness=10, start_label=0)


CONFIGS = {
    "pixel-wise (k=8, rgb, no smoothing)": dict(k=8, smooth=0.0, min_region=0),
    "colour only + smoothing (k=8)": dict(k=8),
    "segment image defaults": dict(k=10, xy=1.0),
}
# A grid of settings around them (--configs grid; the defaults were chosen from 138 of these).
GRID = {
    f"{space} k{k} s{s:g} m{m} xy{xy:g}": dict(
        k=k, space=space, smooth=s, min_region=m, xy=xy * (100 if space == "lab" else 1)
    )
    for space in ("rgb", "lab")
    for k in (4, 6, 8, 10, 12)
    for s in (1.0, 2.0, 4.0)
    for m in (100, 300, 800, 1500, 3000)
    for xy in (0.0, 0.5, 1.0, 2.0)
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--configs", default="all", help="all (the three named ones), grid, or names")
    ap.add_argument("--baselines", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    photos = _photos()
    configs = {**CONFIGS, **GRID}
    names = (
        list(GRID)
        if args.configs == "grid"
        else list(CONFIGS)
        if args.configs == "all"
        else (args.configs.split(","))
    )
    methods = {name: (lambda img, o=configs[name]: ours(img, **o)) for name in names}
    if args.baselines:
        methods.update(
            {"kmeans rgb k8 (pixelwise)": kmeans, "felzenszwalb": felzenszwalb, "slic 30": slic}
        )
    rows = []
    for name, fn in methods.items():
        vis, ris, ns, secs = [], [], [], []
        for seed in range(args.images):
            img, truth = scene(seed, photos)
            t0 = time.perf_counter()
            lab = fn(img)
            secs.append(time.perf_counter() - t0)
            reg, n = connected(lab)
            vis.append(sum(variation_of_information(truth, reg)))
            ris.append(rand_index(truth, reg))
            ns.append(n)
        rows.append(
            {
                "method": name,
                "VI": float(np.mean(vis)),
                "RI": float(np.mean(ris)),
                "regions": float(np.median(ns)),
                "seconds": float(np.mean(secs)),
            }
        )
        r = rows[-1]
        print(
            f"{name:28s} VI={r['VI']:.3f}  RI={r['RI']:.3f}  regions(median)={r['regions']:.0f}"
            f"  {r['seconds']:.2f} s",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
