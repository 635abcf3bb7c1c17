"""Segments against human segmentations: BSDS500 (train or val), region measures.

Each method segments every photo with one setting for all photos (ODS); its label map is
split into connected regions and scored against every annotator of the photo with
``segment compare``'s code (:func:`segment.compare.compare_labels`): variation of
information (VoI, bits, lower is better), probabilistic Rand index (PRI, mean Rand index
over the annotators, higher is better) and segmentation covering (higher is better). Scores
are averaged over the annotators of a photo, then over the photos. Also the median number of
regions and the mean seconds per photo (in process, after import).

Methods: ``ours`` (the description-length merging of :mod:`segment.mdl`, the defaults
of ``segment image``; tuned by ``--set KEY=VALUE``), ``release`` (the previous release's
``segment image`` defaults: k=10, ``--xy 1``, RGB, smoothing, 1 % minimum region, no
region merging), ``felzenszwalb`` (scikit-image, scale=500, sigma=0.8, min_size=400),
``slic`` (SLIC with 400 superpixels, then the region adjacency graph cut at a mean-colour
distance of 29), ``gmm`` (scikit-learn's GaussianMixture on RGB
pixels, k=6, pixel-wise labels).

Usage:
  python benchmarks/bench_bsds.py --data /path/to/bsds500 --split val
      [--images N] [--set KEY=VALUE ...] [--methods ours,release,...] [--jobs 2] [--json F]
"""

import argparse
import json
import os
import sys
import time
import warnings
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from PIL import Image as PILImage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segment.metrics import compare_labels

METHODS = ("ours", "release", "felzenszwalb", "slic", "gmm")


# -- methods ------------------------------------------------------------------------------


def ours(img, settings):
    from segment.pipeline import segment_regions

    return segment_regions(img, **settings)


def release(img, settings):
    from segment.features import pixel_data
    from segment.fit import fit_data
    from segment.imageio.image import Image
    from segment.options import FitOptions

    im = Image(
        pixels=img, alpha=None, path=Path("bsds"), format="JPEG", mode="RGB", frame=0, n_frames=1
    )
    # Spelled out: today's FitOptions defaults differ (CIELAB, k=8, no position, regions).
    options = FitOptions(k=10, xy=1.0, space="rgb", regions=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = fit_data(pixel_data(im, **options.data_kwargs()), options)
    return seg.label_image()


def felzenszwalb(img, settings):
    from skimage.segmentation import felzenszwalb as fz

    return fz(img, scale=500, sigma=0.8, min_size=400)


def slic(img, settings):
    from skimage import graph
    from skimage.segmentation import slic as sl

    labels = sl(img, n_segments=400, compactness=30, start_label=1)
    rag = graph.rag_mean_color(img, labels)
    return graph.cut_threshold(labels, rag, 29)


def gmm(img, settings):
    from sklearn.mixture import GaussianMixture

    X = img.reshape(-1, 3).astype(np.float64) / 255.0
    model = GaussianMixture(6, random_state=0).fit(X)
    return model.predict(X).reshape(img.shape[:2])


FUNCTIONS = {
    "ours": ours,
    "release": release,
    "felzenszwalb": felzenszwalb,
    "slic": slic,
    "gmm": gmm,
}


# -- scoring ------------------------------------------------------------------------------


def photo_ids(data, split, n):
    ids = sorted(p.stem for p in (Path(data) / "images" / split).glob("*.jpg"))
    if not ids:
        raise SystemExit(f"no photos in {Path(data) / 'images' / split}; check --data/--split.")
    if n is not None and n < len(ids):
        # An even spread over the sorted ids (not the first n), the same for every run.
        ids = [ids[int(i)] for i in np.linspace(0, len(ids) - 1, n).round()]
    return ids


def score_photo(job):
    """Scores of every method on one photo: {method: (voi, pri, covering, regions, s)}."""
    data, split, pid, methods, settings = job
    img = np.asarray(PILImage.open(Path(data) / "images" / split / f"{pid}.jpg").convert("RGB"))
    truths = np.load(Path(data) / "groundTruth" / split / f"{pid}.npz")["segmentation"]
    out = {}
    for name in methods:
        t0 = time.perf_counter()
        labels = np.asarray(FUNCTIONS[name](img, settings))
        seconds = time.perf_counter() - t0
        scores = [compare_labels(labels, t.astype(np.int64), connected=True) for t in truths]
        out[name] = (
            float(np.mean([s["variation_of_information"] for s in scores])),
            float(np.mean([s["rand_index"] for s in scores])),
            float(np.mean([s["covering"] for s in scores])),
            scores[0]["segments"],
            seconds,
        )
    return pid, out


class _Serial:
    """The pool interface in this process (``--jobs 1``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, jobs, chunksize=1):
        return map(fn, jobs)


def _value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="BSDS500 folder (images/, groundTruth/)")
    ap.add_argument("--split", default="val", choices=("train", "val", "test"))
    ap.add_argument("--images", type=int, default=None, help="an even spread of N photos")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--jobs", type=int, default=2, help="processes (at most 2)")
    ap.add_argument("--json", default=None, help="also write per-photo scores here")
    ap.add_argument("--progress", default=None, help="append each photo's scores here")
    args = ap.parse_args(argv)
    settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE; got {item!r}.")
        settings[key.replace("-", "_")] = _value(value)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in FUNCTIONS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; use some of {', '.join(METHODS)}.")
    ids = photo_ids(args.data, args.split, args.images)
    jobs = [(args.data, args.split, pid, methods, settings) for pid in ids]
    n_jobs = max(1, min(2, args.jobs))
    results = {}
    progress = open(args.progress, "a") if args.progress else None
    with Pool(n_jobs) if n_jobs > 1 else _Serial() as pool:
        for pid, scores in pool.imap_unordered(score_photo, jobs, chunksize=1):
            results[pid] = scores
            if progress:
                progress.write(json.dumps({"photo": pid, **scores}) + "\n")
                progress.flush()
    if progress:
        progress.close()
    print(
        f"BSDS500 {args.split}, {len(ids)} photos, settings {settings or 'defaults'}; "
        "mean over annotators, then over photos"
    )
    print(f"| {'method':14s} | VoI bits ↓ | PRI ↑ | covering ↑ | regions (median) | s/photo |")
    print(f"|{'-' * 16}|-----------:|------:|-----------:|-----------------:|--------:|")
    table = {}
    for name in methods:
        rows = np.array([results[pid][name] for pid in ids])
        voi, pri, cov = rows[:, :3].mean(axis=0)
        regions, secs = float(np.median(rows[:, 3])), float(rows[:, 4].mean())
        table[name] = dict(voi=voi, pri=pri, covering=cov, regions=regions, seconds=secs)
        print(
            f"| {name:14s} | {voi:10.3f} | {pri:5.3f} | {cov:10.3f} | {regions:16.0f} |"
            f" {secs:7.2f} |"
        )
    if args.json:
        doc = {"split": args.split, "settings": settings, "table": table, "photos": results}
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return table


if __name__ == "__main__":
    main()
